{{- define "dolbom.fullname" -}}
{{- printf "%s-dolbom" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "dolbom.labels" -}}
app.kubernetes.io/name: dolbom
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "dolbom.selector" -}}
app.kubernetes.io/name: dolbom
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "dolbom.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Refuses value combinations the services cannot run with. */}}
{{- define "dolbom.checks" -}}
{{- if gt (int .Values.monitor.replicas) (int .Values.kafka.partitions) -}}
{{- fail (printf "monitor.replicas (%d) must not exceed kafka.partitions (%d): a monitor without a partition watches nobody" (int .Values.monitor.replicas) (int .Values.kafka.partitions)) -}}
{{- end -}}
{{- if and (eq .Values.historyStore "embedded") (gt (int .Values.monitor.replicas) 1) -}}
{{- fail "historyStore=embedded keeps snapshots on each pod's own volume: run one monitor replica, or use scylla" -}}
{{- end -}}
{{- if and .Values.notify.tls.enabled (not .Values.notify.tls.existingSecret) -}}
{{- fail "notify.tls.enabled needs notify.tls.existingSecret (tls.crt, tls.key)" -}}
{{- end -}}
{{- if and (not .Values.notify.tls.enabled) (not .Values.notify.insecurePlaintext) -}}
{{- fail "notify without TLS needs notify.insecurePlaintext=true (TLS ending at a mesh or proxy)" -}}
{{- end -}}
{{- if not .Values.notify.auth.existingSecret -}}
{{- fail "notify.auth.existingSecret (public.keys, contact.key) is required" -}}
{{- end -}}
{{- if le (int .Values.monitor.terminationGracePeriodSeconds) 45 -}}
{{- fail "monitor.terminationGracePeriodSeconds must exceed the 45 s drain limit" -}}
{{- end -}}
{{- end -}}

{{/* Pod-level security: non-root, seccomp RuntimeDefault. */}}
{{- define "dolbom.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security: read-only root, no privilege, no capabilities. */}}
{{- define "dolbom.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "dolbom.spread" -}}
topologySpreadConstraints:
  - maxSkew: {{ .root.Values.topologySpread.maxSkew }}
    topologyKey: {{ .root.Values.topologySpread.topologyKey }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "dolbom.selector" . | nindent 8 }}
{{- end -}}

{{/* The Kafka part of every service's TOML (top-level keys first). */}}
{{- define "dolbom.kafkaKeys" -}}
brokers = {{ .Values.kafka.brokers | quote }}
{{- end -}}

{{- define "dolbom.kafkaTables" -}}
[kafka_properties]
{{- range $k, $v := .Values.kafka.properties }}
{{ $k | quote }} = {{ $v | toString | quote }}
{{- end }}
{{- $tls := .Values.kafka.tls.enabled }}
{{- $sasl := .Values.kafka.sasl.enabled }}
{{- if and $tls $sasl }}
"security.protocol" = "SASL_SSL"
{{- else if $tls }}
"security.protocol" = "SSL"
{{- else if $sasl }}
"security.protocol" = "SASL_PLAINTEXT"
{{- end }}
{{- if $tls }}
"ssl.ca.location" = "/etc/dolbom/kafka-ca/ca.crt"
{{- end }}
{{- if $sasl }}
"sasl.mechanism" = {{ .Values.kafka.sasl.mechanism | quote }}
"sasl.username" = {{ .Values.kafka.sasl.username | quote }}

[kafka_secret_files]
"sasl.password" = "/etc/dolbom/kafka-sasl/password"
{{- end }}
{{- end -}}

{{/* The [scylla] table. */}}
{{- define "dolbom.scyllaTable" -}}
[scylla]
uri = {{ .Values.scylla.uri | quote }}
keyspace = {{ .Values.scylla.keyspace | quote }}
replication_factor = {{ int .Values.scylla.replicationFactor }}
{{- if .Values.scylla.localDc }}
local_dc = {{ .Values.scylla.localDc | quote }}
{{- end }}
{{- if .Values.scylla.username }}
user = {{ .Values.scylla.username | quote }}
password_file = "/etc/dolbom/scylla/password"
{{- end }}
{{- if .Values.scylla.tls.enabled }}

[scylla.tls]
ca_file = "/etc/dolbom/scylla-ca/ca.crt"
{{- end }}
{{- end -}}

{{/* Secret volumes every Kafka service mounts: Kafka CA and SASL, ScyllaDB. */}}
{{- define "dolbom.storeVolumes" -}}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-ca
  secret: {secretName: {{ required "kafka.tls.caSecret" .Values.kafka.tls.caSecret }}, defaultMode: 0440}
{{- end }}
{{- if .Values.kafka.sasl.enabled }}
- name: kafka-sasl
  secret: {secretName: {{ required "kafka.sasl.existingSecret" .Values.kafka.sasl.existingSecret }}, defaultMode: 0440}
{{- end }}
{{- if and (eq .Values.historyStore "scylla") .Values.scylla.username }}
- name: scylla
  secret: {secretName: {{ required "scylla.existingSecret" .Values.scylla.existingSecret }}, defaultMode: 0440}
{{- end }}
{{- if and (eq .Values.historyStore "scylla") .Values.scylla.tls.enabled }}
- name: scylla-ca
  secret: {secretName: {{ required "scylla.tls.caSecret" .Values.scylla.tls.caSecret }}, defaultMode: 0440}
{{- end }}
{{- end -}}

{{- define "dolbom.storeMounts" -}}
{{- if .Values.kafka.tls.enabled }}
- {name: kafka-ca, mountPath: /etc/dolbom/kafka-ca, readOnly: true}
{{- end }}
{{- if .Values.kafka.sasl.enabled }}
- {name: kafka-sasl, mountPath: /etc/dolbom/kafka-sasl, readOnly: true}
{{- end }}
{{- if and (eq .Values.historyStore "scylla") .Values.scylla.username }}
- {name: scylla, mountPath: /etc/dolbom/scylla, readOnly: true}
{{- end }}
{{- if and (eq .Values.historyStore "scylla") .Values.scylla.tls.enabled }}
- {name: scylla-ca, mountPath: /etc/dolbom/scylla-ca, readOnly: true}
{{- end }}
{{- end -}}

{{- define "dolbom.env" -}}
- name: DOLBOM_LOG
  value: {{ .Values.logLevel | quote }}
{{- end -}}
