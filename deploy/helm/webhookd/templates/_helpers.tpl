{{- define "webhookd.fullname" -}}{{ printf "%s-webhookd" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "webhookd.labels" -}}
app.kubernetes.io/name: webhookd
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "webhookd.secretName" -}}{{ .Values.credentials.existingSecret | default (printf "%s-credentials" (include "webhookd.fullname" .)) }}{{- end -}}
{{- /* Non-empty when an adminAuth file provides admin credentials (ADMIN_TOKEN is then optional). */ -}}
{{- define "webhookd.adminFiles" -}}{{ if or .Values.adminAuth.tokensFile.enabled .Values.adminAuth.jwtPublicKey.enabled }}true{{ end }}{{- end -}}

{{- /*
The Deployments this release runs, as YAML: a list of {name, component, roles, replicas, resources}.
topology perRole: one per enabled role; allInOne: one whose pods run every enabled role.
*/ -}}
{{- define "webhookd.workloads" -}}
{{- $enabled := list -}}
{{- range $role := list "dispatcher" "retry" "analytics" "admin" -}}
{{- if (index $.Values.roles $role).enabled }}{{ $enabled = append $enabled $role }}{{ end -}}
{{- end -}}
{{- if not $enabled }}{{ fail "roles: enable at least one role" }}{{ end -}}
{{- if eq .Values.topology "allInOne" }}
- name: all
  component: all
  roles: {{ if eq (len $enabled) 4 }}all{{ else }}{{ join "," $enabled }}{{ end }}
  replicas: {{ .Values.allInOne.replicas }}
  resources: {{ .Values.allInOne.resources | default .Values.resources | toJson }}
  admin: {{ has "admin" $enabled }}
{{- else }}
{{- range $role := $enabled }}
{{- $r := index $.Values.roles $role }}
- name: {{ $role }}
  component: {{ $role }}
  roles: {{ $role }}
  replicas: {{ $r.replicas }}
  resources: {{ $r.resources | default $.Values.resources | toJson }}
  admin: {{ eq $role "admin" }}
{{- end }}
{{- end }}
{{- end -}}

{{- /* The component label the admin Service selects. */ -}}
{{- define "webhookd.adminComponent" -}}{{ if eq .Values.topology "allInOne" }}all{{ else }}admin{{ end }}{{- end -}}

{{- /* Volumes and mounts: every Secret webhookd reads as a file is mounted whole (items, no subPath), so updates arrive. */ -}}
{{- define "webhookd.volumeMounts" -}}
- {name: tmp, mountPath: /tmp}
{{- if .Values.templates.secretName }}
- {name: template-secrets, mountPath: /etc/webhookd/template-secrets, readOnly: true}
{{- end }}
{{- if .Values.adminAuth.tokensFile.enabled }}
- {name: admin-tokens, mountPath: /etc/webhookd/admin-tokens, readOnly: true}
{{- end }}
{{- if .Values.adminAuth.jwtPublicKey.enabled }}
- {name: admin-jwt, mountPath: /etc/webhookd/admin-jwt, readOnly: true}
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.ca.secretName }}
- {name: kafka-ca, mountPath: /etc/webhookd/kafka-ca, readOnly: true}
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.clientCert.secretName }}
- {name: kafka-client-cert, mountPath: /etc/webhookd/kafka-client-cert, readOnly: true}
{{- end }}
{{- if and .Values.kafka.sasl.mechanism .Values.kafka.sasl.passwordAsFile }}
- {name: kafka-sasl, mountPath: /etc/webhookd/kafka-sasl, readOnly: true}
{{- end }}
{{- end -}}
{{- define "webhookd.volumes" -}}
- {name: tmp, emptyDir: {sizeLimit: 64Mi}}
{{- if .Values.templates.secretName }}
- {name: template-secrets, secret: {secretName: {{ .Values.templates.secretName }}}}
{{- end }}
{{- with .Values.adminAuth.tokensFile }}{{ if .enabled }}
- {name: admin-tokens, secret: {secretName: {{ .secretName | default (include "webhookd.secretName" $) }}, items: [{key: {{ .key }}, path: tokens}]}}
{{- end }}{{ end }}
{{- with .Values.adminAuth.jwtPublicKey }}{{ if .enabled }}
- {name: admin-jwt, secret: {secretName: {{ .secretName | default (include "webhookd.secretName" $) }}, items: [{key: {{ .key }}, path: public-key.pem}]}}
{{- end }}{{ end }}
{{- if .Values.kafka.tls.enabled }}
{{- with .Values.kafka.tls.ca }}{{ if .secretName }}
- {name: kafka-ca, secret: {secretName: {{ .secretName }}, items: [{key: {{ .key }}, path: ca.crt}]}}
{{- end }}{{ end }}
{{- with .Values.kafka.tls.clientCert }}{{ if .secretName }}
- {name: kafka-client-cert, secret: {secretName: {{ .secretName }}, items: [{key: {{ .certKey }}, path: tls.crt}, {key: {{ .keyKey }}, path: tls.key}]}}
{{- end }}{{ end }}
{{- end }}
{{- with .Values.kafka.sasl }}{{ if and .mechanism .passwordAsFile }}
- {name: kafka-sasl, secret: {secretName: {{ .secretName | default (include "webhookd.secretName" $) }}, items: [{key: {{ .passwordKey }}, path: password}]}}
{{- end }}{{ end }}
{{- end -}}

{{- /* An env entry read from a Secret key. Arguments: list NAME SECRET KEY OPTIONAL. */ -}}
{{- define "webhookd.secretEnv" -}}
- name: {{ index . 0 }}
  valueFrom: {secretKeyRef: {name: {{ index . 1 | quote }}, key: {{ index . 2 | quote }}{{ if index . 3 }}, optional: true{{ end }}}}
{{- end -}}

{{- define "webhookd.env" -}}
{{- $cred := include "webhookd.secretName" . -}}
{{- with .Values.kafka.brokersSecret }}{{ if .name }}
{{ include "webhookd.secretEnv" (list "WEBHOOKD_KAFKA_BROKERS" .name .key false) }}
{{- end }}{{ end }}
{{- if not .Values.kafka.brokersSecret.name }}
- {name: WEBHOOKD_KAFKA_BROKERS, value: {{ required "kafka.brokers (or kafka.brokersSecret.name) is required" .Values.kafka.brokers | quote }}}
{{- end }}
{{- with .Values.kafka.sasl }}{{ if .mechanism }}
- {name: WEBHOOKD_KAFKA_SASL_MECHANISM, value: {{ .mechanism | quote }}}
{{ include "webhookd.secretEnv" (list "WEBHOOKD_KAFKA_USER" (.secretName | default $cred) .usernameKey false) }}
{{- if .passwordAsFile }}
- {name: WEBHOOKD_KAFKA_PASSWORD_FILE, value: /etc/webhookd/kafka-sasl/password}
{{- else }}
{{ include "webhookd.secretEnv" (list "WEBHOOKD_KAFKA_PASSWORD" (.secretName | default $cred) .passwordKey false) }}
{{- end }}
{{- end }}{{ end }}
- {name: WEBHOOKD_KAFKA_TLS, value: {{ .Values.kafka.tls.enabled | quote }}}
{{- if .Values.kafka.tls.enabled }}
{{- if .Values.kafka.tls.ca.secretName }}
- {name: WEBHOOKD_KAFKA_TLS_CA_FILE, value: /etc/webhookd/kafka-ca/ca.crt}
{{- end }}
{{- if .Values.kafka.tls.clientCert.secretName }}
- {name: WEBHOOKD_KAFKA_TLS_CERT_FILE, value: /etc/webhookd/kafka-client-cert/tls.crt}
- {name: WEBHOOKD_KAFKA_TLS_KEY_FILE, value: /etc/webhookd/kafka-client-cert/tls.key}
{{- end }}
{{- end }}
- {name: WEBHOOKD_TOPIC_PREFIX, value: {{ .Values.kafka.topicPrefix | quote }}}
- {name: WEBHOOKD_EVENT_TOPICS, value: {{ .Values.kafka.eventTopics | quote }}}
- {name: WEBHOOKD_CREATE_EVENT_TOPICS, value: {{ .Values.kafka.createEventTopics | quote }}}
- {name: WEBHOOKD_TOPIC_PARTITIONS, value: {{ .Values.kafka.topicPartitions | quote }}}
- {name: WEBHOOKD_TOPIC_REPLICATION, value: {{ .Values.kafka.topicReplication | quote }}}
- {name: WEBHOOKD_CONSUMER_GROUP, value: {{ .Values.kafka.consumerGroup | quote }}}
- {name: WEBHOOKD_KAFKA_SESSION_TIMEOUT, value: {{ .Values.kafka.sessionTimeout | quote }}}
- {name: WEBHOOKD_KAFKA_TRANSACTIONS, value: {{ .Values.kafka.transactions | quote }}}
- {name: WEBHOOKD_RETRY_TIERS, value: {{ .Values.kafka.retryTiers | quote }}}
{{- with .Values.clickhouse }}
{{- if .addrKey }}
{{ include "webhookd.secretEnv" (list "WEBHOOKD_CLICKHOUSE_ADDR" (.secretName | default $cred) .addrKey false) }}
{{- else }}
- {name: WEBHOOKD_CLICKHOUSE_ADDR, value: {{ .addr | quote }}}
{{- end }}
{{ include "webhookd.secretEnv" (list "WEBHOOKD_CLICKHOUSE_USER" (.secretName | default $cred) .userKey true) }}
{{ include "webhookd.secretEnv" (list "WEBHOOKD_CLICKHOUSE_PASSWORD" (.secretName | default $cred) .passwordKey true) }}
- {name: WEBHOOKD_CLICKHOUSE_DATABASE, value: {{ .database | quote }}}
- {name: WEBHOOKD_CLICKHOUSE_TLS, value: {{ .tls | quote }}}
- {name: WEBHOOKD_CLICKHOUSE_CLUSTER, value: {{ .cluster | quote }}}
- {name: WEBHOOKD_CLICKHOUSE_TTL_DAYS, value: {{ .ttlDays | quote }}}
- {name: WEBHOOKD_CLICKHOUSE_LOG_TTL_DAYS, value: {{ .logTTLDays | quote }}}
- {name: WEBHOOKD_CLICKHOUSE_AGGREGATE_TTL_DAYS, value: {{ .aggregateTTLDays | quote }}}
- {name: WEBHOOKD_CLICKHOUSE_DLQ_TTL_DAYS, value: {{ .dlqTTLDays | quote }}}
- {name: WEBHOOKD_CLICKHOUSE_MIGRATE_WAIT, value: {{ .migrateWait | quote }}}
{{- end }}
- {name: WEBHOOKD_ANALYTICS_BATCH_SIZE, value: {{ .Values.analytics.batchSize | quote }}}
- {name: WEBHOOKD_ANALYTICS_FLUSH_INTERVAL, value: {{ .Values.analytics.flushInterval | quote }}}
- {name: WEBHOOKD_ANALYTICS_FEED_INTERVAL, value: {{ .Values.analytics.feedInterval | quote }}}
- {name: WEBHOOKD_ANALYTICS_DEDUP_WINDOW, value: {{ .Values.analytics.dedupWindow | quote }}}
- {name: WEBHOOKD_MAX_IN_FLIGHT, value: {{ .Values.delivery.maxInFlight | quote }}}
- {name: WEBHOOKD_PARTITION_MAX_IN_FLIGHT, value: {{ .Values.delivery.partitionMaxInFlight | quote }}}
- {name: WEBHOOKD_MAX_IN_FLIGHT_PER_HOST, value: {{ .Values.delivery.maxInFlightPerHost | quote }}}
- {name: WEBHOOKD_BREAKER_FAILURES, value: {{ .Values.delivery.breakerFailures | quote }}}
- {name: WEBHOOKD_BREAKER_COOLDOWN, value: {{ .Values.delivery.breakerCooldown | quote }}}
- {name: WEBHOOKD_RESPONSE_BODY_LIMIT, value: {{ .Values.delivery.responseBodyLimit | quote }}}
- {name: WEBHOOKD_LOG_BODY_LIMIT, value: {{ .Values.delivery.logBodyLimit | quote }}}
- {name: WEBHOOKD_AUTO_DISABLE_AFTER, value: {{ .Values.delivery.autoDisableAfter | quote }}}
- {name: WEBHOOKD_RETRY_DELAY_SCALE, value: {{ .Values.delivery.retryDelayScale | quote }}}
- {name: WEBHOOKD_ALLOW_PRIVATE_TARGETS, value: {{ .Values.delivery.allowPrivateTargets | quote }}}
- {name: WEBHOOKD_ALLOWED_TARGET_CIDRS, value: {{ join "," .Values.delivery.allowedTargetCIDRs | quote }}}
- {name: WEBHOOKD_SHUTDOWN_GRACE, value: {{ .Values.delivery.shutdownGrace | quote }}}
- {name: WEBHOOKD_MEMORY_BUDGET_MB, value: {{ .Values.memoryBudgetMB | quote }}}
- {name: WEBHOOKD_QUEUE_METRICS_INTERVAL, value: {{ .Values.metrics.queueInterval | quote }}}
- {name: WEBHOOKD_TEMPLATE_ENV_ALLOW, value: {{ join "," .Values.templates.envAllow | quote }}}
{{- if .Values.templates.secretName }}
- {name: WEBHOOKD_TEMPLATE_SECRETS_DIR, value: /etc/webhookd/template-secrets}
{{- end }}
- {name: WEBHOOKD_ADMIN_JWT_AUDIENCE, value: {{ .Values.adminJWTAudience | quote }}}
{{- if .Values.adminAuth.tokensFile.enabled }}
- {name: WEBHOOKD_ADMIN_TOKENS_FILE, value: /etc/webhookd/admin-tokens/tokens}
{{- end }}
{{- if .Values.adminAuth.jwtPublicKey.enabled }}
- {name: WEBHOOKD_ADMIN_JWT_PUBLIC_KEY_FILE, value: /etc/webhookd/admin-jwt/public-key.pem}
{{- end }}
- {name: WEBHOOKD_LOG_LEVEL, value: {{ .Values.log.level | quote }}}
- {name: WEBHOOKD_LOG_FORMAT, value: {{ .Values.log.format | quote }}}
{{ include "webhookd.secretEnv" (list "WEBHOOKD_ADMIN_TOKEN" $cred "ADMIN_TOKEN" (include "webhookd.adminFiles" . | eq "true")) }}
{{ include "webhookd.secretEnv" (list "WEBHOOKD_ADMIN_JWT_SECRET" $cred "ADMIN_JWT_SECRET" true) }}
{{ include "webhookd.secretEnv" (list "WEBHOOKD_SECRETS_KEY" $cred "SECRETS_KEY" true) }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
