{{/*
Names, labels and the RBAC rules shared by the templates.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "voice-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, else "<release>-<chart>", or just the
release name when it already contains the chart name (helm install voice-operator ...).
Truncated to 63 characters: some names become DNS labels.
*/}}
{{- define "voice-operator.fullname" -}}
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

{{/* name-version, for the helm.sh/chart label. */}}
{{- define "voice-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the operator pods (never change them: selectors are immutable). */}}
{{- define "voice-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "voice-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "voice-operator.labels" -}}
helm.sh/chart: {{ include "voice-operator.chart" . }}
{{ include "voice-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: voice-service
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "voice-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "voice-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: repository@digest when a digest is set, else repository:tag. */}}
{{- define "voice-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The API access the operator uses, and nothing more: the same rules as
voice_operator.rbac.RULES (`voice-operator rbac` prints them; tests/unit/test_chart.py
fails when the two differ). Granted cluster-wide, or in each watched namespace.
*/}}
{{- define "voice-operator.rules" -}}
# kopf watches VoiceServices; reconcile writes their status.
- apiGroups: ["voice-service.io"]
  resources: ["voiceservices"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["voice-service.io"]
  resources: ["voiceservices/status"]
  verbs: ["get", "patch"]
# Children carry owner references with blockOwnerDeletion; clusters running the
# OwnerReferencesPermissionEnforcement admission plugin (OpenShift) require this for them.
- apiGroups: ["voice-service.io"]
  resources: ["voiceservices/finalizers"]
  verbs: ["update"]
# The children, watched by label and written with server-side apply (a patch that may
# create); superseded Jobs, HPAs, PDBs and an unused fetch claim are deleted. The
# Deployment and Service go only by garbage collection.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Pod states feed the Degraded condition: read only.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Existence checks of the Secrets a spec names (metadata only; values are never read).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Events on VoiceServices (core/v1, each posted once).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
Leader election: the Lease in the release namespace (voice_operator.rbac.LEASE_RULES),
narrowed to the one Lease by name where RBAC allows it (create cannot be).
*/}}
{{- define "voice-operator.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ .Values.leaderElection.leaseName | quote }}]
  verbs: ["get", "update"]
{{- end }}
