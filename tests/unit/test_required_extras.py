"""The rule every S1 test module follows (``tests.s1_support.require_engine``): without the [s1]
extra it skips with the reason, unless the extra is meant to be installed (CI, ``make test``),
where a missing engine fails the run. Checked on the helper itself and, with torch hidden, on
every S1 test module as pytest collects it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import s1_support

ROOT = Path(__file__).resolve().parents[2]
S1_MODULES = sorted(str(path.relative_to(ROOT)) for path in ROOT.glob("tests/*/test_s1_*.py"))


@pytest.mark.parametrize(
    ("env", "required"),
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"CI": "1"}, True),
        ({"CI": "false"}, False),
        ({"VOICE_TEST_S1": "required"}, True),
        ({"VOICE_TEST_S1": ""}, False),
    ],
)
def test_when_the_engine_is_required(env: dict[str, str], required: bool) -> None:
    assert s1_support.engine_required(env) is required


def test_a_missing_engine_skips_where_the_extra_is_optional() -> None:
    with pytest.raises(pytest.skip.Exception, match=r"no_such_engine.*\[s1\] extra"):
        s1_support.require_engine("voice_inference.engines.no_such_engine", env={})


@pytest.mark.parametrize("env", [{"CI": "true"}, {"VOICE_TEST_S1": "required"}], ids=["ci", "make-test"])
def test_a_missing_engine_fails_where_the_extra_is_meant_to_be_installed(env: dict[str, str]) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"no_such_engine.*meant to be installed"):
        s1_support.require_engine("voice_inference.engines.no_such_engine", env=env)


def test_an_importable_engine_passes() -> None:
    s1_support.require_engine("voice_inference.engines.mock", env={"CI": "true"})


def run_without_torch(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run every S1 test module in a pytest whose ``import torch`` fails (each stops at import)."""
    hidden = tmp_path / "no-torch"
    hidden.mkdir(exist_ok=True)
    (hidden / "torch.py").write_text("raise ImportError('torch is hidden by the test')\n")
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", s1_support.REQUIRED_VARIABLE)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *S1_MODULES],
        cwd=ROOT, env={**clean, "PYTHONPATH": str(hidden), **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_every_s1_module_skips_without_torch(tmp_path: Path) -> None:
    assert len(S1_MODULES) >= 4
    result = run_without_torch(tmp_path)
    assert result.returncode == 5, result.stdout + result.stderr  # 5: no tests ran, none failed
    assert f"SKIPPED [{len(S1_MODULES)}]" in result.stdout, result.stdout
    assert "torch is hidden by the test): the S1 tests need the [s1] extra" in result.stdout
    assert f"{len(S1_MODULES)} skipped in" in result.stdout


def test_every_s1_module_fails_without_torch_on_ci(tmp_path: Path) -> None:
    result = run_without_torch(tmp_path, CI="true")
    assert result.returncode not in (0, 5), result.stdout
    assert f"{len(S1_MODULES)} errors" in result.stdout, result.stdout
    assert result.stdout.count("meant to be installed") >= len(S1_MODULES), result.stdout
