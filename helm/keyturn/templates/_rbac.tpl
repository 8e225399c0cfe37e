{{/*
The operator's permissions where ManagedSecrets live: a ClusterRole with scope=cluster, a Role
in the watched namespace with scope=namespace. Every rule carries a `# why:` comment (the chart
tests fail without one); docs/helm.md has the same table. Verbs are the ones the code calls:
grep `Api::` in operator/src. No wildcards, and no escalate, bind or impersonate.
*/}}
{{- define "keyturn.rbac.workloadRules" -}}
# why: ManagedSecrets are what keyturn reconciles: list/watch feed the controller's cache, get
# re-reads one before acting, patch adds and removes the finalizer keyturn.dev/cleanup.
- apiGroups: ["keyturn.dev"]
  resources: ["managedsecrets"]
  verbs: ["get", "list", "watch", "patch"]
# why: status (conditions, rotation progress, preview) is written by server-side apply to the
# status subresource only.
- apiGroups: ["keyturn.dev"]
  resources: ["managedsecrets/status"]
  verbs: ["patch"]
# why: owned Secrets point at their ManagedSecret with blockOwnerDeletion=true; the
# OwnerReferencesPermissionEnforcement admission plugin allows that only to who may update the
# owner's finalizers.
- apiGroups: ["keyturn.dev"]
  resources: ["managedsecrets/finalizers"]
  verbs: ["update"]
# why: the controller watches the Secrets it owns (label app.kubernetes.io/managed-by=keyturn,
# metadata only) to react when one is changed or deleted. RBAC cannot narrow list/watch by
# label, so this grants them on every Secret in scope; list returns Secret data to a client
# that asks for it, which is why docs/helm.md describes this as read access to those Secrets.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "watch"]
# why: the staging and published Secrets of each ManagedSecret are created and updated by
# server-side apply (create + patch) and read back (get); the Secrets a spec names (admin
# credentials, tokens, CAs) are read with get when a step needs them; the staging Secret is
# deleted on cleanup. Names are chosen by users, so resourceNames cannot narrow these.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch", "delete"]
# why: one Event per audit record on the ManagedSecret (events.k8s.io/v1); patch turns repeats
# into a series.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# why: consumers: list finds workloads whose pod template uses the Secret (autoDiscover), patch
# (server-side apply of the restartedAt annotation) restarts them, get reads rollout status.
# No watch: rollouts are checked at the requeue times the lifecycle asks for.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get", "list", "patch"]
# why: access bindings (spec.access): keyturn maintains a Role granting get on the published
# Secret and a RoleBinding to the listed service accounts, and watches them for drift. No bind
# or escalate is needed: the API server lets a client create a Role or RoleBinding that grants
# only what the client already holds, and keyturn holds get on Secrets (rule above).
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- if eq .Values.scope "cluster" }}
# why: drift: who can read a managed Secret also depends on ClusterRoles bound cluster-wide or
# per namespace; keyturn watches them to report it and never changes them. get adds nothing to
# list, which returns whole objects.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles", "clusterrolebindings"]
  verbs: ["get", "list", "watch"]
{{- end }}
{{- end -}}

{{/* Permissions in the release namespace: the leader Lease and the audit checkpoints. */}}
{{- define "keyturn.rbac.releaseRules" -}}
# why: the first replica to start creates the leader Lease. create cannot be narrowed by
# resourceNames (a POST names the object in its body), so it is a Role in this namespace only.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
# why: leader election: read the Lease, take it over when it expires, renew it, release it on
# shutdown (update with the resourceVersion as precondition).
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ .Values.leaderElection.leaseName | quote }}]
  verbs: ["get", "update"]
# why: the leader checkpoints the audit chain's head to this ConfigMap by server-side apply; the
# API server authorises an apply that creates the object as create with its name, so
# resourceNames narrows create too.
- apiGroups: [""]
  resources: ["configmaps"]
  resourceNames: ["keyturn-audit-checkpoints"]
  verbs: ["get", "create", "patch"]
{{- end -}}
