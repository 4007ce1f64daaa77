"""``tests.servers.ServerProcess``, which every server test, benchmark and demo starts servers
with, stops what it started on every way out: a start that never gets ready, and the death
of the process that started it by SIGTERM or SIGKILL (no ``finally`` runs there)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 30.0

# A parent that starts a server, says its pid, and waits to be killed.
PARENT = """
import signal, sys
from tests.servers import ServerProcess
server = ServerProcess({"VOICE_TTS_PROVIDER": "mock", "VOICE_REFERENCE_PATH": sys.argv[1]}).start()
print(server.process.pid, flush=True)
signal.pause()
"""


def gone(pid: int) -> bool:
    """No such process any more (a zombie nobody reaped counts as gone: it runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + WAIT_S
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return gone(pid)


def test_a_server_that_never_gets_ready_is_stopped(tmp_path: Path) -> None:
    # Warm-up synthesizes 2 chunks at 10 s each: not ready within the 3 s allowed.
    server = ServerProcess(
        {"VOICE_TTS_PROVIDER": "mock", "VOICE_MOCK_CHUNK_COST_MS": "10000", "VOICE_REFERENCE_PATH": str(tmp_path)}
    )
    with pytest.raises(TimeoutError):
        server.start(timeout=3)
    assert server.process is not None and wait_gone(server.process.pid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_the_server_dies_with_the_process_that_started_it(tmp_path: Path, sig: signal.Signals) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "references")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())  # the server is ready
        assert not gone(server_pid)
        os.kill(parent.pid, sig)
        assert parent.wait(timeout=WAIT_S) == -sig
        assert wait_gone(server_pid), "the server outlived the process that started it"
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()
