"""Scripts and test runs stop what they started when SIGTERM, SIGHUP or SIGKILL ends them.

A real child process of a real script: the script runs its ``main`` through
``lifetime.run_main`` with a ``launcher.ControlPlane``'s signal handlers installed on top (as
``ControlPlane.start`` does), starts ``sleep`` with ``lifetime.die_with_parent``, and waits.
"""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys

import pytest

from tests import lifetime

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = """
import pathlib, subprocess, sys
from tests import lifetime
from tests.cluster import launcher

def main() -> int:
    plane = launcher.ControlPlane(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[1]), owned=True)
    plane._install_signal_handlers()  # what plane.start() does first
    child = subprocess.Popen(["sleep", "600"], start_new_session=True, preexec_fn=lifetime.die_with_parent)
    try:
        print(child.pid, flush=True)
        sys.stdin.read()  # until a signal ends us
    finally:
        child.kill()
        child.wait()
        print("cleaned up", flush=True)
    return 0

sys.exit(lifetime.run_main(main))
"""


def start(tmp_path: pathlib.Path) -> tuple[subprocess.Popen[str], int]:
    script = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    assert script.stdout is not None
    child = int(script.stdout.readline())
    assert lifetime.running(child)
    return script, child


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_terminated_script_runs_its_clean_up(tmp_path: pathlib.Path, sig: signal.Signals) -> None:
    script, child = start(tmp_path)
    script.send_signal(sig)
    out, err = script.communicate(timeout=30)
    assert script.returncode == 128 + sig
    assert "cleaned up" in out and f"terminated by {sig.name}" in err
    assert not lifetime.running(child)


def test_a_killed_script_takes_its_children_along(tmp_path: pathlib.Path) -> None:
    script, child = start(tmp_path)
    script.kill()  # SIGKILL: no handler, no finally
    script.communicate(timeout=30)
    lifetime.wait_gone(child)


def test_terminated_is_an_interrupt_with_the_signals_exit_code() -> None:
    stop = lifetime.Terminated(signal.SIGTERM)
    assert isinstance(stop, KeyboardInterrupt) and stop.exit_code == 143 and str(stop) == "terminated by SIGTERM"
