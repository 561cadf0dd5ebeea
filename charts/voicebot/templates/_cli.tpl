{{/*
A pod spec that runs one voicebot CLI command from the gateway image (migrations, ingest).
Usage: include "voicebot.cliPodSpec" (dict "root" $ "name" "ingest" "args" (list …)
       "resources" … "volumes" (list …) "volumeMounts" (list …) "restartPolicy" "OnFailure"
       "migrator" false)
The commands sign no tokens: they get the database URLs only ("migrator": the owner's too).
*/}}
{{- define "voicebot.cliPodSpec" -}}
{{- $root := .root -}}
{{- include "voicebot.imagePullSecrets" $root }}
restartPolicy: {{ .restartPolicy | default "OnFailure" }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- include "voicebot.podSecurityContext" (dict "runAsUser" $root.Values.gateway.runAsUser) | nindent 2 }}
containers:
  - name: {{ .name }}
    image: {{ include "voicebot.gatewayImage" $root | quote }}
    imagePullPolicy: {{ $root.Values.gateway.image.pullPolicy }}
    command: ["voicebot"]
    args:
      {{- toYaml .args | nindent 6 }}
    envFrom:
      - configMapRef:
          name: {{ include "voicebot.componentName" (dict "root" $root "component" "gateway") }}
          {{- if .configOptional }}
          # A pre-install hook runs before the ConfigMap exists; the command needs only the secrets.
          optional: true
          {{- end }}
    env:
      {{- include "voicebot.databaseEnv" (dict "root" $root "migrator" .migrator) | nindent 6 }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    securityContext:
      {{- include "voicebot.containerSecurityContext" (dict "runAsUser" $root.Values.gateway.runAsUser "readOnlyRootFilesystem" true) | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- with .volumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  {{- include "voicebot.tmpVolume" (dict "sizeLimit" "1Gi") | nindent 2 }}
  {{- with .volumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
