{{/* The pod template of a component. Call with (list $ "query"). */}}
{{- define "rag.podTemplate" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $values := index $root.Values $component -}}
{{- $imageKind := index $root.Values.imageOf $component -}}
metadata:
  labels:
    {{- include "rag.selectorLabels" . | nindent 4 }}
  annotations:
    checksum/config: {{ include "rag.settings" . | sha256sum }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "rag.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "rag.podSecurityContext" $root | nindent 4 }}
  # Longer than the service's own grace period, so it drains before it is killed.
  terminationGracePeriodSeconds: {{ add $values.gracePeriodSeconds 5 }}
  containers:
    - name: {{ $component }}
      image: {{ include "rag.image" . | quote }}
      imagePullPolicy: {{ (index $root.Values.image $imageKind).pullPolicy }}
      args: [{{ $component | quote }}]
      ports:
        - name: grpc
          containerPort: {{ include "rag.port" . }}
          protocol: TCP
        {{- if $root.Values.metrics.enabled }}
        - name: metrics
          containerPort: {{ $root.Values.metrics.port }}
          protocol: TCP
        {{- end }}
      envFrom:
        - configMapRef:
            name: {{ include "rag.componentName" . }}
      {{- $secretEnv := include "rag.secretEnv" . }}
      {{- if or $secretEnv $values.extraEnv }}
      env:
        {{- with $secretEnv }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- if $values.startupProbe }}
      # Loading a model takes a while; liveness starts counting only after it.
      startupProbe:
        grpc:
          port: {{ include "rag.probePort" . }}
        periodSeconds: 5
        failureThreshold: 60
      {{- end }}
      readinessProbe:
        grpc:
          port: {{ include "rag.probePort" . }}
        periodSeconds: 5
        failureThreshold: 2
      livenessProbe:
        grpc:
          port: {{ include "rag.probePort" . }}
          # SERVING while the process answers at all; readiness (the overall status) also
          # turns NOT_SERVING during warm-up, maintenance and shutdown.
          service: liveness
        periodSeconds: 10
        failureThreshold: 3
      resources:
        {{- toYaml $values.resources | nindent 8 }}
      securityContext:
        {{- include "rag.containerSecurityContext" $root | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- include "rag.tlsMount" $root | nindent 8 }}
        {{- if and (eq $component "retrieval") (not (include "rag.retrievalStateless" $root)) }}
        - name: data
          mountPath: /data
        {{- end }}
  volumes:
    - name: tmp
      emptyDir: {}
    {{- include "rag.tlsVolume" $root | nindent 4 }}
  {{- with $values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  affinity:
    {{- include "rag.affinity" . | nindent 4 }}
  {{- with $values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
