"""Operator-wide settings: defaults a VoiceService may leave out, and identity constants.

Built once by ``cli`` from flags and ``VOICE_OPERATOR_*`` environment variables (the Helm
chart sets those), then passed explicitly to ``reconcile`` and the builders. Nothing here
reads the environment at import time.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Final

FIELD_MANAGER: Final = "voice-operator"
MANAGED_BY: Final = "voice-operator"

DEFAULT_IMAGE: Final = "ghcr.io/voice-service/voice-inference:0.1.0"
DEFAULT_FETCH_IMAGE: Final = "ghcr.io/voice-service/voice-operator:0.1.0"
DEFAULT_GPU_RESOURCE: Final = "nvidia.com/gpu"


@dataclasses.dataclass(frozen=True)
class Defaults:
    """Values the operator applies when a VoiceService leaves the field unset."""

    image: str = DEFAULT_IMAGE
    fetch_image: str = DEFAULT_FETCH_IMAGE
    gpu_resource_name: str = DEFAULT_GPU_RESOURCE
    # Model load takes about a minute on a GPU; torch.compile adds several more.
    startup_seconds: int = 600
    startup_seconds_compile: int = 1800
    probe_period_seconds: int = 10
    probe_timeout_seconds: int = 5
    probe_failure_threshold: int = 3
    cluster_domain: str = "cluster.local"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Defaults:
        """Read ``VOICE_OPERATOR_DEFAULT_<FIELD>`` overrides (what the chart's values set)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(f"VOICE_OPERATOR_DEFAULT_{field.name.upper()}")
            if raw is None or raw == "":
                continue
            try:
                values[field.name] = int(raw) if field.type == "int" else raw
            except ValueError as err:
                raise ValueError(f"VOICE_OPERATOR_DEFAULT_{field.name.upper()}={raw!r} is not an integer") from err
        return cls(**values)  # type: ignore[arg-type]
