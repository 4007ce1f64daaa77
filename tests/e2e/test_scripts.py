"""The scripts that start an operator stop it on every way out, against the e2e cluster.

scripts/bench_operator.py runs with ``--kubeconfig`` (this session's cluster) and is sent
SIGTERM while its operator reconciles; afterwards neither the operator process nor the
script's namespaces may be left behind.
"""

from __future__ import annotations

import os
import pathlib
import queue
import re
import signal
import subprocess
import sys
import threading

import pytest

from tests import lifetime
from tests.cluster import client

pytestmark = pytest.mark.e2e

REPO = pathlib.Path(__file__).resolve().parents[2]


class Lines:
    """A child's output, line by line, readable with a timeout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._lines.put(line)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} within {timeout:.0f}s; output:\n{''.join(self.seen)}") from None
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match


def test_bench_operator_stopped_by_sigterm_stops_its_operator(cluster: client.Cluster, crd_installed: None) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    bench = subprocess.Popen(
        [sys.executable, "scripts/bench_operator.py", "--sizes", "1", "--kubeconfig", str(cluster.kubeconfig)],
        cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=lifetime.die_with_parent,  # noqa: PLW1509 - even if we are SIGKILLed
    )
    try:
        lines = Lines(bench)
        started = lines.wait_for(r"bench: operator pid (\d+) in namespaces (.+?);", timeout=120)
        operator_pid, namespaces = int(started[1]), started[2].split()
        lines.wait_for(r"bench: 1 VoiceServices", timeout=60)  # the operator is at work
        assert lifetime.running(operator_pid)

        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=120) == 128 + signal.SIGTERM, "".join(lines.seen)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    lifetime.wait_gone(operator_pid, timeout=30)
    for namespace in namespaces:
        found = cluster.kubectl("get", "namespace", namespace, "-o", "jsonpath={.status.phase}", check=False)
        assert found.returncode != 0 or found.stdout == "Terminating", f"namespace {namespace}: {found.stdout}"
