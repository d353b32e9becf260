{{/* Name of the chart, overridable. */}}
{{- define "orchestrator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, at most 63 characters, DNS-1035 safe. */}}
{{- define "orchestrator.fullname" -}}
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

{{- define "orchestrator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "orchestrator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "orchestrator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orchestrator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "orchestrator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "orchestrator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "orchestrator.secretName" -}}
{{- default (include "orchestrator.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* registry/repository:tag or @digest */}}
{{- define "orchestrator.image" -}}
{{- $repo := .Values.image.repository }}
{{- if .Values.image.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" .Values.image.registry) $repo }}{{ end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "orchestrator.claimName" -}}
{{- default (printf "%s-data" (include "orchestrator.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/* PostgreSQL is the database (docs/scale-out.md): several replicas may run. */}}
{{- define "orchestrator.postgres" -}}
{{- if or .Values.database.url .Values.database.existingSecret }}true{{ end -}}
{{- end }}

{{/*
The environment variables the sources file names for its secrets, as a JSON
list: each is read from the Secret under a key of the same name.
*/}}
{{- define "orchestrator.sourceSecretEnvs" -}}
{{- $names := list -}}
{{- range .Values.sources }}{{ $names = append $names .verify.secret_env }}{{ end -}}
{{- range .Values.slackApps }}{{ $names = append $names .signing_secret_env }}{{ with .bot_token_env }}{{ $names = append $names . }}{{ end }}{{ end -}}
{{- range .Values.destinations }}{{ $names = append $names .secret_env }}{{ end -}}
{{- $names | uniq | toJson -}}
{{- end }}
