"""`make demo` end to end (scripts/demo_cluster.py), both of its paths, as a user runs it.

* ``--pods real``: the demo starts its own control plane and the real node
  (tests/cluster/node.py); the chart's operator and the VoiceService's pod run from the
  images there, and the WAV comes through the Service. Skips, saying why, where Docker, the
  images or the node's prerequisites are missing; fails instead under
  VOICE_REQUIRE_CONTAINERS=1. The node is one per machine: this module runs before
  test_real_node*.py, whose session fixture holds it until the session ends.
* the fallback: where no Docker engine answers (DOCKER_HOST names a socket nobody serves),
  ``--pods auto`` says so in one line and runs the local path (kwok plays the pods) to its
  WAV, and ``--pods real`` refuses with the same reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pathlib
import re
import subprocess
import sys

import pytest
import soundfile

from tests import lifetime
from tests.cluster import launcher, node
from tests.containers import engine

pytestmark = pytest.mark.e2e

REPO = pathlib.Path(__file__).resolve().parents[2]
WAV = REPO / "out" / "demo-cluster" / "hello.wav"


def run_demo(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The demo to its end; ``args`` of the result holds its pid (its control plane's folder
    is named after it)."""
    demo = subprocess.Popen(
        [sys.executable, "scripts/demo_cluster.py", *args], cwd=REPO, env=env or dict(os.environ),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lifetime.die_with_parent,  # noqa: PLW1509 - the demo and all it started die with the test run
    )  # fmt: skip
    try:
        stdout, stderr = demo.communicate(timeout=timeout)
    finally:
        if demo.poll() is None:
            demo.terminate()  # its clean-up runs on SIGTERM
            demo.communicate(timeout=120)
    return subprocess.CompletedProcess(demo.pid, demo.returncode, stdout, stderr)


def _missing(reason: str) -> None:
    if os.environ.get("VOICE_REQUIRE_CONTAINERS") == "1":
        pytest.fail(f"VOICE_REQUIRE_CONTAINERS=1, but {reason}", pytrace=False)
    pytest.skip(reason)


def _node_held() -> bool:
    with contextlib.suppress(FileNotFoundError), open(node.LOCK_FILE) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def _wav_seconds() -> float:
    return soundfile.info(io.BytesIO(WAV.read_bytes())).duration


def _no_docker_env(tmp_path: pathlib.Path) -> dict[str, str]:
    return dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")


def _device_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True, check=False).returncode == 0


@pytest.mark.timeout(1500)  # a machine's first run imports the inference image into containerd (~5 min)
def test_demo_runs_the_operator_and_the_voiceservice_as_pods_on_the_real_node(
    docker: engine.Docker, operator_image: str, inference_image: str
) -> None:
    missing = node.missing_prerequisites(launcher.tools_bin_dir())
    if missing:
        _missing(f"no real node can run here: missing {', '.join(missing)}")
    if _node_held():
        _missing(f"another run holds the machine's real node ({node.LOCK_FILE})")
    WAV.unlink(missing_ok=True)

    result = run_demo("--pods", "real", "--skip-api-tour", timeout=1400)
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr}"
    assert "==> pods: real" in out
    # Pods reach the API server through the `kubernetes` Service, at an address of this machine.
    assert re.search(r"service/kubernetes 10\.96\.0\.1:443 -> 10\.88\.1\.1:\d+", out), out
    # The operator from its image, in a pod on the real node, leading (it holds the Lease).
    operator_line = re.search(r"pod/(voice-operator-\S+) running on node localhost at (10\.88\.0\.\d+), image (\S+)", out)
    assert operator_line and operator_line[3] == operator_image, out
    assert f"it holds lease/voice-operator as {operator_line[1]}-" in out
    # The VoiceService turned Ready because its pod's probes passed there.
    pod_line = re.search(r"pod/demo-\S+ on node localhost at (10\.88\.0\.\d+): (\S+), running since", out)
    assert pod_line and pod_line[2] == inference_image, out
    assert re.search(r"(?m)^\s+demo\s+.*\bTrue\b", out), out  # `kubectl get vsvc -o wide`: Ready True
    assert "engine S1 Mini on the tiny random-weight checkpoint" in out
    # The speech came through the Service's cluster IP.
    assert re.search(r"POST http://10\.96\.\d+\.\d+:80/v1/tts .*\n\s+\(service/demo's cluster IP", out), out
    assert _wav_seconds() > 0
    # Every step is timed, and the total.
    assert len(re.findall(r"(?m)^    done in \d+\.\ds$", out)) == 7
    assert re.search(r"(?m)^\s+\d+\.\ds  in all$", out)

    # Clean-up left nothing: the node's lock is free, its bridge and the API address are gone.
    assert not _node_held()
    assert not _device_exists(node.NODE_BRIDGE) and not _device_exists("voice-api0")
    assert not (launcher.DEFAULT_DIR / f"demo-{result.args}").exists()


def test_demo_without_docker_says_why_and_runs_the_local_path(tmp_path: pathlib.Path) -> None:
    WAV.unlink(missing_ok=True)
    result = run_demo("--pods", "auto", "--engine", "mock", "--skip-api-tour", env=_no_docker_env(tmp_path))
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr}"
    [line] = [line for line in out.splitlines() if line.startswith("==> pods:")]
    assert re.match(r"==> pods: the local path \(kwok plays the pods\), because no (Docker engine answers|docker client)", line), line
    assert "kwok plays its pod" in out and "voice-inference serve: pid" in out  # today's path
    assert _wav_seconds() > 0


def test_demo_with_real_pods_asked_for_but_no_docker_refuses_saying_why(tmp_path: pathlib.Path) -> None:
    result = run_demo("--pods", "real", env=_no_docker_env(tmp_path), timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert re.search(r"--pods real cannot run here: no (Docker engine answers|docker client)", result.stderr), result.stderr
    assert "==> [2/" not in result.stdout  # nothing started beyond step 1
