{{/* vim: set filetype=mustache: */}}

{{/* The chart name, truncated to 63 characters (a DNS label). */}}
{{- define "voicebot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified app name: "<release>-voicebot", or the release name alone when it already
contains the chart name. Truncated at 63 characters because some name fields are limited to that.
*/}}
{{- define "voicebot.fullname" -}}
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

{{/* A component's resource name: voicebot.componentName (dict "root" $ "component" "gateway"). */}}
{{- define "voicebot.componentName" -}}
{{- printf "%s-%s" (include "voicebot.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "voicebot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: name, instance and component only (selectors are immutable). */}}
{{- define "voicebot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "voicebot.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* Standard labels: voicebot.labels (dict "root" $ "component" "gateway"). */}}
{{- define "voicebot.labels" -}}
helm.sh/chart: {{ include "voicebot.chart" .root }}
{{ include "voicebot.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: voicebot
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Pod template labels: the standard labels without helm.sh/chart and app.kubernetes.io/version, which
change with every chart release and would restart Triton (minutes of model loading) and Postgres on
upgrades that change nothing they run. Image or config changes roll pods through the pod spec and
the checksum annotations instead.
*/}}
{{- define "voicebot.podLabels" -}}
{{ include "voicebot.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: voicebot
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* An image reference: repository:tag, or repository@digest when a digest is set. */}}
{{- define "voicebot.image" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}
{{- end }}

{{- define "voicebot.gatewayImage" -}}
{{- $img := deepCopy .Values.gateway.image -}}
{{- if not $img.tag }}{{- $_ := set $img "tag" .Chart.AppVersion -}}{{- end -}}
{{- include "voicebot.image" $img -}}
{{- end }}

{{- define "voicebot.tritonImage" -}}
{{- $img := deepCopy .Values.triton.image -}}
{{- if not $img.tag }}{{- $_ := set $img "tag" .Chart.AppVersion -}}{{- end -}}
{{- include "voicebot.image" $img -}}
{{- end }}

{{- define "voicebot.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The restricted pod security context (Pod Security Standards "restricted"). */}}
{{- define "voicebot.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsUser }}
fsGroup: {{ .runAsUser }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The restricted container security context. */}}
{{- define "voicebot.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsUser }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: {{ .readOnlyRootFilesystem }}
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* checkov skips shared by every workload; each one says why in place. */}}
{{- define "voicebot.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_43=Images are pinned by exact tag; set image.digest to pin by digest (docs/deploy.md).
checkov.io/skip2: CKV_K8S_35=The gateway reads its settings from VOICEBOT_* environment variables (contract in docs/deploy.md); values come from Secrets via secretKeyRef, never from values.yaml.
{{- end }}

{{/* Triton's in-cluster gRPC address host:port, as the gateway and ingest use it. */}}
{{- define "voicebot.tritonUrl" -}}
{{- if .Values.gateway.config.tritonUrl -}}
{{- .Values.gateway.config.tritonUrl -}}
{{- else -}}
{{- /* the headless Service: one DNS address per Triton pod, balanced by the gateway (dns:///) */ -}}
{{- printf "dns:///%s-headless.%s.svc:8001" (include "voicebot.componentName" (dict "root" . "component" "triton") | trunc 54 | trimSuffix "-") .Release.Namespace -}}
{{- end -}}
{{- end }}

{{/* The Secret holding auth_secret and bootstrap_api_key (generated unless secrets.existingSecret). */}}
{{- define "voicebot.appSecretName" -}}
{{- default (include "voicebot.componentName" (dict "root" . "component" "secrets")) .Values.secrets.existingSecret -}}
{{- end }}

{{- define "voicebot.postgresSecretName" -}}
{{- default (include "voicebot.componentName" (dict "root" . "component" "postgres")) .Values.postgres.auth.existingSecret -}}
{{- end }}

{{/* The gateway's own secrets: it signs session tokens and accepts the bootstrap key. Only the
gateway gets them (not the migration and ingest Jobs). */}}
{{- define "voicebot.secretEnv" -}}
- name: VOICEBOT_AUTH_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "voicebot.appSecretName" . }}
      key: auth_secret
- name: VOICEBOT_BOOTSTRAP_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "voicebot.appSecretName" . }}
      key: bootstrap_api_key
{{- end }}

{{/*
The database URLs of a container (docs/security.md, "Database roles"). Every one gets
VOICEBOT_DATABASE_URL, the application's login (gateway, ingest); the migration Job
("migrator": true) also gets VOICEBOT_MIGRATION_DATABASE_URL, the schema owner's, and only it
gets the owner's password. In-cluster Postgres: the URLs are composed from the passwords with
Kubernetes' $(VAR) expansion, so an existing password Secret works unchanged.
Usage: include "voicebot.databaseEnv" (dict "root" $ "migrator" false)
*/}}
{{- define "voicebot.databaseEnv" -}}
{{- $root := .root -}}
{{- $pg := $root.Values.postgres -}}
{{- if $pg.enabled }}
{{- $host := printf "%s.%s.svc:5432" (include "voicebot.componentName" (dict "root" $root "component" "postgres")) $root.Release.Namespace }}
- name: DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "voicebot.postgresSecretName" $root }}
      key: {{ $pg.auth.appSecretKey }}
- name: VOICEBOT_DATABASE_URL
  value: {{ printf "postgresql://%s:$(DATABASE_PASSWORD)@%s/%s" $pg.auth.appUsername $host $pg.auth.database | quote }}
{{- if .migrator }}
- name: MIGRATION_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "voicebot.postgresSecretName" $root }}
      key: {{ $pg.auth.secretKey }}
- name: VOICEBOT_MIGRATION_DATABASE_URL
  value: {{ printf "postgresql://%s:$(MIGRATION_DATABASE_PASSWORD)@%s/%s" $pg.auth.username $host $pg.auth.database | quote }}
{{- end }}
{{- else }}
- name: VOICEBOT_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $pg.external.existingSecret }}
      key: {{ $pg.external.existingSecretKey }}
{{- if and .migrator $pg.external.migrationSecretKey }}
- name: VOICEBOT_MIGRATION_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $pg.external.existingSecret }}
      key: {{ $pg.external.migrationSecretKey }}
      # Absent: the application's URL migrates (one login for both, as before).
      optional: true
{{- end }}
{{- end }}
{{- end }}

{{/* The CLI containers' writable scratch space: the root filesystem is read-only. */}}
{{- define "voicebot.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .sizeLimit | default "256Mi" }}
{{- end }}

{{/* Values checks that a JSON schema cannot express; all messages at once, then fail. */}}
{{- define "voicebot.validateValues" -}}
{{- $messages := list -}}
{{- if and (not .Values.postgres.enabled) (not .Values.postgres.external.existingSecret) -}}
{{- $messages = append $messages "postgres.external.existingSecret: required when postgres.enabled=false (a Secret whose key postgres.external.existingSecretKey holds the database URL)" -}}
{{- end -}}
{{- if and .Values.gateway.ingress.enabled (not .Values.gateway.ingress.host) -}}
{{- $messages = append $messages "gateway.ingress.host: required when gateway.ingress.enabled=true" -}}
{{- end -}}
{{- $tls := .Values.gateway.ingress.tls -}}
{{- if and .Values.gateway.ingress.enabled $tls.enabled (not (or $tls.clusterIssuer $tls.issuer $tls.existingSecret)) -}}
{{- $messages = append $messages "gateway.ingress.tls: set clusterIssuer, issuer (cert-manager) or existingSecret when tls.enabled=true" -}}
{{- end -}}
{{- if and (eq .Values.models.source "volume") (not .Values.models.weights.existingClaim) -}}
{{- $messages = append $messages "models.weights.existingClaim: required when models.source=volume (air-gapped: a claim pre-filled with the weights)" -}}
{{- end -}}
{{- if and .Values.ingest.enabled (eq .Values.ingest.volume.existingClaim "") (not .Values.ingest.volume.create) -}}
{{- $messages = append $messages "ingest.volume: set existingClaim or create=true when ingest.enabled=true" -}}
{{- end -}}
{{- if and .Values.triton.autoscaling.enabled (gt (int .Values.triton.autoscaling.minReplicas) (int .Values.triton.autoscaling.maxReplicas)) -}}
{{- $messages = append $messages "triton.autoscaling: minReplicas must not exceed maxReplicas" -}}
{{- end -}}
{{- if and .Values.gateway.autoscaling.enabled (gt (int .Values.gateway.autoscaling.minReplicas) (int .Values.gateway.autoscaling.maxReplicas)) -}}
{{- $messages = append $messages "gateway.autoscaling: minReplicas must not exceed maxReplicas" -}}
{{- end -}}
{{- if and (eq .Values.triton.mode "kserve") .Values.triton.autoscaling.enabled (eq .Values.triton.autoscaling.mode "hpa") -}}
{{- $messages = append $messages "triton.autoscaling.mode=hpa is for triton.mode=deployment; with KServe use mode=keda (or KServe's own autoscaling)" -}}
{{- end -}}
{{- if not .Values.secrets.generate -}}
{{- if not .Values.secrets.existingSecret -}}
{{- $messages = append $messages "secrets.existingSecret: required when secrets.generate=false (a Secret with auth_secret and bootstrap_api_key; e.g. from External Secrets or sealed-secrets)" -}}
{{- end -}}
{{- if and .Values.postgres.enabled (not .Values.postgres.auth.existingSecret) -}}
{{- $messages = append $messages (printf "postgres.auth.existingSecret: required when secrets.generate=false and postgres.enabled=true (a Secret with the database passwords, keys %s and %s)" .Values.postgres.auth.secretKey .Values.postgres.auth.appSecretKey) -}}
{{- end -}}
{{- end -}}
{{- /* An existing Secret's values are known at install time only (helm template and Argo CD cannot
look up): refuse what the gateway would refuse at start-up, rather than let it crash-loop. Messages
name the key, never its value. */ -}}
{{- if .Values.secrets.existingSecret -}}
{{- $appSecret := lookup "v1" "Secret" .Release.Namespace .Values.secrets.existingSecret -}}
{{- if $appSecret -}}
{{- range $key := list "auth_secret" "bootstrap_api_key" -}}
{{- if lt (len (get ($appSecret.data | default dict) $key | default "" | b64dec)) 32 -}}
{{- $messages = append $messages (printf "secrets.existingSecret: the key %s of Secret %s must hold at least 32 characters (the gateway refuses a shorter one at start-up), e.g. $(openssl rand -hex 32)" $key $.Values.secrets.existingSecret) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.postgres.enabled (eq .Values.postgres.auth.appUsername .Values.postgres.auth.username) -}}
{{- $messages = append $messages "postgres.auth.appUsername: must differ from postgres.auth.username (the application logs in with less than the schema's owner)" -}}
{{- end -}}
{{- if and .Values.postgres.enabled (eq .Values.postgres.auth.appSecretKey .Values.postgres.auth.secretKey) -}}
{{- $messages = append $messages "postgres.auth.appSecretKey: must differ from postgres.auth.secretKey (the owner and the application have passwords of their own)" -}}
{{- end -}}
{{- $otel := .Values.gateway.config.otel -}}
{{- if and (eq $otel.exporter "otlp") (regexMatch ":4317(/|$)" $otel.endpoint) -}}
{{- $messages = append $messages (printf "gateway.config.otel.endpoint=%s: the gateway exports OTLP over HTTP (protobuf), port 4318 with the path /v1/traces (e.g. http://otel-collector.observability.svc:4318/v1/traces); 4317 is OTLP/gRPC" $otel.endpoint) -}}
{{- end -}}
{{- /* The profile against what the manifest says of it (files/profiles.json, synced from
images/triton/voicebot_models/manifest.toml by scripts/sync-chart-profiles.py). */ -}}
{{- $catalog := .Files.Get "files/profiles.json" | fromJson -}}
{{- $profile := get $catalog.profiles .Values.models.profile -}}
{{- if $profile -}}
{{- $formats := get $catalog.modelRepositories .Values.triton.modelRepository -}}
{{- if and $formats (not (has $profile.llmFormat $formats)) -}}
{{- $messages = append $messages (printf "models.profile=%s has a %s LLM, which the llm backend of triton.modelRepository=%s cannot load (it loads %s): pair the gpu profile with the triton-vllm image and /opt/voicebot/models-vllm, a CPU profile with the triton image and /opt/voicebot/models" .Values.models.profile $profile.llmFormat .Values.triton.modelRepository (join ", " $formats)) -}}
{{- end -}}
{{- if and (eq .Values.models.source "hub") $profile.gatedRepos (not .Values.models.fetch.hubTokenSecret) -}}
{{- $messages = append $messages (printf "models.fetch.hubTokenSecret: required for models.profile=%s, whose hub repositories are gated (%s): accept their licence on huggingface.co, then `kubectl create secret generic <name> --from-literal=token=hf_...` and set models.fetch.hubTokenSecret=<name> (or use models.source=volume)" .Values.models.profile (join ", " $profile.gatedRepos)) -}}
{{- end -}}
{{- end -}}
{{- /* The weights claim: ReadWriteOnce attaches to one node, so every pod that mounts it at once
(Triton replicas, a surge pod during a rolling update, KServe's predictor rollout) must share a
node; on GPU nodes with one GPU each that never holds. */ -}}
{{- $modes := .Values.models.weights.accessModes -}}
{{- $known := not .Values.models.weights.existingClaim -}}
{{- if .Values.models.weights.existingClaim -}}
{{- /* An existing claim's modes are known at install time only (helm template cannot look up). */ -}}
{{- with lookup "v1" "PersistentVolumeClaim" .Release.Namespace .Values.models.weights.existingClaim -}}
{{- $modes = .spec.accessModes -}}
{{- $known = true -}}
{{- end -}}
{{- end -}}
{{- if and $known (not (or (has "ReadWriteMany" $modes) (has "ReadOnlyMany" $modes))) -}}
{{- $as := .Values.triton.autoscaling -}}
{{- $most := ternary (int $as.maxReplicas) (int .Values.triton.replicas) (and $as.enabled true) -}}
{{- $why := list -}}
{{- if gt $most 1 -}}{{- $why = append $why (printf "Triton may run %d replicas (triton.replicas / triton.autoscaling.maxReplicas)" $most) -}}{{- end -}}
{{- if and (eq .Values.triton.mode "deployment") (eq .Values.triton.updateStrategy.type "RollingUpdate") -}}{{- $why = append $why "triton.updateStrategy.type=RollingUpdate starts a second pod before the first stops" -}}{{- end -}}
{{- if eq .Values.triton.mode "kserve" -}}{{- $why = append $why "KServe rolls its predictor Deployment with a surge pod" -}}{{- end -}}
{{- if $why -}}
{{- $messages = append $messages (printf "models.weights.accessModes=%s: only one node can mount the weights, but %s: use ReadWriteMany with a storageClassName that provides it (EFS on EKS: terraform/ creates one), or one replica with updateStrategy Recreate" (toJson $modes) (join "; " $why)) -}}
{{- end -}}
{{- end -}}
{{- if $messages -}}
{{- printf "\n\nVALUES VALIDATION:\n  - %s" (join "\n  - " $messages) | fail -}}
{{- end -}}
{{- end }}
