"""Whatever a test session or a script starts is stopped on every way out.

Python's default SIGTERM and SIGHUP end the process on the spot: no ``finally``, no
fixture teardown, so a child started in its own session (an operator, an inference
server) lives on. ``terminate_as_interrupt`` turns those signals into ``Terminated`` (a
KeyboardInterrupt) in the main thread, so clean-up runs as on Ctrl-C. tests/conftest.py
installs it for the pytest session; scripts/bench_operator.py, demo_cluster.py, demo.py and
bench_server.py run their ``main`` through ``run_main``, which also exits as the signal would. A ``launcher.ControlPlane`` installed later chains to
it: it stops its cluster, then raises through here.

``die_with_parent`` covers the one way out no handler sees, SIGKILL: run before exec in a
child (``preexec_fn``), it has the kernel kill the child when the process that started it dies.
``running`` and ``wait_gone`` let a test check that a process really ended.
"""

from __future__ import annotations

import ctypes
import pathlib
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

_PR_SET_PDEATHSIG = 1
SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived; ``exit_code`` is what the signal itself would have left."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def terminate_as_interrupt() -> None:
    """From now on SIGTERM and SIGHUP raise ``Terminated`` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("signal handlers can only be installed from the main thread")
    for sig in SIGNALS:
        signal.signal(sig, _raise)


def run_main(main: Callable[[], int]) -> int:
    """``main()`` with ``terminate_as_interrupt`` on; a termination exits 128 + the signal."""
    terminate_as_interrupt()
    try:
        return main()
    except Terminated as stop:
        print(f"{sys.argv[0]}: {stop}; everything it started is stopped", file=sys.stderr)
        return stop.exit_code


def die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills it when its parent dies.

    SIGKILL, so nothing can hold it up. Only prctl() runs there (no Python locks are
    taken), which keeps ``preexec_fn`` safe even in a process with threads. The signal comes
    when the *thread* that started the child ends, so start children from the main thread
    (as fixtures and scripts do), not from a short-lived worker thread.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting to be reaped has already ended)."""
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pid: int, timeout: float = 10) -> None:
    """Until ``pid`` no longer runs; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while running(pid):
        assert time.monotonic() < deadline, f"process {pid} still running {timeout:.0f}s later"
        time.sleep(0.05)
