"""Starting the real inference server for tests and benchmarks.

``ServerProcess`` runs ``python -m voice_inference serve`` as a child process on a free
loopback port with the given ``VOICE_*`` settings, waits for it, and stops it by the process
id it started (never by name), on every way out: a start that fails stops it, and the kernel
kills it when the process that started it dies, however it dies (SIGTERM, SIGKILL), where no
``finally`` runs. Used by tests/integration/conftest.py and scripts/bench_server.py, demo*.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests import lifetime


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def stop_process_group(
    process: subprocess.Popen[bytes] | None, grace: float = 15.0, sig: int = signal.SIGTERM
) -> int | None:
    """Stop a child started with ``start_new_session=True`` (and everything it started) by its
    process group id: ``sig``, then SIGKILL after ``grace`` seconds. Returns its exit code."""
    if process is None or process.poll() is not None:
        return None if process is None else process.returncode
    os.killpg(process.pid, sig)
    try:
        return process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


class ServerProcess:
    def __init__(self, env: dict[str, str] | None = None, *, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "VOICE_LOG_LEVEL": "warning", **(env or {})}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, wait_ready: bool = True, timeout: float = 120.0) -> "ServerProcess":
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "voice_inference", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT if self.log_path else subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped together, never by name
            preexec_fn=lifetime.die_with_parent,  # noqa: PLW1509 - even if we are SIGKILLed
        )
        try:
            self.wait("/health/ready" if wait_ready else "/health/live", timeout)
        except BaseException:  # never ready (or interrupted): nobody else would stop it
            self.stop()
            raise
        return self

    def wait(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"server exited with code {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server at {self.url} not answering {path} after {timeout} s")

    def stop(self) -> int | None:
        return stop_process_group(self.process)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
