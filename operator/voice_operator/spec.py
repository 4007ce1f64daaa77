"""The VoiceService API: pydantic models of ``spec`` and ``status``.

The source of truth for the custom resource. ``crd`` turns these models into the CRD's
structural OpenAPI schema (defaults, enums, ranges and the CEL rules attached here), and
``reconcile`` parses each object's ``spec`` with ``VoiceServiceSpec`` before the builders
render children from it. Field names are the camelCase ones users write in YAML; Python
code uses the snake_case attribute names.

Every CEL rule (``x-kubernetes-validations``) has a twin ``model_validator`` so that the
operator, the unit tests and the API server judge a manifest the same way.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

GROUP: Final = "voice-service.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "VoiceService"
PLURAL: Final = "voiceservices"
SINGULAR: Final = "voiceservice"
SHORT_NAMES: Final = ("vsvc",)

# Child names append at most 15 characters ("-checkpoints", "-fetch-" + 8 hex), and a
# Service name must be a DNS-1035 label of at most 63.
MAX_NAME_LENGTH: Final = 48
NAME_PATTERN: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"

# Kubernetes' own resource.Quantity grammar, as a string.
QUANTITY_PATTERN: Final = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
DNS_LABEL: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME: Final = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"

ResourceName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
# Quantities are int-or-string in Kubernetes (``cpu: 2`` and ``memory: 16Gi``).
Quantity = Annotated[int | Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN)], Field(json_schema_extra={"x-kubernetes-int-or-string": True})]
IntOrPercent = Annotated[int | Annotated[str, StringConstraints(pattern=r"^[0-9]+%$")], Field(json_schema_extra={"x-kubernetes-int-or-string": True})]
# Objects passed through to Kubernetes unchanged (affinity, HPA behavior, env valueFrom).
Passthrough = Annotated[dict[str, Any], Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})]


def _cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class _Model(BaseModel):
    """camelCase in YAML, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


# -- references to other objects ---------------------------------------------------------


class SecretKeyRef(_Model):
    """One key of a Secret in the VoiceService's namespace."""

    name: ResourceName = Field(description="Name of the Secret.")
    key: str = Field(min_length=1, max_length=253, description="Key inside the Secret.")


class SecretRef(_Model):
    """A whole Secret in the VoiceService's namespace."""

    name: ResourceName = Field(description="Name of the Secret.")


# -- engine ------------------------------------------------------------------------------


class Engine(_Model):
    """How the inference server runs the model (rendered as VOICE_* variables)."""

    provider: Literal["s1_mini", "mock"] = Field("s1_mini", description="s1_mini serves the real model; mock is a deterministic test engine.")
    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="Where the model runs.")
    precision: Literal["auto", "bfloat16", "float16", "float32"] = Field("auto", description="Model precision.")
    compile: bool = Field(False, description="torch.compile the model: faster steady state, minutes more at start.")
    max_text_length: int = Field(2000, ge=1, le=1_000_000, description="Longest text accepted per request, in characters.")
    max_batch_size: int = Field(8, ge=1, le=1024, description="Requests decoded together on one GPU (batch slots); 1 = one at a time.")
    queue_size: int = Field(16, ge=1, le=10_000, description="Requests waiting beyond the batch slots; more get 429.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Server log level.")
    stream_frames: int | None = Field(None, ge=1, le=512, description="Codec frames in the first streamed chunk; the server's default when unset.")
    reference_cache_size: int | None = Field(None, ge=0, le=100_000, description="Encoded reference voices kept in memory; the server's default when unset.")
    cpu_threads: int | None = Field(None, ge=0, le=1024, description="torch threads when the model runs on CPU; the server's default when unset.")


# -- resources and scheduling ------------------------------------------------------------


class Resources(_Model):
    """Compute resources of each inference pod."""

    gpu: int = Field(1, ge=0, le=16, description="GPUs per pod (requests = limits). 0 runs on CPU.")
    gpu_resource_name: Annotated[str, StringConstraints(max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$")] | None = Field(
        None, description="Extended resource that counts GPUs; the operator's default (nvidia.com/gpu) when unset."
    )
    requests: dict[str, Quantity] = Field(default_factory=dict, description="Other requests, e.g. cpu, memory.")
    limits: dict[str, Quantity] = Field(default_factory=dict, description="Other limits, e.g. memory.")


class Toleration(_Model):
    """As in a pod's spec.tolerations (GPU node pools are often tainted)."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class EnvVar(_Model):
    """An extra environment variable; overrides a rendered one of the same name."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=ENV_NAME)]
    value: str | None = None
    value_from: Passthrough | None = Field(None, description="As in a container's env[].valueFrom.")


# -- checkpoint --------------------------------------------------------------------------


class HuggingFaceSource(_Model):
    """Download the checkpoint from a Hugging Face model repository."""

    repo: Annotated[str, StringConstraints(min_length=3, max_length=200, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*$")] = Field(
        description="Model repository, e.g. fishaudio/openaudio-s1-mini."
    )
    revision: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field("main", description="Branch, tag or commit.")
    token_secret: SecretKeyRef | None = Field(None, description="Secret key holding a Hugging Face token (gated repos).")


class S3Source(_Model):
    """Download the checkpoint from S3 or an S3-compatible store."""

    uri: Annotated[str, StringConstraints(max_length=1024, pattern=r"^s3://[a-z0-9][-a-z0-9.]{1,61}[a-z0-9](/.*)?$")] = Field(
        description="s3://bucket/prefix holding the checkpoint files."
    )
    endpoint: Annotated[str, StringConstraints(max_length=1024, pattern=r"^https?://.+$")] | None = Field(
        None, description="S3-compatible endpoint URL (MinIO, R2...); AWS when unset."
    )
    region: Annotated[str, StringConstraints(max_length=64)] | None = None
    credentials_secret: SecretRef | None = Field(
        None, description="Secret with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and optionally AWS_SESSION_TOKEN); the pod's identity when unset."
    )


class ExistingClaim(_Model):
    """Serve a checkpoint already present in a PersistentVolumeClaim (no download)."""

    name: ResourceName = Field(description="A PersistentVolumeClaim that already holds the checkpoint.")
    path: Annotated[str, StringConstraints(max_length=1024, pattern=r"^[^/].*$|^$")] = Field(
        "", description="Folder of the checkpoint inside the claim (relative)."
    )


class CheckpointSource(_Model):
    """Where the model files come from: exactly one of huggingface, s3, existingClaim."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "(has(self.huggingface) ? 1 : 0) + (has(self.s3) ? 1 : 0) + (has(self.existingClaim) ? 1 : 0) == 1",
                    "exactly one of huggingface, s3 or existingClaim must be set",
                )
            ]
        }
    )

    huggingface: HuggingFaceSource | None = None
    s3: S3Source | None = None
    existing_claim: ExistingClaim | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CheckpointSource:
        if sum(x is not None for x in (self.huggingface, self.s3, self.existing_claim)) != 1:
            raise ValueError("exactly one of huggingface, s3 or existingClaim must be set")
        return self


class CheckpointStorage(_Model):
    """The PersistentVolumeClaim the fetch Job fills (unused with existingClaim)."""

    size: Quantity = Field("10Gi", description="Claim size.")
    storage_class_name: Annotated[str, StringConstraints(max_length=253)] | None = Field(None, description="The cluster default when unset.")
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"] = Field(
        "ReadWriteOnce", description="ReadWriteMany lets replicas on several nodes share one copy."
    )
    retain_on_delete: bool = Field(False, description="Keep the claim (and the downloaded files) when the VoiceService is deleted.")


class Checkpoint(_Model):
    """The model checkpoint: fetched once per source revision into a claim, mounted read-only."""

    source: CheckpointSource
    storage: CheckpointStorage = Field(default_factory=CheckpointStorage)
    fetch_image: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = Field(
        None, description="Image that runs voice-fetch-checkpoint; the operator's default when unset."
    )


# -- reference voices --------------------------------------------------------------------


class HuggingFaceVoices(_Model):
    """Reference voices kept in a Hugging Face repository (<id>/<name>.wav + .lab)."""

    repo: Annotated[str, StringConstraints(min_length=3, max_length=200, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*$")]
    repo_type: Literal["dataset", "model"] = "dataset"
    revision: Annotated[str, StringConstraints(min_length=1, max_length=200)] = "main"
    path: Annotated[str, StringConstraints(max_length=1024)] = Field("", description="Folder inside the repo that holds the voices.")
    token_secret: SecretKeyRef | None = Field(None, description="Secret key holding a Hub token (mounted as a file).")
    endpoint: Annotated[str, StringConstraints(max_length=1024, pattern=r"^https?://.+$")] | None = None


class S3Voices(_Model):
    """Reference voices kept in S3 or an S3-compatible store."""

    bucket: Annotated[str, StringConstraints(min_length=3, max_length=63, pattern=r"^[a-z0-9][-a-z0-9.]*[a-z0-9]$")]
    prefix: Annotated[str, StringConstraints(max_length=1024)] = ""
    endpoint: Annotated[str, StringConstraints(max_length=1024, pattern=r"^https?://.+$")] | None = Field(
        None, description="S3-compatible endpoint URL; AWS when unset."
    )
    region: Annotated[str, StringConstraints(max_length=64)] | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    credentials_secret: SecretRef | None = Field(
        None, description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; the pod's identity when unset."
    )


class References(_Model):
    """Where the server keeps reference voices (POST /v1/voices writes there)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("self.storage != 's3' || has(self.s3)", "storage s3 needs references.s3"),
                _cel("self.storage != 'huggingface' || has(self.huggingface)", "storage huggingface needs references.huggingface"),
            ]
        }
    )

    storage: Literal["local", "huggingface", "s3"] = Field("local", description="Voice store backend.")
    claim_name: ResourceName | None = Field(None, description="local: a PVC to keep voices in; an emptyDir (lost on restart) when unset.")
    huggingface: HuggingFaceVoices | None = None
    s3: S3Voices | None = None

    @model_validator(mode="after")
    def _backend_configured(self) -> References:
        if self.storage == "s3" and self.s3 is None:
            raise ValueError("storage s3 needs references.s3")
        if self.storage == "huggingface" and self.huggingface is None:
            raise ValueError("storage huggingface needs references.huggingface")
        return self


# -- serving policy ----------------------------------------------------------------------


class Cors(_Model):
    """Cross-origin access for browser clients."""

    allow_origins: list[Annotated[str, StringConstraints(min_length=1, max_length=512)]] = Field(
        default_factory=list, max_length=64, description="Origins allowed by CORS; empty turns CORS off."
    )


class CpuTarget(_Model):
    """Scale on CPU utilization (needs metrics-server)."""

    average_utilization: int = Field(ge=1, le=1000, description="Target average CPU utilization, percent of requests.")


class PodMetricTarget(_Model):
    """Scale on a per-pod custom metric (needs a custom metrics adapter)."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(description="Per-pod custom metric, e.g. voice_batch_slot_occupancy (0 to 1).")
    average_value: Quantity = Field(description="Target average value per pod.")


class AutoscalingTarget(_Model):
    """The metric the HPA follows: exactly one of cpu or podMetric."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("has(self.cpu) != has(self.podMetric)", "set exactly one of cpu or podMetric")
            ]
        }
    )

    cpu: CpuTarget | None = None
    pod_metric: PodMetricTarget | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AutoscalingTarget:
        if (self.cpu is None) == (self.pod_metric is None):
            raise ValueError("set exactly one of cpu or podMetric")
        return self


class Autoscaling(_Model):
    """A HorizontalPodAutoscaler that scales the VoiceService itself (its scale subresource)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas", ".minReplicas")
            ]
        }
    )

    enabled: bool = False
    min_replicas: int = Field(1, ge=1, le=1000)
    max_replicas: int = Field(1, ge=1, le=1000)
    target: AutoscalingTarget = Field(default_factory=lambda: AutoscalingTarget(cpu=CpuTarget(average_utilization=80)))
    behavior: Passthrough | None = Field(None, description="As in an HPA's spec.behavior.")

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        return self


class Probes(_Model):
    """Probe timing; unset fields take the operator's defaults."""

    startup_seconds: int | None = Field(
        None, ge=10, le=7200, description="How long a pod may take to load (and compile) the model before it is restarted."
    )
    period_seconds: int | None = Field(None, ge=1, le=300)
    timeout_seconds: int | None = Field(None, ge=1, le=300)
    failure_threshold: int | None = Field(None, ge=1, le=100, description="Consecutive failures before not-ready / restart.")


class Rollout(_Model):
    """How a spec change rolls the pods."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!((self.maxSurge == 0 || self.maxSurge == '0%') && (self.maxUnavailable == 0 || self.maxUnavailable == '0%'))",
                    "maxSurge and maxUnavailable cannot both be 0",
                )
            ]
        }
    )

    max_surge: IntOrPercent = Field(0, description="Extra pods during a rollout; 0 needs no spare GPU.")
    max_unavailable: IntOrPercent = Field(1, description="Pods that may be down during a rollout.")
    progress_deadline_seconds: int | None = Field(
        None, ge=10, le=86400, description="A rollout without progress this long is Degraded; startup allowance + 300 when unset."
    )

    @model_validator(mode="after")
    def _not_both_zero(self) -> Rollout:
        if self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            raise ValueError("maxSurge and maxUnavailable cannot both be 0")
        return self


class ServiceSettings(_Model):
    """The Service in front of the pods."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    port: int = Field(80, ge=1, le=65535, description="Port of the Service (the pods listen on 8080).")
    annotations: dict[str, str] = Field(default_factory=dict)


# -- the spec ----------------------------------------------------------------------------


class VoiceServiceSpec(_Model):
    """What a team asks for: a TTS service of N GPU pods serving one checkpoint."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.engine.provider != 's1_mini' || has(self.checkpoint)",
                    "engine.provider s1_mini needs spec.checkpoint (where the model comes from)",
                )
            ]
        }
    )

    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = Field(
        None, description="Inference server image; the operator's default when unset."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[SecretRef] = Field(default_factory=list, max_length=16)
    replicas: int = Field(1, ge=0, le=1000, description="Pods; set by the HPA when autoscaling is on.")
    engine: Engine = Field(default_factory=Engine)
    resources: Resources = Field(default_factory=Resources)
    checkpoint: Checkpoint | None = None
    references: References = Field(default_factory=References)
    cors: Cors = Field(default_factory=Cors)
    api_key_secret: SecretKeyRef | None = Field(None, description="Secret key whose value lists accepted API keys, one per line.")
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    probes: Probes = Field(default_factory=Probes)
    rollout: Rollout = Field(default_factory=Rollout)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    env: list[EnvVar] = Field(default_factory=list, max_length=128)
    pod_annotations: dict[str, str] = Field(default_factory=dict, description="Added to every pod (also the fetch Job's).")
    pod_labels: dict[str, str] = Field(default_factory=dict, description="Added to every pod.")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64)
    affinity: Passthrough | None = None
    runtime_class_name: ResourceName | None = None
    priority_class_name: ResourceName | None = None
    service_account_name: ResourceName | None = Field(None, description="The namespace's default account when unset.")

    @model_validator(mode="after")
    def _checkpoint_for_s1(self) -> VoiceServiceSpec:
        if self.engine.provider == "s1_mini" and self.checkpoint is None:
            raise ValueError("engine.provider s1_mini needs spec.checkpoint (where the model comes from)")
        return self


# -- the status --------------------------------------------------------------------------


class Condition(_Model):
    """One aspect of the service's state, as in Kubernetes conditions."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["Ready", "Progressing", "Degraded", "CheckpointReady"]
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(max_length=1024)
    message: str = Field("", max_length=32768)
    last_transition_time: str = Field(description="RFC 3339 time of the last status change.")
    observed_generation: int | None = None


class CheckpointStatus(_Model):
    """The checkpoint the pods serve."""

    model_config = ConfigDict(extra="ignore")

    source: str | None = Field(None, description="hf://repo@revision, s3://..., or pvc://claim/path.")
    revision: str | None = Field(None, description="The revision the pods serve (a commit when the fetch reported one).")
    claim_name: str | None = None
    job_name: str | None = None


class VoiceServiceStatus(_Model):
    """What the operator observed: conditions, replica counts, the endpoint (written by the operator only)."""

    model_config = ConfigDict(extra="ignore")

    observed_generation: int | None = Field(None, description="The metadata.generation this status describes.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description=(
            "Ready: every desired pod runs the current template and is available. "
            "Progressing: a checkpoint fetch, rollout or scale is under way. "
            "Degraded: something needs a human (the reason names it). "
            "CheckpointReady: the desired checkpoint is in its claim. "
            "A pod problem that makes the service Degraded also keeps it from being Ready."
        ),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    replicas: int = Field(0, description="Pods of the Deployment, as it reports them.")
    ready_replicas: int = Field(
        0,
        description=(
            "Pods counted ready: the Deployment counts them ready and a live pod reports Ready "
            "itself, with no crash loop, bad image or failing readiness. While one of the two lags "
            "the other, the lower count holds."
        ),
    )
    updated_replicas: int = Field(0, description="Pods of the current template, as the Deployment reports them.")
    available_replicas: int = Field(0, description="Pods counted available, by the same rule as readyReplicas.")
    replica_summary: str | None = Field(None, description="readyReplicas/desired, for kubectl get.")
    selector: str | None = Field(None, description="Label selector of the pods (scale subresource).")
    endpoint: str | None = Field(None, description="In-cluster URL of the service.")
    template_hash: str | None = Field(None, description="Hash of the pod template being rolled out.")
    checkpoint: CheckpointStatus | None = None


def valid_name(name: str) -> str | None:
    """Why a VoiceService name cannot be used (the CRD's name rule), or None."""
    if len(name) > MAX_NAME_LENGTH:
        return f"metadata.name must be at most {MAX_NAME_LENGTH} characters"
    if not re.match(NAME_PATTERN, name):
        return "metadata.name must start with a letter and hold only lowercase letters, digits and '-'"
    return None
