{{/* The Triton container (shared by the Deployment and the KServe ServingRuntime). */}}
{{- define "voicebot.triton.container" -}}
{{- /* KServe finds the model server of a runtime by this name (constants.InferenceServiceContainerName)
and refuses or misconfigures a runtime without it. */}}
name: {{ eq .Values.triton.mode "kserve" | ternary "kserve-container" "triton" }}
image: {{ include "voicebot.tritonImage" . | quote }}
imagePullPolicy: {{ .Values.triton.image.pullPolicy }}
command: ["tritonserver"]
args:
  - --model-repository={{ .Values.triton.modelRepository }}
  - --http-port=8000
  - --grpc-port=8001
  - --metrics-port=8002
  - --allow-metrics=true
  - --allow-gpu-metrics={{ gt (int .Values.triton.gpu.count) 0 }}
  - --strict-readiness=true
  - --exit-on-error=true
  {{- range .Values.triton.extraArgs }}
  - {{ . | quote }}
  {{- end }}
{{- if eq .Values.triton.mode "kserve" }}
# KServe (RawDeployment) routes its Service to the first port: gRPC, which the gateway speaks.
ports:
  - name: h2c
    containerPort: 8001
    protocol: TCP
  - name: metrics
    containerPort: 8002
    protocol: TCP
{{- else }}
ports:
  - name: http
    containerPort: 8000
    protocol: TCP
  - name: grpc
    containerPort: 8001
    protocol: TCP
  - name: metrics
    containerPort: 8002
    protocol: TCP
{{- end }}
env:
  - name: VOICEBOT_WEIGHTS_DIR
    value: /weights
  - name: VOICEBOT_MODEL_PROFILE
    value: {{ .Values.models.profile | quote }}
  - name: HOME
    value: /tmp
  {{- with .Values.triton.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
startupProbe:
  # Model loading (weights into GPU memory) can take many minutes.
  httpGet: {path: /v2/health/ready, port: 8000}
  periodSeconds: {{ .Values.triton.startupProbe.periodSeconds }}
  failureThreshold: {{ .Values.triton.startupProbe.failureThreshold }}
livenessProbe:
  httpGet: {path: /v2/health/live, port: 8000}
  periodSeconds: 15
  timeoutSeconds: 5
  failureThreshold: 4
readinessProbe:
  httpGet: {path: /v2/health/ready, port: 8000}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
resources:
  {{- $res := deepCopy .Values.triton.resources }}
  {{- if gt (int .Values.triton.gpu.count) 0 }}
  {{- $_ := set $res "limits" (merge (dict .Values.triton.gpu.resourceName (int .Values.triton.gpu.count)) ($res.limits | default dict)) }}
  {{- $_ := set $res "requests" (merge (dict .Values.triton.gpu.resourceName (int .Values.triton.gpu.count)) ($res.requests | default dict)) }}
  {{- end }}
  {{- toYaml $res | nindent 2 }}
securityContext:
  {{- include "voicebot.containerSecurityContext" (dict "runAsUser" .Values.triton.runAsUser "readOnlyRootFilesystem" true) | nindent 2 }}
volumeMounts:
  - name: weights
    mountPath: /weights
    readOnly: true
  - name: tmp
    mountPath: /tmp
  - name: dshm
    mountPath: /dev/shm
{{- end }}

{{/* Weights volume: the chart's claim (filled by model-fetch) or an existing one. */}}
{{- define "voicebot.triton.weightsClaim" -}}
{{- default (include "voicebot.componentName" (dict "root" . "component" "weights")) .Values.models.weights.existingClaim -}}
{{- end }}

{{- define "voicebot.triton.volumes" -}}
- name: weights
  persistentVolumeClaim:
    claimName: {{ include "voicebot.triton.weightsClaim" . }}
    readOnly: true
- name: tmp
  emptyDir:
    sizeLimit: 4Gi
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.triton.shmSize }}
{{- end }}

{{/* Waits for the model-fetch Job's marker so Triton never starts on half-written weights. */}}
{{- define "voicebot.triton.waitForWeights" -}}
- name: wait-for-weights
  image: {{ include "voicebot.tritonImage" . | quote }}
  imagePullPolicy: {{ .Values.triton.image.pullPolicy }}
  command: ["sh", "-c"]
  args:
    - |
      marker="/weights/.voicebot-fetched-${VOICEBOT_MODEL_PROFILE}"
      until [ -f "$marker" ]; do echo "waiting for $marker (model-fetch Job)"; sleep 10; done
  env:
    - name: VOICEBOT_MODEL_PROFILE
      value: {{ .Values.models.profile | quote }}
  resources:
    requests: {cpu: 10m, memory: 16Mi, ephemeral-storage: 1Mi}
    limits: {cpu: 100m, memory: 64Mi, ephemeral-storage: 10Mi}
  securityContext:
    {{- include "voicebot.containerSecurityContext" (dict "runAsUser" .Values.triton.runAsUser "readOnlyRootFilesystem" true) | nindent 4 }}
  volumeMounts:
    - name: weights
      mountPath: /weights
      readOnly: true
{{- end }}

{{/* The Triton pod spec: GPU scheduling, security, volumes. */}}
{{- define "voicebot.triton.podSpec" -}}
{{- include "voicebot.imagePullSecrets" . }}
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: 60
{{- with .Values.triton.runtimeClassName }}
runtimeClassName: {{ . }}
{{- end }}
securityContext:
  {{- include "voicebot.podSecurityContext" (dict "runAsUser" .Values.triton.runAsUser) | nindent 2 }}
{{- if eq .Values.models.source "hub" }}
initContainers:
  {{- include "voicebot.triton.waitForWeights" . | nindent 2 }}
{{- end }}
containers:
  - {{- include "voicebot.triton.container" . | nindent 4 }}
volumes:
  {{- include "voicebot.triton.volumes" . | nindent 2 }}
{{- with .Values.triton.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.triton.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.triton.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
