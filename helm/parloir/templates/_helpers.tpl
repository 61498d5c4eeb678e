{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "parloir.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, with the chart name unless it is already in it. */}}
{{- define "parloir.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "parloir.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of the server pods (the migration Job's pods have component: migration). */}}
{{- define "parloir.selectorLabels" -}}
{{ include "parloir.instanceLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "parloir.instanceLabels" -}}
app.kubernetes.io/name: {{ include "parloir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels, without app.kubernetes.io/component (each object adds its own). */}}
{{- define "parloir.commonLabels" -}}
helm.sh/chart: {{ include "parloir.chart" . }}
{{ include "parloir.instanceLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: parloir
{{- end }}

{{- define "parloir.labels" -}}
helm.sh/chart: {{ include "parloir.chart" . }}
{{ include "parloir.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: parloir
{{- end }}

{{- define "parloir.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "parloir.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "parloir.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{/* The Secret holding DATABASE_URL / REDIS_URL / JWT_SECRET. */}}
{{- define "parloir.secretName" -}}
{{- .Values.secret.existingSecret | default (include "parloir.fullname" .) }}
{{- end }}

{{/* True (non-empty) when REDIS_URL is given to the pods: cluster mode. */}}
{{- define "parloir.clusterMode" -}}
{{- if or .Values.secret.keys.redisUrl .Values.redisCluster.nodes }}true{{ end }}
{{- end }}

{{/*
REDIS_URL built from redisCluster.nodes, in the client's cluster form
(redis-cluster://first?node=second&node=...); the password, when there is
one, comes from $(REDIS_PASSWORD), which Kubernetes expands from the env var
defined just before it.
*/}}
{{- define "parloir.redisClusterUrl" -}}
{{- $c := .Values.redisCluster -}}
{{- $scheme := ternary "rediss-cluster" "redis-cluster" $c.tls -}}
{{- $auth := ternary ":$(REDIS_PASSWORD)@" "" (ne $c.passwordKey "") -}}
{{- $rest := list -}}
{{- range rest $c.nodes }}{{ $rest = append $rest (printf "node=%s" .) }}{{ end -}}
{{- printf "%s://%s%s" $scheme $auth (first $c.nodes) -}}
{{- if $rest }}?{{ join "&" $rest }}{{ end -}}
{{- end }}

{{- define "parloir.preStopSeconds" -}}
{{- if eq .Values.lifecycle.preStop.type "none" }}0{{ else }}{{ .Values.lifecycle.preStop.sleepSeconds }}{{ end }}
{{- end }}

{{/*
Non-secret settings as a YAML map NAME: "value" (the ConfigMap's data).
The migration Job gets the same settings inline: pre-install hooks run
before the ConfigMap exists. config.extraEnv wins over generated keys.
Numbers go through int: Helm reads values as float64 (1000000 would print 1e+06).
*/}}
{{- define "parloir.configEnv" -}}
{{- $c := .Values.config -}}
{{- $env := dict
  "PARLOIR_BIND" (printf "0.0.0.0:%d" (int .Values.containerPort))
  "PARLOIR_MIGRATE_ON_START" (ternary "false" "true" .Values.migration.enabled)
  "PARLOIR_DRAIN_GRACE_SECS" (int $c.drainGraceSecs | toString)
  "PARLOIR_DB_MAX_CONNECTIONS" (int $c.dbMaxConnections | toString)
  "LOG_FORMAT" $c.logFormat
  "RUST_LOG" $c.rustLog
-}}
{{- if include "parloir.clusterMode" . }}
{{- $_ := set $env "PARLOIR_HEARTBEAT_MS" (int $c.heartbeatMs | toString) }}
{{- $_ = set $env "PARLOIR_NODE_TTL_MS" (int $c.nodeTtlMs | toString) }}
{{- $_ = set $env "PARLOIR_REDIS_POOL_SIZE" (int $c.redisPoolSize | toString) }}
{{- $_ = set $env "PARLOIR_REDIS_PREFIX" $c.redisPrefix }}
{{- end }}
{{- with $c.corsOrigins }}
{{- $_ := set $env "PARLOIR_CORS_ORIGINS" (join "," .) }}
{{- end }}
{{- with $c.jwtIssuer }}
{{- $_ := set $env "JWT_ISSUER" . }}
{{- end }}
{{- with $c.jwtAudience }}
{{- $_ := set $env "JWT_AUDIENCE" . }}
{{- end }}
{{- if $c.allowAnyIssuerAndAudience }}
{{- $_ := set $env "PARLOIR_JWT_ACCEPT_ANY_AUDIENCE" "true" }}
{{- end }}
{{- if gt (int $c.jwtLeewaySecs) 0 }}
{{- $_ := set $env "JWT_LEEWAY_SECS" (int $c.jwtLeewaySecs | toString) }}
{{- end }}
{{- with $c.retention }}
{{- $_ := set $env "PARLOIR_ARCHIVE_AFTER_DAYS" (int .archiveAfterDays | toString) }}
{{- $_ = set $env "PARLOIR_PURGE_DELETED_AFTER_DAYS" (int .purgeDeletedAfterDays | toString) }}
{{- $_ = set $env "PARLOIR_RETENTION_INTERVAL_SECS" (int .intervalSecs | toString) }}
{{- $_ = set $env "PARLOIR_RETENTION_BATCH" (int .batch | toString) }}
{{- $_ = set $env "PARLOIR_NOTIFICATIONS_KEPT_DAYS" (int .notificationsKeptDays | toString) }}
{{- if gt (int .messageRetentionDays) 0 }}
{{- $_ = set $env "PARLOIR_MESSAGE_RETENTION_DAYS" (int .messageRetentionDays | toString) }}
{{- end }}
{{- end }}
{{- if .Values.otel.endpoint }}
{{- $_ := set $env "OTEL_EXPORTER_OTLP_ENDPOINT" .Values.otel.endpoint }}
{{- $_ = set $env "OTEL_SERVICE_NAME" (.Values.otel.serviceName | default (include "parloir.fullname" .)) }}
{{- end }}
{{- $n := .Values.notifications }}
{{- if or $n.webhook.enabled $n.email.enabled }}
{{- $_ := set $env "PARLOIR_NOTIFY_DELAY_SECS" (int $n.delaySecs | toString) }}
{{- $_ = set $env "PARLOIR_NOTIFY_MAX_ATTEMPTS" (int $n.maxAttempts | toString) }}
{{- $_ = set $env "PARLOIR_NOTIFY_RETRY_BASE_SECS" (int $n.retryBaseSecs | toString) }}
{{- $_ = set $env "PARLOIR_NOTIFY_LEASE_SECS" (int $n.leaseSecs | toString) }}
{{- end }}
{{- if $n.webhook.enabled }}
{{- $_ := set $env "PARLOIR_WEBHOOK_TIMEOUT_MS" (int $n.webhook.timeoutMs | toString) }}
{{- end }}
{{- if $n.email.enabled }}
{{- $_ := set $env "PARLOIR_SMTP_FROM" $n.email.from }}
{{- $_ = set $env "PARLOIR_SMTP_TIMEOUT_MS" (int $n.email.timeoutMs | toString) }}
{{- end }}
{{- range $k, $v := $c.extraEnv }}
{{- $_ := set $env $k (toString $v) }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* Pod-level env: node id from the pod name, resource attributes, secrets. */}}
{{- define "parloir.podEnv" -}}
- name: PARLOIR_NODE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- if .Values.otel.endpoint }}
{{- $attrs := list "k8s.pod.name=$(PARLOIR_NODE_ID)" "k8s.namespace.name=$(POD_NAMESPACE)" (printf "service.version=%s" (.Values.image.tag | default .Chart.AppVersion)) }}
{{- range $k, $v := .Values.otel.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%s" $k (toString $v)) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- end }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "parloir.secretName" . }}
      key: {{ .Values.secret.keys.databaseUrl }}
{{- if .Values.redisCluster.nodes }}
{{- if .Values.redisCluster.passwordKey }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "parloir.secretName" . }}
      key: {{ .Values.redisCluster.passwordKey }}
{{- end }}
- name: REDIS_URL
  value: {{ include "parloir.redisClusterUrl" . | quote }}
{{- else if include "parloir.clusterMode" . }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "parloir.secretName" . }}
      key: {{ .Values.secret.keys.redisUrl }}
{{- end }}
{{- if .Values.jwtPublicKey.enabled }}
- name: JWT_PUBLIC_KEY_FILE
  value: /etc/parloir/jwt/{{ .Values.jwtPublicKey.key }}
- name: JWT_ALGORITHM
  value: {{ .Values.jwtPublicKey.algorithm | quote }}
{{- else }}
- name: JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "parloir.secretName" . }}
      key: {{ .Values.secret.keys.jwtSecret }}
{{- end }}
{{- if .Values.notifications.webhook.enabled }}
- name: PARLOIR_WEBHOOK_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "parloir.secretName" . }}
      key: {{ .Values.secret.keys.webhookUrl }}
- name: PARLOIR_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "parloir.secretName" . }}
      key: {{ .Values.secret.keys.webhookSecret }}
{{- end }}
{{- if .Values.notifications.email.enabled }}
- name: PARLOIR_SMTP_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "parloir.secretName" . }}
      key: {{ .Values.secret.keys.smtpUrl }}
{{- end }}
{{- end }}

{{/* Checks of value combinations the schema cannot express. */}}
{{- define "parloir.validate" -}}
{{- if and (not (include "parloir.clusterMode" .)) (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) }}
{{- fail "secret.keys.redisUrl is empty (single-node mode) but several replicas are asked for: give REDIS_URL, or set replicaCount: 1 and autoscaling.enabled: false" }}
{{- end }}
{{- if and .Values.notifications.email.enabled (not .Values.notifications.email.from) }}
{{- fail "notifications.email.enabled needs notifications.email.from (PARLOIR_SMTP_FROM)" }}
{{- end }}
{{- if and .Values.jwtPublicKey.enabled (not .Values.jwtPublicKey.secretName) }}
{{- fail "jwtPublicKey.enabled needs jwtPublicKey.secretName" }}
{{- end }}
{{- if and (eq .Values.lifecycle.preStop.type "exec") (not .Values.lifecycle.preStop.execCommand) }}
{{- fail "lifecycle.preStop.type exec needs lifecycle.preStop.execCommand" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (not (or .Values.podDisruptionBudget.maxUnavailable .Values.podDisruptionBudget.minAvailable)) }}
{{- fail "podDisruptionBudget: set maxUnavailable or minAvailable" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.maxUnavailable .Values.podDisruptionBudget.minAvailable }}
{{- fail "podDisruptionBudget: set only one of maxUnavailable and minAvailable" }}
{{- end }}
{{- if not .Values.config.allowAnyIssuerAndAudience }}
{{- if not (or .Values.config.jwtIssuer (get .Values.config.extraEnv "JWT_ISSUER")) }}
{{- fail "config.jwtIssuer is empty: set the issuer (iss) your tokens carry, or config.allowAnyIssuerAndAudience: true to accept tokens of any issuer (never on a public deployment)" }}
{{- end }}
{{- if not (or .Values.config.jwtAudience (get .Values.config.extraEnv "JWT_AUDIENCE")) }}
{{- fail "config.jwtAudience is empty: set the audience (aud) your tokens carry, or config.allowAnyIssuerAndAudience: true to accept tokens for any audience (never on a public deployment)" }}
{{- end }}
{{- end }}
{{- if lt (int .Values.config.nodeTtlMs) (mul 2 (int .Values.config.heartbeatMs)) }}
{{- fail "config.nodeTtlMs must be at least twice config.heartbeatMs" }}
{{- end }}
{{- end }}
