"""Shared pieces of the S1 Mini tests (tests/unit/test_s1_*.py, tests/integration/test_s1_server.py).

``require_engine``: every S1 test module calls it first, before importing torch. Without the
[s1] extra the module skips with the reason, unless the extra is meant to be installed (on CI,
and under ``make test``, which installs it first): then a missing engine fails the run instead
of leaving it green with every engine test skipped.

``tiny_checkpoint_dir``: the random-weight tiny checkpoint, written once per test session by our
own generator (never downloaded); tests get it through the ``tiny_checkpoint`` fixture of
tests/conftest.py (the server tests call it directly). This module itself imports without the
extra (``s1_checkpoint`` imports torch only when it writes a checkpoint).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

ENGINE_MODULE = "voice_inference.engines.s1_mini"  # imports torch and fish-speech's model code
# Set by mk/s1.mk for the targets that install the extra before they run the tests.
REQUIRED_VARIABLE = "VOICE_TEST_S1"
SEED = 0


def engine_required(env: Mapping[str, str]) -> bool:
    """Whether the [s1] extra is meant to be installed: on CI (``CI=true``, as CI services set
    it) or when ``VOICE_TEST_S1=required`` (``make test``)."""
    return env.get("CI", "").strip().lower() in {"1", "true", "yes"} or env.get(REQUIRED_VARIABLE) == "required"


def require_engine(module: str = ENGINE_MODULE, env: Mapping[str, str] | None = None) -> None:
    """Import the S1 engine or stop this test module: a skip with the reason where the extra
    is optional, a failure where it is meant to be installed."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        problem = f"the S1 engine does not import ({exc.__class__.__name__}: {exc})"
        if engine_required(os.environ if env is None else env):
            pytest.fail(
                f"{problem}, but the [s1] extra is meant to be installed here "
                f"(CI=true or {REQUIRED_VARIABLE}=required): run `make s1`",
                pytrace=False,
            )
        pytest.skip(f"{problem}: the S1 tests need the [s1] extra (`make s1`; `make test` installs it)", allow_module_level=True)


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
