//! In-memory object storage: objects as JSON keyed by (type, namespace, name), one global
//! resourceVersion counter, a bounded event history for watches, and the write semantics
//! (create, replace, merge patch, server-side apply, status, delete with finalizers).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::patch;
use crate::resources::ResourceType;

/// Watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug, Clone)]
pub struct Event {
    /// Type id (`group/version/plural`).
    pub type_id: String,
    /// Event type.
    pub kind: EventType,
    /// resourceVersion of the change.
    pub rv: u64,
    /// The object after the change (for DELETED: the last state).
    pub object: Value,
    /// The object before the change, for selector transitions.
    pub old: Option<Value>,
}

/// What a write does, as decided by the request handler.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: compute and validate, but do not persist.
    pub dry_run: bool,
    /// Field manager recorded for non-apply writes (`fieldManager`, else from the User-Agent).
    pub field_manager: Option<String>,
}

type Key = (String, String, String);

struct Inner {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    history: VecDeque<Arc<Event>>,
    /// Events with rv <= this are no longer in `history`.
    compacted: u64,
    watchers: Vec<mpsc::UnboundedSender<Arc<Event>>>,
    uid: u64,
}

/// The store shared by all requests.
pub struct Store {
    inner: Mutex<Inner>,
    history_limit: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("history_limit", &self.history_limit)
            .finish_non_exhaustive()
    }
}

/// The result of starting a watch: past events to replay and a channel for the rest.
#[derive(Debug)]
pub struct WatchStart {
    /// Events (or synthetic ADDED for the current state) to send first.
    pub initial: Vec<Arc<Event>>,
    /// Live events.
    pub rx: mpsc::UnboundedReceiver<Arc<Event>>,
    /// Current resourceVersion when the watch started.
    pub rv: u64,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj["metadata"][key].as_str()
}

/// Parses a resourceVersion string.
pub fn parse_rv(s: &str) -> Result<u64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion: {s}")))
}

/// Everything outside metadata and status: a change there bumps `generation`.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    v
}

impl Store {
    /// An empty store retaining `history_limit` events for watches.
    pub fn new(history_limit: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                rv: 1,
                history: VecDeque::new(),
                compacted: 1,
                watchers: Vec::new(),
                uid: 0,
            }),
            history_limit: history_limit.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current global resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Closes every open watch (fault injection).
    pub fn drop_watches(&self) -> usize {
        let mut inner = self.lock();
        let n = inner.watchers.len();
        inner.watchers.clear();
        n
    }

    /// Forgets all retained history so that any older resourceVersion gets 410 Gone.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.compacted = inner.rv;
    }

    /// GET one object.
    pub fn get(&self, t: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.lock()
            .objects
            .get(&(t.id(), ns.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&t.plural, name))
    }

    /// LIST objects of a type (in one namespace or all), sorted by namespace and name.
    pub fn list(&self, t: &ResourceType, ns: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let id = t.id();
        let items = inner
            .objects
            .iter()
            .filter(|((tid, ons, _), _)| *tid == id && ns.is_none_or(|n| n == ons))
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rv)
    }

    /// Starts a watch from resourceVersion `from` (None: the current state as ADDED events).
    pub fn watch(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        from: Option<u64>,
    ) -> Result<WatchStart, ApiError> {
        let mut inner = self.lock();
        let id = t.id();
        let initial: Vec<Arc<Event>> = match from {
            None => inner
                .objects
                .iter()
                .filter(|((tid, ons, _), _)| *tid == id && ns.is_none_or(|n| n == ons))
                .map(|(_, v)| {
                    let rv = meta_str(v, "resourceVersion")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    Arc::new(Event {
                        type_id: id.clone(),
                        kind: EventType::Added,
                        rv,
                        object: v.clone(),
                        old: None,
                    })
                })
                .collect(),
            Some(n) if n < inner.compacted => {
                return Err(ApiError::new(
                    410,
                    "Expired",
                    format!("too old resource version: {n} ({})", inner.compacted + 1),
                ));
            }
            Some(n) => inner
                .history
                .iter()
                .filter(|e| e.rv > n && e.type_id == id)
                .cloned()
                .collect(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        inner.watchers.push(tx);
        Ok(WatchStart {
            initial,
            rx,
            rv: inner.rv,
        })
    }

    fn commit(
        &self,
        inner: &mut Inner,
        type_id: &str,
        kind: EventType,
        mut obj: Value,
        old: Option<Value>,
    ) -> Value {
        inner.rv += 1;
        let rv = inner.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = (
            type_id.to_string(),
            meta_str(&obj, "namespace").unwrap_or("").to_string(),
            meta_str(&obj, "name").unwrap_or("").to_string(),
        );
        if kind == EventType::Deleted {
            inner.objects.remove(&key);
        } else {
            inner.objects.insert(key, obj.clone());
        }
        let ev = Arc::new(Event {
            type_id: type_id.to_string(),
            kind,
            rv,
            object: obj.clone(),
            old,
        });
        inner.history.push_back(ev.clone());
        while inner.history.len() > self.history_limit {
            if let Some(e) = inner.history.pop_front() {
                inner.compacted = e.rv;
            }
        }
        inner.watchers.retain(|w| w.send(ev.clone()).is_ok());
        if kind == EventType::Deleted {
            self.collect_garbage(inner);
            if type_id != NAMESPACES {
                self.finish_namespaces(inner);
            }
        }
        obj
    }

    /// Background garbage collection, done at once: objects whose owners (by
    /// `ownerReferences[].uid`) all no longer exist are deleted (or, with finalizers, marked).
    fn collect_garbage(&self, inner: &mut Inner) {
        let live: BTreeSet<String> = inner
            .objects
            .values()
            .filter_map(|o| meta_str(o, "uid").map(String::from))
            .collect();
        let orphans: Vec<(String, Value)> = inner
            .objects
            .iter()
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| {
                        !refs.is_empty()
                            && refs
                                .iter()
                                .all(|r| r["uid"].as_str().is_none_or(|u| !live.contains(u)))
                    })
            })
            .map(|((tid, _, _), o)| (tid.clone(), o.clone()))
            .collect();
        for (tid, o) in orphans {
            let has_finalizers = o["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
            if !has_finalizers {
                self.commit(inner, &tid, EventType::Deleted, o.clone(), Some(o));
            } else if o["metadata"].get("deletionTimestamp").is_none() {
                let mut new = o.clone();
                new["metadata"]["deletionTimestamp"] = json!(now());
                self.commit(inner, &tid, EventType::Modified, new, Some(o));
            }
        }
    }

    /// Writes `new` over `old` (which must be the stored object): keeps server-managed metadata,
    /// bumps generation on spec changes, and removes the object once it is being deleted and
    /// has no finalizers left.
    fn write_over(
        &self,
        inner: &mut Inner,
        t: &ResourceType,
        old: Value,
        mut new: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if old["metadata"].get("deletionTimestamp").is_some() {
            let before = old["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if let Some(after) = new["metadata"]["finalizers"].as_array()
                && after.iter().any(|f| !before.contains(f))
            {
                return Err(ApiError::invalid(
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "namespace",
            "name",
        ] {
            match old["metadata"].get(k) {
                Some(v) => new["metadata"][k] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(k);
                    }
                }
            }
        }
        if t.tracks_generation() {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            new["metadata"]["generation"] = json!(if spec_part(&old) == spec_part(&new) {
                generation
            } else {
                generation + 1
            });
        } else if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("generation");
        }
        new["apiVersion"] = json!(t.api_version());
        new["kind"] = json!(t.kind);
        let finalizers_empty = new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
        if opts.dry_run {
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            return Ok(new);
        }
        if new["metadata"].get("deletionTimestamp").is_some() && finalizers_empty {
            return Ok(self.commit(inner, &t.id(), EventType::Deleted, new, Some(old)));
        }
        if without_apply_times(&new) == without_apply_times(&old) {
            return Ok(old); // no-op writes do not bump the resourceVersion (as in the real server)
        }
        Ok(self.commit(inner, &t.id(), EventType::Modified, new, Some(old)))
    }

    fn stored(inner: &Inner, t: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        inner
            .objects
            .get(&(t.id(), ns.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&t.plural, name))
    }

    fn check_rv(t: &ResourceType, old: &Value, new: &Value) -> Result<(), ApiError> {
        match meta_str(new, "resourceVersion") {
            Some(rv) if Some(rv) != meta_str(old, "resourceVersion") => Err(ApiError::conflict(
                &t.plural,
                meta_str(old, "name").unwrap_or(""),
            )),
            _ => Ok(()),
        }
    }

    /// POST: creates an object (201), 409 AlreadyExists if the name is taken.
    pub fn create(
        &self,
        t: &ResourceType,
        ns: &str,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        self.create_locked(&mut inner, t, ns, obj, opts)
    }

    fn create_locked(
        &self,
        inner: &mut Inner,
        t: &ResourceType,
        ns: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be an object"));
        }
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        if let Some(body_ns) = meta_str(&obj, "namespace")
            && t.namespaced
            && body_ns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if t.namespaced {
            match inner.objects.get(&ns_key(ns)) {
                None => return Err(ApiError::not_found("namespaces", ns)),
                Some(n) if n["metadata"].get("deletionTimestamp").is_some() => {
                    return Err(ApiError::new(
                        403,
                        "Forbidden",
                        format!(
                            "unable to create new content in namespace {ns} because it is being terminated"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let name = match (meta_str(&obj, "name"), meta_str(&obj, "generateName")) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(prefix)) => format!("{prefix}{:05x}", inner.uid + 1),
            _ => {
                return Err(ApiError::invalid(
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        let key = (t.id(), ns.to_string(), name.clone());
        if inner.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", t.plural),
            ));
        }
        inner.uid += 1;
        let uid = inner.uid;
        let m = &mut obj["metadata"];
        m["name"] = json!(name);
        if t.namespaced {
            m["namespace"] = json!(ns);
        } else if let Some(m) = m.as_object_mut() {
            m.remove("namespace");
        }
        m["uid"] = json!(format!("00000000-0000-4000-8000-{uid:012x}"));
        m["creationTimestamp"] = json!(now());
        if t.tracks_generation() {
            m["generation"] = json!(1);
        }
        if let Some(m) = m.as_object_mut() {
            if !t.tracks_generation() {
                m.remove("generation");
            }
            m.remove("deletionTimestamp");
            m.remove("resourceVersion");
        }
        obj["apiVersion"] = json!(t.api_version());
        obj["kind"] = json!(t.kind);
        if let Some(m) = &opts.field_manager
            && obj["metadata"].get("managedFields").is_none()
        {
            record_update(t, &json!({}), &mut obj, m, "");
        }
        // Types with a status subresource start without a status (a namespace starts Active).
        if t.status_subresource
            && let Some(o) = obj.as_object_mut()
        {
            o.remove("status");
            if t.plural == "namespaces" && t.group.is_empty() {
                o.insert("status".into(), json!({"phase": "Active"}));
            }
        }
        if opts.dry_run {
            return Ok(obj);
        }
        Ok(self.commit(inner, &t.id(), EventType::Added, obj, None))
    }

    /// PUT on the main resource or (`status`) on `/status`; 409 Conflict on a stale
    /// resourceVersion.
    pub fn replace(
        &self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        mut obj: Value,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if meta_str(&obj, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let mut inner = self.lock();
        let old = Self::stored(&inner, t, ns, name)?;
        if meta_str(&obj, "resourceVersion").is_none() && t.custom {
            return Err(ApiError::invalid(
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
            ));
        }
        Self::check_rv(t, &old, &obj)?;
        let mut new = if status {
            let mut new = old.clone();
            new["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
            strip_null_status(&mut new);
            new
        } else {
            if t.status_subresource {
                match old.get("status") {
                    Some(s) => obj["status"] = s.clone(),
                    None => {
                        if let Some(o) = obj.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            obj["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
            strip_null_managed(&mut obj);
            obj
        };
        if let Some(m) = &opts.field_manager {
            record_update(t, &old, &mut new, m, if status { "status" } else { "" });
        }
        self.write_over(&mut inner, t, old, new, opts)
    }

    /// PATCH with `application/json-patch+json` (RFC 6902); a failed `test` is 422.
    pub fn json_patch(
        &self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        ops: &Value,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let old = Self::stored(&inner, t, ns, name)?;
        let patched = patch::json_patch(&old, ops).map_err(ApiError::invalid)?;
        Self::check_rv(t, &old, &patched)?;
        let mut new = if status {
            let mut new = old.clone();
            new["status"] = patched.get("status").cloned().unwrap_or(Value::Null);
            new
        } else {
            let mut new = patched;
            if t.status_subresource {
                new["status"] = old.get("status").cloned().unwrap_or(Value::Null);
            }
            new
        };
        strip_null_status(&mut new);
        if let Some(m) = &opts.field_manager {
            record_update(t, &old, &mut new, m, if status { "status" } else { "" });
        }
        self.write_over(&mut inner, t, old, new, opts)
    }

    /// PATCH with `application/merge-patch+json`.
    pub fn merge_patch(
        &self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        p: &Value,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.patch_with(t, ns, name, p, status, opts, |target, p| {
            patch::merge_patch(target, p);
            Ok(())
        })
    }

    /// PATCH with `application/strategic-merge-patch+json` (built-in types; see
    /// `crate::strategic`).
    pub fn strategic_patch(
        &self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        p: &Value,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.patch_with(t, ns, name, p, status, opts, |target, p| {
            crate::strategic::apply(target, p).map_err(ApiError::bad_request)
        })
    }

    /// A merge-style patch: `merge` applies `p` to the stored object (or to its status).
    #[allow(clippy::too_many_arguments)]
    fn patch_with(
        &self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        p: &Value,
        status: bool,
        opts: &WriteOptions,
        merge: impl Fn(&mut Value, &Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let old = Self::stored(&inner, t, ns, name)?;
        Self::check_rv(t, &old, p)?;
        let mut new = old.clone();
        if status {
            if let Some(s) = p.get("status") {
                merge(&mut new["status"], s)?;
                strip_null_status(&mut new);
            }
        } else {
            merge(&mut new, p)?;
            if t.status_subresource {
                new["status"] = old.get("status").cloned().unwrap_or(Value::Null);
                strip_null_status(&mut new);
            }
        }
        if let Some(m) = &opts.field_manager {
            record_update(t, &old, &mut new, m, if status { "status" } else { "" });
        }
        self.write_over(&mut inner, t, old, new, opts)
    }

    /// PATCH with `application/apply-patch+yaml`: a simplified server-side apply (see
    /// `crate::patch` and README for the differences from the real one). Creates the object
    /// if it does not exist; returns (object, created).
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        applied: &Value,
        manager: &str,
        force: bool,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<(Value, bool), ApiError> {
        if !applied.is_object() {
            return Err(ApiError::bad_request(
                "the applied configuration must be an object",
            ));
        }
        if applied["apiVersion"].as_str() != Some(&t.api_version())
            || applied["kind"].as_str() != Some(&t.kind)
        {
            return Err(ApiError::bad_request(format!(
                "apply needs apiVersion {} and kind {}",
                t.api_version(),
                t.kind
            )));
        }
        if meta_str(applied, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let mut applied = applied.clone();
        if status {
            // resourceVersion stays: in an apply body it is a precondition, status or not.
            let mut metadata = json!({"name": name});
            if let Some(rv) = applied["metadata"].get("resourceVersion") {
                metadata["resourceVersion"] = rv.clone();
            }
            applied = json!({"apiVersion": applied["apiVersion"], "kind": applied["kind"],
                             "metadata": metadata, "status": applied["status"]});
            strip_null_status(&mut applied);
        } else if t.status_subresource
            && let Some(o) = applied.as_object_mut()
        {
            o.remove("status");
        }
        let subresource = if status { "status" } else { "" };
        let mut inner = self.lock();
        let key = (t.id(), ns.to_string(), name.to_string());
        let Some(old) = inner.objects.get(&key).cloned() else {
            if status {
                return Err(ApiError::not_found(&t.plural, name));
            }
            let mut obj = applied.clone();
            obj["metadata"]["name"] = json!(name);
            let paths = patch::leaf_paths(&applied);
            obj["metadata"]["managedFields"] =
                json!([managed_entry(manager, t, &paths, subresource)]);
            return self
                .create_locked(&mut inner, t, ns, obj, opts)
                .map(|o| (o, true));
        };
        Self::check_rv(t, &old, &applied)?;
        let new_paths = patch::leaf_paths(&applied);
        let mut entries: Vec<Value> = old["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // Conflicts: a field another manager (or this one through a non-apply write) owns, with
        // a different value. Equal values are shared ownership, not conflicts.
        let own = |e: &Value| is_entry(e, manager, "Apply", subresource);
        let mut conflicts = Vec::new();
        let mut conflicting: BTreeSet<patch::FieldPath> = BTreeSet::new();
        for e in entries.iter().filter(|e| !own(e)) {
            let other = e["manager"].as_str().unwrap_or("");
            for p in patch::from_fields_v1(&e["fieldsV1"]) {
                if new_paths.contains(&p)
                    && patch::value_at(&old, &p) != patch::value_at(&applied, &p)
                {
                    conflicts.push(format!("conflict with \"{other}\": .{}", p.join(".")));
                    conflicting.insert(p);
                }
            }
        }
        // `kubectl apply --server-side` takes over what `kubectl apply` (client-side) set: a
        // real server forces an apply by manager `kubectl` whose conflicts all lie within the
        // object's last-applied-configuration annotation (its "lastAppliedManager").
        let upgrade = manager == "kubectl"
            && old["metadata"]["annotations"][LAST_APPLIED]
                .as_str()
                .and_then(|a| serde_json::from_str::<Value>(a).ok())
                .is_some_and(|last| {
                    let owned = patch::leaf_paths(&last);
                    conflicting.iter().all(|p| owned.contains(p))
                });
        if !conflicts.is_empty() && !force && !upgrade {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Apply failed with {} conflict(s): {}",
                    conflicts.len(),
                    conflicts.join("; ")
                ),
            ));
        }
        let mut new = old.clone();
        // Fields this manager applied before and no longer applies are removed unless another
        // manager owns them.
        let mine_before: BTreeSet<patch::FieldPath> = entries
            .iter()
            .filter(|e| own(e))
            .flat_map(|e| patch::from_fields_v1(&e["fieldsV1"]))
            .collect();
        let others: BTreeSet<patch::FieldPath> = entries
            .iter()
            .filter(|e| !own(e))
            .flat_map(|e| patch::from_fields_v1(&e["fieldsV1"]))
            .collect();
        for p in mine_before.difference(&new_paths) {
            if !others.contains(p) {
                patch::remove_path(&mut new, p);
            }
        }
        patch::apply_merge_object(&mut new, &applied);
        // Ownership: force moves conflicting fields to this manager.
        entries.retain(|e| !own(e));
        for e in &mut entries {
            let mut theirs = patch::from_fields_v1(&e["fieldsV1"]);
            theirs.retain(|p| !conflicting.contains(p));
            e["fieldsV1"] = patch::to_fields_v1(&theirs);
        }
        entries.retain(|e| e["fieldsV1"].as_object().is_some_and(|m| !m.is_empty()));
        entries.push(managed_entry(manager, t, &new_paths, subresource));
        new["metadata"]["managedFields"] = json!(entries);
        let obj = self.write_over(&mut inner, t, old, new, opts)?;
        Ok((obj, false))
    }

    /// DELETE: with finalizers, sets deletionTimestamp and keeps the object; otherwise removes it.
    pub fn delete(
        &self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        preconditions: &Value,
        orphan: bool,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let old = Self::stored(&inner, t, ns, name)?;
        if let Some(uid) = preconditions["uid"].as_str()
            && Some(uid) != meta_str(&old, "uid")
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid").unwrap_or("")
                ),
            ));
        }
        if let Some(rv) = preconditions["resourceVersion"].as_str()
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(&t.plural, name));
        }
        let has_finalizers = old["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if opts.dry_run {
            return Ok(old);
        }
        if orphan && let Some(uid) = meta_str(&old, "uid") {
            self.orphan_dependents(&mut inner, uid);
        }
        if t.id() == NAMESPACES {
            return Ok(self.terminate_namespace(&mut inner, old));
        }
        if has_finalizers {
            if old["metadata"].get("deletionTimestamp").is_some() {
                return Ok(old);
            }
            let mut new = old.clone();
            new["metadata"]["deletionTimestamp"] = json!(now());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            return Ok(self.commit(&mut inner, &t.id(), EventType::Modified, new, Some(old)));
        }
        Ok(self.commit(
            &mut inner,
            &t.id(),
            EventType::Deleted,
            old.clone(),
            Some(old),
        ))
    }
}

impl Store {
    /// Namespace deletion: the namespace turns `Terminating`, everything in it is deleted (objects
    /// with finalizers wait for them), and the namespace goes once it is empty.
    fn terminate_namespace(&self, inner: &mut Inner, old: Value) -> Value {
        let name = meta_str(&old, "name").unwrap_or("").to_string();
        let mut ns = old.clone();
        if old["metadata"].get("deletionTimestamp").is_none() {
            ns["metadata"]["deletionTimestamp"] = json!(now());
            ns["status"] = json!({"phase": "Terminating"});
            ns = self.commit(inner, NAMESPACES, EventType::Modified, ns, Some(old));
        }
        let contents: Vec<(String, Value)> = inner
            .objects
            .iter()
            .filter(|((_, ons, _), _)| *ons == name)
            .map(|((tid, _, _), o)| (tid.clone(), o.clone()))
            .collect();
        for (tid, o) in contents {
            if o["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
            {
                if o["metadata"].get("deletionTimestamp").is_none() {
                    let mut new = o.clone();
                    new["metadata"]["deletionTimestamp"] = json!(now());
                    self.commit(inner, &tid, EventType::Modified, new, Some(o));
                }
            } else {
                self.commit(inner, &tid, EventType::Deleted, o.clone(), Some(o));
            }
        }
        self.finish_namespaces(inner);
        inner.objects.get(&ns_key(&name)).cloned().unwrap_or(ns)
    }

    /// Removes terminating namespaces that have become empty.
    fn finish_namespaces(&self, inner: &mut Inner) {
        let done: Vec<Value> = inner
            .objects
            .iter()
            .filter(|((tid, _, name), o)| {
                tid == NAMESPACES
                    && o["metadata"].get("deletionTimestamp").is_some()
                    && !inner.objects.keys().any(|(_, ons, _)| ons == name)
            })
            .map(|(_, o)| o.clone())
            .collect();
        for o in done {
            self.commit(inner, NAMESPACES, EventType::Deleted, o.clone(), Some(o));
        }
    }

    /// `propagationPolicy: Orphan`: dependents lose their owner reference instead of being
    /// collected.
    fn orphan_dependents(&self, inner: &mut Inner, uid: &str) {
        let dependents: Vec<(String, Value)> = inner
            .objects
            .iter()
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
            })
            .map(|((tid, _, _), o)| (tid.clone(), o.clone()))
            .collect();
        for (tid, o) in dependents {
            let mut new = o.clone();
            if let Some(refs) = new["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"] != uid);
            }
            self.commit(inner, &tid, EventType::Modified, new, Some(o));
        }
    }
}

const NAMESPACES: &str = "/v1/namespaces";

/// The annotation in which client-side `kubectl apply` keeps what it applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn ns_key(ns: &str) -> Key {
    (NAMESPACES.to_string(), String::new(), ns.to_string())
}

/// Whether a managedFields entry is (manager, operation, subresource).
fn is_entry(e: &Value, manager: &str, operation: &str, subresource: &str) -> bool {
    e["manager"].as_str() == Some(manager)
        && e["operation"].as_str() == Some(operation)
        && e["subresource"].as_str().unwrap_or("") == subresource
}

/// Field ownership after a non-apply write (create, update, patch): the fields it changed move
/// to `manager` (operation `Update`), fields it removed are owned by nobody.
fn record_update(t: &ResourceType, old: &Value, new: &mut Value, manager: &str, subresource: &str) {
    let old_paths = patch::leaf_paths(old);
    let new_paths = patch::leaf_paths(new);
    let changed: BTreeSet<patch::FieldPath> = new_paths
        .iter()
        .filter(|p| patch::value_at(old, p) != patch::value_at(new, p))
        .cloned()
        .collect();
    let removed: BTreeSet<patch::FieldPath> = old_paths.difference(&new_paths).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        return;
    }
    let mut entries: Vec<Value> = new["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut mine = BTreeSet::new();
    for e in &mut entries {
        let mut theirs = patch::from_fields_v1(&e["fieldsV1"]);
        if is_entry(e, manager, "Update", subresource) {
            mine = theirs;
            continue;
        }
        theirs.retain(|p| !changed.contains(p) && !removed.contains(p));
        e["fieldsV1"] = patch::to_fields_v1(&theirs);
    }
    entries.retain(|e| !is_entry(e, manager, "Update", subresource));
    mine.retain(|p| !removed.contains(p));
    mine.extend(changed);
    entries.retain(|e| e["fieldsV1"].as_object().is_some_and(|m| !m.is_empty()));
    if !mine.is_empty() {
        let mut e = managed_entry(manager, t, &mine, subresource);
        e["operation"] = json!("Update");
        entries.push(e);
    }
    if entries.is_empty() {
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        new["metadata"]["managedFields"] = json!(entries);
    }
}

fn managed_entry(
    manager: &str,
    t: &ResourceType,
    paths: &BTreeSet<patch::FieldPath>,
    subresource: &str,
) -> Value {
    let mut e = json!({
        "manager": manager, "operation": "Apply", "apiVersion": t.api_version(), "time": now(),
        "fieldsType": "FieldsV1", "fieldsV1": patch::to_fields_v1(paths),
    });
    if !subresource.is_empty() {
        e["subresource"] = json!(subresource);
    }
    e
}

/// The object with `managedFields[].time` removed: an apply that changes nothing else is a no-op.
fn without_apply_times(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(entries) = v["metadata"]["managedFields"].as_array_mut() {
        for e in entries {
            if let Some(m) = e.as_object_mut() {
                m.remove("time");
            }
        }
    }
    v
}

fn strip_null_status(obj: &mut Value) {
    if obj.get("status").is_some_and(Value::is_null)
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
}

fn strip_null_managed(obj: &mut Value) {
    if obj["metadata"]
        .get("managedFields")
        .is_some_and(Value::is_null)
        && let Some(m) = obj["metadata"].as_object_mut()
    {
        m.remove("managedFields");
    }
}
