{{/* Names, labels and the bits every workload shares. */}}

{{- define "rag.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rag.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rag.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of one component's objects: <fullname>-<component>. Call with (list $ "query"). */}}
{{- define "rag.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "rag.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rag.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "rag.chart" $root }}
{{ include "rag.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: {{ include "rag.name" $root }}
{{- end }}

{{- define "rag.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "rag.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "rag.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rag.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image of a component: the light one (query, retrieval) or the one with the models. */}}
{{- define "rag.image" -}}
{{- $root := index . 0 -}}
{{- $image := index $root.Values.image (index $root.Values.imageOf (index . 1)) -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}

{{/* The gRPC port of a component. */}}
{{/* The port Kubernetes probes ask: the service's own, or with TLS the plaintext one
     that serves only health. */}}
{{- define "rag.probePort" -}}
{{- $root := index . 0 -}}
{{- if $root.Values.tls.enabled }}{{ $root.Values.tls.probePort }}{{ else }}{{ include "rag.port" . }}{{ end }}
{{- end }}

{{- define "rag.port" -}}
{{- index (index . 0).Values.ports (index . 1) }}
{{- end }}

{{/* How callers dial an internal component: every pod behind its headless Service,
     round-robin on the client (see rag_common/channel.py). */}}
{{- define "rag.target" -}}
{{- $root := index . 0 -}}
{{- printf "dns:///%s.%s.svc.%s:%v" (include "rag.componentName" .) $root.Release.Namespace $root.Values.clusterDomain (include "rag.port" .) }}
{{- end }}

{{/* Whether retrieval is stateless (a Qdrant server holds the vectors). */}}
{{- define "rag.retrievalStateless" -}}
{{- if .Values.qdrant.url }}true{{ end }}
{{- end }}

{{/* The components run as Deployments (retrieval only with a Qdrant server). */}}
{{- define "rag.deployments" -}}
{{- $names := list "query" "generation" "embedding" -}}
{{- if include "rag.retrievalStateless" . }}{{ $names = append $names "retrieval" }}{{ end }}
{{- join "," $names }}
{{- end }}

{{/* Pod-level hardening shared by every pod. */}}
{{- define "rag.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "rag.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The default anti-affinity: replicas of one component prefer different nodes. */}}
{{- define "rag.affinity" -}}
{{- $root := index . 0 -}}
{{- $values := index $root.Values (index . 1) -}}
{{- if $values.affinity }}
{{- toYaml $values.affinity }}
{{- else }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "rag.selectorLabels" . | nindent 12 }}
{{- end }}
{{- end }}

{{/* Settings of a component, as env variables (rendered into its ConfigMap). */}}
{{- define "rag.settings" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $prefix := printf "RAG_%s_" (upper $component) -}}
{{- $values := index $root.Values $component -}}
{{ $prefix }}HOST: "0.0.0.0"
{{ $prefix }}PORT: {{ include "rag.port" . | quote }}
{{ $prefix }}LOG_LEVEL: {{ $root.Values.logLevel | quote }}
{{ $prefix }}GRACE_PERIOD_S: {{ $values.gracePeriodSeconds | toString | quote }}
{{ $prefix }}MAX_CONNECTION_AGE_S: {{ $root.Values.grpc.maxConnectionAgeSeconds | toString | quote }}
{{ $prefix }}MAX_CONNECTION_AGE_GRACE_S: {{ $root.Values.grpc.maxConnectionAgeGraceSeconds | toString | quote }}
{{- if $root.Values.metrics.enabled }}
{{ $prefix }}METRICS_PORT: {{ $root.Values.metrics.port | quote }}
{{- end }}
{{- if $root.Values.tls.enabled }}
RAG_TLS_CERT_FILE: "/etc/rag/tls/tls.crt"
RAG_TLS_KEY_FILE: "/etc/rag/tls/tls.key"
RAG_TLS_CA_FILE: "/etc/rag/tls/ca.crt"
{{ $prefix }}PROBE_PORT: {{ $root.Values.tls.probePort | quote }}
{{- end }}
{{- if $root.Values.tracing.enabled }}
OTEL_TRACES_EXPORTER: "otlp"
OTEL_EXPORTER_OTLP_ENDPOINT: {{ $root.Values.tracing.otlpEndpoint | quote }}
OTEL_TRACES_SAMPLER: {{ $root.Values.tracing.sampler | quote }}
OTEL_TRACES_SAMPLER_ARG: {{ $root.Values.tracing.samplerRatio | toString | quote }}
OTEL_SERVICE_NAME: {{ printf "rag-%s" $component | quote }}
{{- end }}
{{- with $root.Values.monitoring.thresholds }}
{{ $prefix }}HEALTH_P95_WARNING_S: {{ .p95WarningSeconds | toString | quote }}
{{ $prefix }}HEALTH_P95_CRITICAL_S: {{ .p95CriticalSeconds | toString | quote }}
{{ $prefix }}HEALTH_ERROR_RATE_WARNING: {{ .errorRateWarning | toString | quote }}
{{ $prefix }}HEALTH_ERROR_RATE_CRITICAL: {{ .errorRateCritical | toString | quote }}
{{ $prefix }}HEALTH_CACHE_HIT_RATE_WARNING: {{ .cacheHitRateWarning | toString | quote }}
{{ $prefix }}HEALTH_CACHE_HIT_RATE_CRITICAL: {{ .cacheHitRateCritical | toString | quote }}
{{ $prefix }}HEALTH_CPU_WARNING: {{ .cpuWarning | toString | quote }}
{{ $prefix }}HEALTH_CPU_CRITICAL: {{ .cpuCritical | toString | quote }}
{{ $prefix }}HEALTH_MEMORY_WARNING: {{ .memoryWarning | toString | quote }}
{{ $prefix }}HEALTH_MEMORY_CRITICAL: {{ .memoryCritical | toString | quote }}
{{- end }}
{{- if eq $component "query" }}
RAG_QUERY_EMBEDDING_TARGET: {{ include "rag.target" (list $root "embedding") | quote }}
RAG_QUERY_RETRIEVAL_TARGET: {{ include "rag.target" (list $root "retrieval") | quote }}
RAG_QUERY_GENERATION_TARGET: {{ include "rag.target" (list $root "generation") | quote }}
{{- end }}
{{- if eq $component "retrieval" }}
RAG_RETRIEVAL_EMBEDDING_TARGET: {{ include "rag.target" (list $root "embedding") | quote }}
RAG_RETRIEVAL_COLLECTION: {{ $root.Values.qdrant.collection | quote }}
{{- if $root.Values.qdrant.url }}
RAG_RETRIEVAL_VECTOR_STORE: "qdrant"
RAG_RETRIEVAL_QDRANT_URL: {{ $root.Values.qdrant.url | quote }}
{{- else }}
RAG_RETRIEVAL_VECTOR_STORE: "edge"
RAG_RETRIEVAL_DATA_DIR: "/data"
{{- end }}
{{- end }}
{{- if and (has $component (list "query" "embedding" "generation")) $root.Values.redis.url }}
{{ $prefix }}REDIS_URL: {{ $root.Values.redis.url | quote }}
{{ $prefix }}REDIS_CLUSTER: {{ $root.Values.redis.cluster | toString | quote }}
{{- end }}
{{- if and (eq $component "generation") (not $root.Values.generation.providersFromSecret) }}
RAG_GENERATION_PROVIDERS: {{ toJson $root.Values.generation.providers | quote }}
{{- end }}
{{- range $key, $value := $values.settings }}
{{ $prefix }}{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* Secret-held settings of a component: secretKeyRef env entries, never values. */}}
{{- define "rag.secretEnv" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $secret := $root.Values.existingSecret -}}
{{- if $secret }}
{{- $keys := dict "query" (list "RAG_IDENTITY_KEY" "RAG_QUERY_API_KEYS" "RAG_QUERY_REDIS_URL") "retrieval" (list "RAG_IDENTITY_KEY" "RAG_RETRIEVAL_QDRANT_API_KEY" "RAG_RETRIEVAL_RERANKER_API_KEY") "generation" (list "RAG_IDENTITY_KEY" "RAG_GENERATION_PROVIDERS" "RAG_GENERATION_REDIS_URL") "embedding" (list "RAG_IDENTITY_KEY" "RAG_EMBEDDING_REDIS_URL") "backup" (list "RAG_IDENTITY_KEY") -}}
{{- range $key := index $keys $component }}
{{- if or (ne $key "RAG_GENERATION_PROVIDERS") $root.Values.generation.providersFromSecret }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
      optional: {{ not (has $key (list "RAG_QUERY_API_KEYS" "RAG_IDENTITY_KEY")) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* With tls.enabled: the TLS files as env entries, their mount and their volume, for the
     pods that call the services from outside a component (helm test, backups). */}}
{{- define "rag.tlsEnv" -}}
{{- if .Values.tls.enabled }}
- {name: RAG_TLS_CERT_FILE, value: /etc/rag/tls/tls.crt}
- {name: RAG_TLS_KEY_FILE, value: /etc/rag/tls/tls.key}
- {name: RAG_TLS_CA_FILE, value: /etc/rag/tls/ca.crt}
{{- end }}
{{- end }}

{{- define "rag.tlsMount" -}}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/rag/tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "rag.tlsVolume" -}}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ required "tls.secretName is required: the Secret with tls.crt, tls.key and ca.crt (TLS is on by default; tls.enabled=false runs plaintext, internal credentials in the clear)" .Values.tls.secretName }}
    defaultMode: 0400
{{- end }}
{{- end }}
