{{/*
The chart name, or nameOverride.
*/}}
{{- define "streamjob-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else
<release>-<chart name>, or the release name alone when it already contains the
chart name. Truncated to 63 characters (the DNS-1123 label limit).
*/}}
{{- define "streamjob-operator.fullname" -}}
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

{{/*
name-version, as used by the helm.sh/chart label.
*/}}
{{- define "streamjob-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "streamjob-operator.labels" -}}
helm.sh/chart: {{ include "streamjob-operator.chart" . }}
{{ include "streamjob-operator.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: streamjob
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "streamjob-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamjob-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The peers admitted to the jobs' control port (--control-clients): the
operator's own pods, then networkPolicy.extraControlClients; as JSON.
*/}}
{{- define "streamjob-operator.controlClients" -}}
{{- $operator := dict
      "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" .Release.Namespace))
      "podSelector" (dict "matchLabels" (include "streamjob-operator.selectorLabels" . | fromYaml)) -}}
{{- prepend .Values.networkPolicy.extraControlClients $operator | toJson -}}
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "streamjob-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "streamjob-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "streamjob-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The operator's RBAC rules: a ClusterRole's when it watches every namespace,
each watched namespace's Role's otherwise.
*/}}
{{- define "streamjob-operator.rules" -}}
# The custom resource: watched, its finalizer added and removed.
- apiGroups: ["streamjob.io"]
  resources: ["streamjobs"]
  verbs: ["get", "list", "watch", "patch", "update"]
# Status is written before every action.
- apiGroups: ["streamjob.io"]
  resources: ["streamjobs/status"]
  verbs: ["get", "patch", "update"]
# Owner references with blockOwnerDeletion on owned objects.
- apiGroups: ["streamjob.io"]
  resources: ["streamjobs/finalizers"]
  verbs: ["update"]
# Owned objects, applied server-side (patch) and deleted on stateless redeploys.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Each job's control token: made once, read back for the operator's calls.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create"]
# Each job's NetworkPolicy (networkPolicy.enabled), applied server-side.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["create", "patch"]
# Job pods are read to detect crash loops and to reach the control API, and
# a rollout deletes the pods of the one before (the StatefulSet updates OnDelete).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
# An Event for every transition (events.k8s.io/v1, and core v1 for older clients).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
