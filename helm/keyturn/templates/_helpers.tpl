{{/*
Names, labels, and the decisions several templates share (replicas, namespaces, volumes), plus
the check that refuses value combinations that cannot work.
*/}}

{{- define "keyturn.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "keyturn.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "keyturn.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keyturn.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "keyturn.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "keyturn.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: keyturn
{{- end -}}

{{- define "keyturn.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "keyturn.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "keyturn.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Replicas: explicit, or 1 for SQLite (single writer) and 2 for PostgreSQL. */}}
{{- define "keyturn.replicas" -}}
{{- if kindIs "invalid" .Values.replicaCount -}}
{{- if eq .Values.audit.store "sqlite" -}}1{{- else -}}2{{- end -}}
{{- else -}}
{{- .Values.replicaCount | int -}}
{{- end -}}
{{- end -}}

{{/* The namespace whose ManagedSecrets are reconciled (scope=namespace only). */}}
{{- define "keyturn.watchNamespace" -}}
{{- default .Release.Namespace .Values.watchNamespace -}}
{{- end -}}

{{- define "keyturn.sqliteClaimName" -}}
{{- default (printf "%s-audit" (include "keyturn.fullname" .)) .Values.audit.sqlite.persistence.existingClaim -}}
{{- end -}}

{{/*
Value combinations that cannot work. Included by every template, so `helm lint`, `helm
template` and `helm install` all stop with the message; each message names the values to change.
*/}}
{{- define "keyturn.validate" -}}
{{- $replicas := include "keyturn.replicas" . | int -}}
{{- if and (eq .Values.audit.store "sqlite") (gt $replicas 1) -}}
{{- fail (printf "keyturn: audit.store=sqlite allows one replica (SQLite has a single writer and its volume is ReadWriteOnce), but replicaCount is %d: leave replicaCount empty or set it to 1, or use audit.store=postgres for 2 replicas with leader election" $replicas) -}}
{{- end -}}
{{- if and (eq .Values.audit.store "postgres") (not .Values.audit.postgres.existingSecret) -}}
{{- fail "keyturn: audit.store=postgres needs audit.postgres.existingSecret: the name of a Secret whose key audit.postgres.secretKey holds the postgres:// URL" -}}
{{- end -}}
{{- if and (eq .Values.audit.store "postgres") .Values.audit.sqlite.persistence.existingClaim -}}
{{- fail "keyturn: audit.sqlite.persistence.existingClaim is set but audit.store=postgres: the claim would not be used; remove one of them" -}}
{{- end -}}
{{- if .Values.auditWebhook.enabled -}}
{{- if not .Values.auditWebhook.tls.secretName -}}
{{- fail "keyturn: auditWebhook.enabled needs auditWebhook.tls.secretName: a kubernetes.io/tls Secret with the serving certificate (the API server only sends audit events over HTTPS)" -}}
{{- end -}}
{{- if not (or .Values.auditWebhook.clientCA.secretName .Values.auditWebhook.token.secretName) -}}
{{- fail "keyturn: auditWebhook.enabled needs a way to authenticate the API server: set auditWebhook.clientCA.secretName (mTLS), auditWebhook.token.secretName (bearer token), or both; an unauthenticated endpoint would let anyone write audit events" -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.scope "cluster") .Values.watchNamespace -}}
{{- fail (printf "keyturn: watchNamespace=%s needs scope=namespace (scope=cluster reconciles every namespace and grants cluster-wide permissions)" .Values.watchNamespace) -}}
{{- end -}}
{{- if le (int .Values.operator.terminationGracePeriodSeconds) (int .Values.operator.shutdownGraceSeconds) -}}
{{- fail (printf "keyturn: operator.terminationGracePeriodSeconds (%d) must exceed operator.shutdownGraceSeconds (%d): the leader releases its Lease after the running steps finish, and the kubelet kills the pod at the grace period" (int .Values.operator.terminationGracePeriodSeconds) (int .Values.operator.shutdownGraceSeconds)) -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.egress.allowAll) (not .Values.networkPolicy.egress.apiServerCIDRs) -}}
{{- fail "keyturn: networkPolicy.egress.allowAll=false needs networkPolicy.egress.apiServerCIDRs (the API server's addresses: kubectl get endpoints kubernetes -n default); without them the operator cannot reach the API" -}}
{{- end -}}
{{- end -}}
