"""Shared pieces of the S1 Mini tests (tests/unit/test_s1_*.py, tests/integration/test_s1_server.py).

``tiny_checkpoint_dir``: the random-weight tiny checkpoint, written once per test session by our
own generator (never downloaded); tests get it through the ``tiny_checkpoint`` fixture of
tests/conftest.py (the server tests call it directly). Importing this module needs torch and
fish-speech (the [s1] extra); test modules skip before importing it when torch is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TORCH_MISSING = "torch is not installed: the S1 Mini tests need the [s1] extra (`make test` installs it)"
SEED = 0


def tiny_checkpoint_dir(factory: pytest.TempPathFactory) -> Path:
    """The session's tiny checkpoint, made on first use (shared by every module that asks)."""
    path = factory.getbasetemp() / "s1-tiny-checkpoint"
    if not (path / "codec.pth").is_file():  # codec.pth is written last
        from voice_inference.engines import s1_random_checkpoint  # needs torch: only when writing

        s1_random_checkpoint.make_checkpoint(path, "tiny", seed=SEED)
    return path


def tone(seconds: float, hz: float, rate: int = 44_100) -> np.ndarray:
    """A float32 sine, a stand-in reference voice."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
