{{/* Names and labels. */}}
{{- define "vivify.fullname" -}}
{{- if contains "vivify" .Release.Name -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-vivify" .Release.Name | trunc 40 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "vivify.labels" -}}
app.kubernetes.io/name: vivify
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "web") */}}
{{- define "vivify.selector" -}}
app.kubernetes.io/name: vivify
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vivify.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "vivify.fullname" .)) -}}
{{- end -}}

{{/*
The queue of one animator (and model), as app/core/queue.py queue_for builds it; the chart tests
compare the two over many names. (dict "animator" "diffusion" "model" "org/name")
*/}}
{{- define "vivify.slug" -}}
{{- regexReplaceAll "[^a-z0-9_-]+" (lower .text) "-" | trimAll "-" | trunc (int .limit) | default "x" -}}
{{- end -}}

{{- define "vivify.queue" -}}
{{- $queue := printf "animate.%s" (include "vivify.slug" (dict "text" (last (splitList ":" .animator)) "limit" 24)) -}}
{{- if .model -}}
{{- $name := last (splitList "/" (regexReplaceAll "/+$" .model "")) -}}
{{- $queue = printf "%s.%s" $queue (include "vivify.slug" (dict "text" $name "limit" (sub 63 (len $queue)))) -}}
{{- end -}}
{{- $queue -}}
{{- end -}}

{{/* The model of an offered animator: the site's model belongs to the site's animator only. */}}
{{- define "vivify.modelFor" -}}
{{- if eq .animator .root.Values.site.animator }}{{ .root.Values.site.model }}{{ end -}}
{{- end -}}

{{/* The animators the site offers, default first, without repeats. */}}
{{- define "vivify.offered" -}}
{{- uniq (prepend .Values.site.extraAnimators .Values.site.animator) | toJson -}}
{{- end -}}

{{/* A DNS-safe name for an animator's worker Deployment. */}}
{{- define "vivify.workerName" -}}
{{- printf "%s-worker-%s" (include "vivify.fullname" .root) (include "vivify.slug" (dict "text" (last (splitList ":" .animator)) "limit" 20) | replace "_" "-") | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Seconds a worker of one animator may need after SIGTERM: the clip's hard time limit (its family's,
or the CPU animators'), plus the drain. (dict "root" $ "cfg" $workerValues)
*/}}
{{- define "vivify.graceSeconds" -}}
{{- $t := .root.Values.timeLimits -}}
{{- $soft := $t.cpuSeconds -}}
{{- if .cfg.gpu -}}{{- $soft = required (printf "timeLimits.families has no %q" .cfg.family) (index $t.families .cfg.family) -}}{{- end -}}
{{- add $soft $t.hardLimitGraceSeconds .root.Values.drainSeconds -}}
{{- end -}}

{{/* Settings every Vivify process reads: the ConfigMap, then the Secret. */}}
{{- define "vivify.envFrom" -}}
- configMapRef:
    name: {{ include "vivify.fullname" . }}-config
- secretRef:
    name: {{ include "vivify.secretName" . }}
{{- end -}}

{{- define "vivify.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
automountServiceAccountToken: false
{{- end -}}

{{- define "vivify.containerSecurity" -}}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end -}}

{{/* The writable places of a read-only root filesystem: data folder, /tmp, caches. */}}
{{- define "vivify.scratchMounts" -}}
- {name: data, mountPath: /var/lib/vivify}
- {name: tmp, mountPath: /tmp}
- {name: cache, mountPath: /home/vivify/.cache}
{{- end -}}
{{- define "vivify.scratchVolumes" -}}
- {name: data, emptyDir: {}}
- {name: tmp, emptyDir: {}}
- {name: cache, emptyDir: {}}
{{- end -}}

{{- define "vivify.image" -}}
{{ printf "%s:%s" .repository .tag | quote }}
{{- end -}}

{{/*
The trial backends' password: the one already in the cluster, else a new one, made once per render
(kept in .Values so every template that asks gets the same).
*/}}
{{- define "vivify.trialPassword" -}}
{{- if not (hasKey .Values.trial "generatedPassword") -}}
{{- $old := (lookup "v1" "Secret" .Release.Namespace (printf "%s-trial" (include "vivify.fullname" .))).data | default dict -}}
{{- $_ := set .Values.trial "generatedPassword" (get $old "password" | b64dec | default (randAlphaNum 32)) -}}
{{- end -}}
{{- .Values.trial.generatedPassword -}}
{{- end -}}

{{/* One egress rule to a destination of networkPolicy: its peers (none: any address) and ports. */}}
{{- define "vivify.egressTo" -}}
- {{- with .to }}
  to: {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    {{- range .ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end -}}

{{/* Pod annotations: a change of the settings (or of the secrets passed at install) rolls the pods. */}}
{{- define "vivify.podAnnotations" -}}
checksum/settings: {{ list .Values.site .Values.storage .Values.secrets | toJson | sha256sum | quote }}
{{- end -}}
