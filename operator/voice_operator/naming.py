"""Names, labels and annotations of the objects a VoiceService owns.

Shared by the builders (which stamp them on children), ``handlers`` (which route a child's
watch event to its VoiceService by ``SERVICE_LABEL``) and ``status`` (which finds the pods
of the current template by ``TEMPLATE_HASH_ANNOTATION``). Changing a selector label here
would orphan every existing Deployment, whose selector is immutable.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from voice_operator import config

# Routing and selection.
SERVICE_LABEL: Final = "voice-service.io/service"  # the owning VoiceService's name
COMPONENT_LABEL: Final = "app.kubernetes.io/component"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
INFERENCE: Final = "inference"
CHECKPOINT_FETCH: Final = "checkpoint-fetch"
CHECKPOINT_STORAGE: Final = "checkpoint-storage"

# What the operator records on children.
TEMPLATE_HASH_ANNOTATION: Final = "voice-service.io/template-hash"
CHECKPOINT_ANNOTATION: Final = "voice-service.io/checkpoint"  # revision folder the pods serve
SOURCE_HASH_ANNOTATION: Final = "voice-service.io/source-hash"
SOURCE_ANNOTATION: Final = "voice-service.io/source"
REVISION_ANNOTATION: Final = "voice-service.io/checkpoint-revision"  # the commit a fetch reported

MANAGED_SELECTOR: Final = f"{MANAGED_BY_LABEL}={config.MANAGED_BY}"


def common_labels(service: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "voice-service",
        "app.kubernetes.io/instance": service,
        COMPONENT_LABEL: component,
        MANAGED_BY_LABEL: config.MANAGED_BY,
        SERVICE_LABEL: service,
    }


def selector_labels(service: str) -> dict[str, str]:
    """The inference pods' selector (Deployment, Service, PDB, scale subresource)."""
    return {SERVICE_LABEL: service, COMPONENT_LABEL: INFERENCE}


def selector_string(service: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(service).items()))


def deployment(service: str) -> str:
    return service


def service(service: str) -> str:
    return service


def checkpoint_claim(service: str) -> str:
    return f"{service}-checkpoints"


def fetch_job(service: str, source_hash: str) -> str:
    return f"{service}-fetch-{source_hash[:8]}"


def autoscaler(service: str) -> str:
    return service


def disruption_budget(service: str) -> str:
    return service


def stable_hash(value: Any, length: int = 16) -> str:
    """A short hex digest of JSON-able data, independent of key order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
