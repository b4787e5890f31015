{{/* Names, labels and the small decisions every template shares. */}}

{{- define "flowlb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>, or <release>-<name> when the release name does not contain the chart name. */}}
{{- define "flowlb.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 48 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "flowlb.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 48 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 48 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "flowlb.labels" -}}
app.kubernetes.io/name: {{ include "flowlb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: include "flowlb.selector" (list . "agent") */}}
{{- define "flowlb.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "flowlb.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "flowlb.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "flowlb.controllerServiceAccount" -}}
{{- default (printf "%s-controller" (include "flowlb.fullname" .)) .Values.controller.serviceAccount.name -}}
{{- end -}}

{{- define "flowlb.agentServiceAccount" -}}
{{- default (printf "%s-agent" (include "flowlb.fullname" .)) .Values.agent.serviceAccount.name -}}
{{- end -}}

{{/* Where the CA comes from: existing | certManager | helm | controller (with tls.enabled). */}}
{{- define "flowlb.caSource" -}}
{{- if .Values.tls.existingSecret -}}existing
{{- else if .Values.tls.certManager.enabled -}}certManager
{{- else -}}{{ .Values.tls.generate }}
{{- end -}}
{{- end -}}

{{/* The Secret holding the CA (tls.crt, tls.key): only the controller mounts or reads it. */}}
{{- define "flowlb.caSecret" -}}
{{- default (printf "%s-ca" (include "flowlb.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{/* The ConfigMap with the CA certificate alone (ca.crt): what the agents trust. */}}
{{- define "flowlb.caBundle" -}}
{{- printf "%s-ca-bundle" (include "flowlb.fullname" .) -}}
{{- end -}}

{{/* Whether the controller writes the CA bundle itself (the chart cannot: it does not know the CA). */}}
{{- define "flowlb.controllerPublishesBundle" -}}
{{- if and .Values.tls.enabled (ne (include "flowlb.caSource" .) "helm") -}}true{{- end -}}
{{- end -}}

{{- define "flowlb.controllerService" -}}
{{- printf "%s-controller" (include "flowlb.fullname" .) -}}
{{- end -}}

{{/* The audience of the agents' projected tokens. */}}
{{- define "flowlb.audience" -}}
{{- printf "%s.%s" (include "flowlb.controllerService" .) .Release.Namespace -}}
{{- end -}}

{{- define "flowlb.logLevel" -}}
{{- $ := index . 0 -}}
{{- default $.Values.logLevel (index . 1).logLevel -}}
{{- end -}}
