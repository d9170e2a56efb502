{{- define "webhookd.fullname" -}}{{ printf "%s-webhookd" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "webhookd.labels" -}}
app.kubernetes.io/name: webhookd
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "webhookd.secretName" -}}{{ .Values.credentials.existingSecret | default (printf "%s-credentials" (include "webhookd.fullname" .)) }}{{- end -}}
{{- /* Non-empty when an adminAuth file provides admin credentials (ADMIN_TOKEN is then optional). */ -}}
{{- define "webhookd.adminFiles" -}}{{ if or .Values.adminAuth.tokensFile.enabled .Values.adminAuth.jwtPublicKey.enabled }}true{{ end }}{{- end -}}
{{- /* Volumes and mounts: template secrets and the adminAuth files (whole-Secret mounts with items, no subPath, so updates arrive). */ -}}
{{- define "webhookd.volumeMounts" -}}
{{- if .Values.templates.secretName }}
- {name: template-secrets, mountPath: /etc/webhookd/template-secrets, readOnly: true}
{{- end }}
{{- if .Values.adminAuth.tokensFile.enabled }}
- {name: admin-tokens, mountPath: /etc/webhookd/admin-tokens, readOnly: true}
{{- end }}
{{- if .Values.adminAuth.jwtPublicKey.enabled }}
- {name: admin-jwt, mountPath: /etc/webhookd/admin-jwt, readOnly: true}
{{- end }}
{{- end -}}
{{- define "webhookd.volumes" -}}
{{- if .Values.templates.secretName }}
- {name: template-secrets, secret: {secretName: {{ .Values.templates.secretName }}}}
{{- end }}
{{- with .Values.adminAuth.tokensFile }}{{ if .enabled }}
- {name: admin-tokens, secret: {secretName: {{ .secretName | default (include "webhookd.secretName" $) }}, items: [{key: {{ .key }}, path: tokens}]}}
{{- end }}{{ end }}
{{- with .Values.adminAuth.jwtPublicKey }}{{ if .enabled }}
- {name: admin-jwt, secret: {secretName: {{ .secretName | default (include "webhookd.secretName" $) }}, items: [{key: {{ .key }}, path: public-key.pem}]}}
{{- end }}{{ end }}
{{- end -}}
{{- define "webhookd.env" -}}
- {name: WEBHOOKD_KAFKA_BROKERS, value: {{ .Values.kafka.brokers | quote }}}
- {name: WEBHOOKD_KAFKA_SASL_MECHANISM, value: {{ .Values.kafka.saslMechanism | quote }}}
- {name: WEBHOOKD_KAFKA_TLS, value: {{ .Values.kafka.tls | quote }}}
- {name: WEBHOOKD_TOPIC_PREFIX, value: {{ .Values.kafka.topicPrefix | quote }}}
- {name: WEBHOOKD_EVENT_TOPICS, value: {{ .Values.kafka.eventTopics | quote }}}
- {name: WEBHOOKD_CREATE_EVENT_TOPICS, value: {{ .Values.kafka.createEventTopics | quote }}}
- {name: WEBHOOKD_TOPIC_PARTITIONS, value: {{ .Values.kafka.topicPartitions | quote }}}
- {name: WEBHOOKD_TOPIC_REPLICATION, value: {{ .Values.kafka.topicReplication | quote }}}
- {name: WEBHOOKD_CONSUMER_GROUP, value: {{ .Values.kafka.consumerGroup | quote }}}
- {name: WEBHOOKD_KAFKA_SESSION_TIMEOUT, value: {{ .Values.kafka.sessionTimeout | quote }}}
- {name: WEBHOOKD_RETRY_TIERS, value: {{ .Values.kafka.retryTiers | quote }}}
- {name: WEBHOOKD_CLICKHOUSE_ADDR, value: {{ .Values.clickhouse.addr | quote }}}
- {name: WEBHOOKD_CLICKHOUSE_DATABASE, value: {{ .Values.clickhouse.database | quote }}}
- {name: WEBHOOKD_CLICKHOUSE_TLS, value: {{ .Values.clickhouse.tls | quote }}}
- {name: WEBHOOKD_CLICKHOUSE_CLUSTER, value: {{ .Values.clickhouse.cluster | quote }}}
- {name: WEBHOOKD_CLICKHOUSE_TTL_DAYS, value: {{ .Values.clickhouse.ttlDays | quote }}}
- {name: WEBHOOKD_MAX_IN_FLIGHT, value: {{ .Values.delivery.maxInFlight | quote }}}
- {name: WEBHOOKD_PARTITION_MAX_IN_FLIGHT, value: {{ .Values.delivery.partitionMaxInFlight | quote }}}
- {name: WEBHOOKD_MAX_IN_FLIGHT_PER_HOST, value: {{ .Values.delivery.maxInFlightPerHost | quote }}}
- {name: WEBHOOKD_BREAKER_FAILURES, value: {{ .Values.delivery.breakerFailures | quote }}}
- {name: WEBHOOKD_BREAKER_COOLDOWN, value: {{ .Values.delivery.breakerCooldown | quote }}}
- {name: WEBHOOKD_RESPONSE_BODY_LIMIT, value: {{ .Values.delivery.responseBodyLimit | quote }}}
- {name: WEBHOOKD_LOG_BODY_LIMIT, value: {{ .Values.delivery.logBodyLimit | quote }}}
- {name: WEBHOOKD_AUTO_DISABLE_AFTER, value: {{ .Values.delivery.autoDisableAfter | quote }}}
- {name: WEBHOOKD_ALLOW_PRIVATE_TARGETS, value: {{ .Values.delivery.allowPrivateTargets | quote }}}
- {name: WEBHOOKD_ALLOWED_TARGET_CIDRS, value: {{ .Values.delivery.allowedTargetCIDRs | quote }}}
- {name: WEBHOOKD_SHUTDOWN_GRACE, value: {{ .Values.delivery.shutdownGrace | quote }}}
- {name: WEBHOOKD_QUEUE_METRICS_INTERVAL, value: {{ .Values.metrics.queueInterval | quote }}}
- {name: WEBHOOKD_TEMPLATE_ENV_ALLOW, value: {{ .Values.templates.envAllow | quote }}}
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
- name: WEBHOOKD_ADMIN_TOKEN
  valueFrom: {secretKeyRef: {name: {{ include "webhookd.secretName" . }}, key: ADMIN_TOKEN{{ if include "webhookd.adminFiles" . }}, optional: true{{ end }}}}
{{- range $k, $v := dict "WEBHOOKD_ADMIN_JWT_SECRET" "ADMIN_JWT_SECRET" "WEBHOOKD_SECRETS_KEY" "SECRETS_KEY" "WEBHOOKD_KAFKA_USER" "KAFKA_USER" "WEBHOOKD_KAFKA_PASSWORD" "KAFKA_PASSWORD" "WEBHOOKD_CLICKHOUSE_USER" "CLICKHOUSE_USER" "WEBHOOKD_CLICKHOUSE_PASSWORD" "CLICKHOUSE_PASSWORD" }}
- name: {{ $k }}
  valueFrom: {secretKeyRef: {name: {{ include "webhookd.secretName" $ }}, key: {{ $v }}, optional: true}}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
