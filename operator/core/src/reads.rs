//! Reads of managed Secrets, as pure decisions: the per-ManagedSecret summary of the reads the
//! audit log holds (last reader, reads in the last 24 hours, who read) and which readers are
//! unexpected under `spec.access`. The operator feeds it records and an injected clock.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

/// How far back "recent" reads go: reads counted and readers considered for `UnexpectedReader`.
pub const WINDOW_HOURS: i64 = 24;
/// Most distinct readers remembered per ManagedSecret within the window (the newest are kept),
/// so one object's memory stays bounded whatever the cluster does.
pub const MAX_READERS: usize = 64;

/// One read of a managed Secret, as the audit log recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub time: DateTime<Utc>,
    /// The Kubernetes username, e.g. `system:serviceaccount:payments:orders-api`.
    pub user: String,
    /// `get`, `list` or `watch`.
    pub verb: String,
    /// Whether the API server allowed it; denied attempts are logged but read nothing.
    pub allowed: bool,
}

/// The newest allowed read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastRead {
    pub user: String,
    pub verb: String,
    pub time: DateTime<Utc>,
}

/// What the reads of one ManagedSecret add up to. Counts use whole-hour buckets: "the last 24
/// hours" is the current hour and the 23 before it, which keeps memory at most 24 counters and
/// [`MAX_READERS`] readers per object however often it is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadsSummary {
    pub last_read: Option<LastRead>,
    /// Allowed reads per hour (unix time / 3600).
    hourly: BTreeMap<i64, u64>,
    /// Allowed reads: reader → time of their newest read.
    readers: BTreeMap<String, DateTime<Utc>>,
}

fn hour(time: DateTime<Utc>) -> i64 {
    time.timestamp().div_euclid(3600)
}

impl ReadsSummary {
    /// Adds one read (in any order: the newest read wins `last_read`).
    pub fn add(&mut self, read: &Read, now: DateTime<Utc>) {
        if !read.allowed {
            return;
        }
        if self
            .last_read
            .as_ref()
            .is_none_or(|last| read.time >= last.time)
        {
            self.last_read = Some(LastRead {
                user: read.user.clone(),
                verb: read.verb.clone(),
                time: read.time,
            });
        }
        if read.time > now || hour(read.time) <= hour(now) - WINDOW_HOURS {
            return;
        }
        *self.hourly.entry(hour(read.time)).or_insert(0) += 1;
        let newest = self.readers.entry(read.user.clone()).or_insert(read.time);
        if read.time > *newest {
            *newest = read.time;
        }
        self.prune(now);
    }

    /// Forgets what fell out of the window and the oldest readers beyond [`MAX_READERS`].
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let first_hour = hour(now) - WINDOW_HOURS + 1;
        self.hourly.retain(|hour, _| *hour >= first_hour);
        let since = now - Duration::hours(WINDOW_HOURS);
        self.readers.retain(|_, time| *time > since);
        while self.readers.len() > MAX_READERS {
            let oldest = self
                .readers
                .iter()
                .min_by_key(|(user, time)| (**time, (*user).clone()))
                .map(|(user, _)| user.clone());
            match oldest {
                Some(user) => self.readers.remove(&user),
                None => break,
            };
        }
    }

    /// Allowed reads in the current hour and the 23 before it.
    pub fn reads_in_window(&self, now: DateTime<Utc>) -> u64 {
        let first_hour = hour(now) - WINDOW_HOURS + 1;
        self.hourly
            .range(first_hour..=hour(now))
            .map(|(_, count)| count)
            .sum()
    }

    /// Who read in the last 24 hours, by name.
    pub fn readers_in_window(&self, now: DateTime<Utc>) -> impl Iterator<Item = &str> {
        let since = now - Duration::hours(WINDOW_HOURS);
        self.readers
            .iter()
            .filter(move |(_, time)| **time > since && **time <= now)
            .map(|(user, _)| user.as_str())
    }
}

/// A Kubernetes username split into what access decisions care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader<'a> {
    ServiceAccount {
        namespace: &'a str,
        name: &'a str,
    },
    /// A kubelet (`system:node:NAME`): it reads Secrets for the Pods it runs.
    Node,
    /// A person or any other identity (OIDC users, certificates, webhooks).
    Other,
}

pub fn classify(user: &str) -> Reader<'_> {
    if let Some(rest) = user.strip_prefix("system:serviceaccount:")
        && let Some((namespace, name)) = rest.split_once(':')
        && !namespace.is_empty()
        && !name.is_empty()
        && !name.contains(':')
    {
        return Reader::ServiceAccount { namespace, name };
    }
    if user.starts_with("system:node:") {
        return Reader::Node;
    }
    Reader::Other
}

/// The readers of the window that `spec.access` does not allow, sorted. Only service accounts
/// can be unexpected: `spec.access` lists service accounts of the ManagedSecret's namespace, so
/// a service account elsewhere or one not listed is unexpected, unless it is keyturn's own
/// (`own_identity`). Kubelets read for the Pods they run, which access bindings govern, and
/// people are not in `spec.access` at all: both are recorded and shown as `lastReadBy`, never
/// flagged. Without `spec.access` (`allowed` is `None`) nobody is unexpected.
pub fn unexpected_readers<'a>(
    readers: impl IntoIterator<Item = &'a str>,
    namespace: &str,
    allowed: Option<&[String]>,
    own_identity: Option<&str>,
) -> Vec<String> {
    let Some(allowed) = allowed else {
        return Vec::new();
    };
    let unexpected: BTreeSet<&str> = readers
        .into_iter()
        .filter(|user| Some(*user) != own_identity)
        .filter(|user| match classify(user) {
            Reader::ServiceAccount {
                namespace: reader_namespace,
                name,
            } => reader_namespace != namespace || !allowed.iter().any(|sa| sa == name),
            Reader::Node | Reader::Other => false,
        })
        .collect();
    unexpected.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn read(time: &str, user: &str, allowed: bool) -> Read {
        Read {
            time: at(time),
            user: user.into(),
            verb: "get".into(),
            allowed,
        }
    }

    const API: &str = "system:serviceaccount:payments:orders-api";
    const OTHER: &str = "system:serviceaccount:payments:debug";

    #[test]
    fn window_counts_allowed_reads_of_the_last_24_hours() {
        let now = at("2026-11-22T10:30:00Z");
        let mut summary = ReadsSummary::default();
        for record in [
            read("2026-11-21T10:59:59Z", OTHER, true), // hour 10 yesterday: outside
            read("2026-11-21T11:00:00Z", API, true),   // the oldest hour still in
            read("2026-11-22T10:29:00Z", API, true),
            read("2026-11-22T10:10:00Z", OTHER, false), // denied: not a read
        ] {
            summary.add(&record, now);
        }
        assert_eq!(summary.reads_in_window(now), 2);
        assert_eq!(summary.readers_in_window(now).collect::<Vec<_>>(), [API]);
        assert_eq!(
            summary.last_read,
            Some(LastRead {
                user: API.into(),
                verb: "get".into(),
                time: at("2026-11-22T10:29:00Z")
            })
        );
        // An hour later the oldest hour has left the window; last_read stays.
        let later = at("2026-11-22T11:00:00Z");
        summary.prune(later);
        assert_eq!(summary.reads_in_window(later), 1);
        let much_later = at("2026-11-24T00:00:00Z");
        summary.prune(much_later);
        assert_eq!(summary.reads_in_window(much_later), 0);
        assert_eq!(summary.readers_in_window(much_later).count(), 0);
        assert!(summary.last_read.is_some());
    }

    #[test]
    fn older_reads_added_later_do_not_replace_the_last_read() {
        let now = at("2026-11-22T10:30:00Z");
        let mut summary = ReadsSummary::default();
        summary.add(&read("2026-11-22T10:00:00Z", API, true), now);
        summary.add(&read("2026-11-22T09:00:00Z", OTHER, true), now);
        assert_eq!(
            summary.last_read.as_ref().map(|r| r.user.as_str()),
            Some(API)
        );
        assert_eq!(summary.readers_in_window(now).count(), 2);
    }

    #[test]
    fn readers_are_bounded_keeping_the_newest() {
        let now = at("2026-11-22T10:30:00Z");
        let mut summary = ReadsSummary::default();
        for n in 0..(MAX_READERS + 10) {
            let time = now - Duration::minutes(600 - n as i64);
            summary.add(
                &Read {
                    time,
                    user: format!("user-{n:03}"),
                    verb: "list".into(),
                    allowed: true,
                },
                now,
            );
        }
        let readers: Vec<&str> = summary.readers_in_window(now).collect();
        assert_eq!(readers.len(), MAX_READERS);
        assert_eq!(readers.first(), Some(&"user-010"));
        assert_eq!(summary.reads_in_window(now), (MAX_READERS + 10) as u64);
    }

    #[test]
    fn usernames_are_classified() {
        assert_eq!(
            classify(API),
            Reader::ServiceAccount {
                namespace: "payments",
                name: "orders-api"
            }
        );
        assert_eq!(classify("system:node:worker-1"), Reader::Node);
        assert_eq!(classify("alice@example.com"), Reader::Other);
        assert_eq!(classify("system:serviceaccount:payments"), Reader::Other);
        assert_eq!(classify("system:serviceaccount::x"), Reader::Other);
        assert_eq!(classify("system:serviceaccounts:payments"), Reader::Other);
    }

    #[test]
    fn only_unlisted_service_accounts_are_unexpected() {
        let allowed = vec!["orders-api".to_owned()];
        let keyturn = "system:serviceaccount:keyturn-system:keyturn-operator";
        let readers = [
            API,
            OTHER,
            "system:serviceaccount:shop:orders-api", // same name, other namespace
            "system:node:worker-1",
            "alice@example.com",
            keyturn,
        ];
        assert_eq!(
            unexpected_readers(readers, "payments", Some(&allowed), Some(keyturn)),
            [OTHER, "system:serviceaccount:shop:orders-api"]
        );
        // Without spec.access nothing is unexpected; without a known identity keyturn is.
        assert!(unexpected_readers(readers, "payments", None, Some(keyturn)).is_empty());
        assert_eq!(
            unexpected_readers([keyturn], "payments", Some(&allowed), None),
            [keyturn]
        );
        assert!(unexpected_readers([API], "payments", Some(&allowed), None).is_empty());
    }
}
