"""The operator as a real process against the e2e cluster, and helpers to watch VoiceServices.

Used by tests/e2e/test_operator_*.py (``from tests.e2e.operator_fixtures import ...``) and
by scripts/bench_operator.py. ``OperatorProcess`` runs ``python -m voice_operator run`` with
the cluster's kubeconfig, on free loopback ports for its liveness and metrics endpoints, and
stops it by the pid it started (SIGTERM, then SIGKILL); the kernel kills it if the process
that started it dies first (``lifetime.die_with_parent``). ``crd_installed`` applies the
generated CRD once per session.
"""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import lifetime, servers
from tests.cluster import client, nodes
from tests.servers import free_port

REPO = pathlib.Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "voiceservices.yaml"
# Keeps test pods on kwok's simulated nodes even on a cluster with real ones (kind).
ON_FAKE_NODES = {nodes.FAKE_NODE_LABEL: "true"}
GPU_TOLERATION = {"key": nodes.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


class OperatorProcess:
    """One ``voice-operator run`` child process; ``log`` holds its output."""

    def __init__(self, cluster: client.Cluster, namespaces: list[str] | None, log: pathlib.Path, *extra: str) -> None:
        self.cluster = cluster
        self.namespaces = namespaces
        self.log = log
        self.extra = list(extra)
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> OperatorProcess:
        scope = [arg for ns in self.namespaces for arg in ("--namespace", ns)] if self.namespaces else ["--all-namespaces"]
        argv = [
            sys.executable, "-m", "voice_operator", "run", *scope,
            "--liveness", f"http://127.0.0.1:{self.liveness_port}/healthz",
            "--metrics-port", str(self.metrics_port),
            *self.extra,
        ]
        env = dict(self.cluster.env, PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                preexec_fn=lifetime.die_with_parent,  # noqa: PLW1509 - even if we are SIGKILLed
            )
        deadline = time.monotonic() + timeout
        while self.health() is None:
            if self.process.poll() is not None:
                raise AssertionError(f"operator exited with {self.process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"operator not live after {timeout}s:\n{self.tail()}")
            time.sleep(0.2)
        return self

    def health(self) -> dict[str, Any] | None:
        """kopf's liveness answer (our probes: leader, reconciles), or None when not up."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2) as response:
                return json.loads(response.read() or b"{}")
        except (OSError, ValueError):
            return None

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        """The operator's own samples: (name, labels, value)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        out = []
        for line in text.splitlines():
            if not line.startswith("voice_operator_") or " " not in line:
                continue
            series, value = line.rsplit(" ", 1)
            name, _, rest = series.partition("{")
            labels = dict(part.split("=", 1) for part in rest.rstrip("}").split(",") if "=" in part)
            out.append((name, {k: v.strip('"') for k, v in labels.items()}, float(value)))
        return out

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        return sum(v for n, ls, v in self.metrics() if n == name and all(ls.get(k) == x for k, x in labels.items()))

    def api_requests(self, verbs: tuple[str, ...] = ("apply", "patch_status", "delete", "create", "get"), scope: str = "reconcile") -> float:
        """Requests the operator made (by its reconciles unless ``scope`` says otherwise)."""
        return sum(self.metric("voice_operator_api_requests_total", verb=verb, scope=scope) for verb in verbs)

    def wait_idle(self, timeout: float = 60) -> None:
        """Until no reconcile is queued or running (retries scheduled for later aside)."""
        client.Cluster.wait_for(
            "the operator idle",
            lambda: self.metric("voice_operator_queue_depth") == 0 and self.metric("voice_operator_reconciles_running") == 0,
            timeout=timeout, interval=0.2,
        )

    def is_leader(self) -> bool:
        return bool((self.health() or {}).get("leader"))

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        servers.stop_process_group(self.process, timeout, sig)  # the group this Popen started


@pytest.fixture(scope="session")
def crd_installed(cluster: client.Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    cluster.wait_crd_established("voiceservices.voice-service.io")


@pytest.fixture
def start_operator(
    cluster: client.Cluster, crd_installed: None, tmp_path: pathlib.Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operators (namespace-scoped by default); all stopped at the end, logs shown on failure."""
    started: list[OperatorProcess] = []

    def start(namespaces: list[str] | None, *extra: str) -> OperatorProcess:
        proc = OperatorProcess(cluster, namespaces, tmp_path / f"operator-{len(started)}.log", *extra)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()
        # Captured: pytest shows it only when the test failed.
        print(f"--- {proc.log.name} ---\n{proc.tail(120)}")


@pytest.fixture
def operator(start_operator: Callable[..., OperatorProcess], namespace: str) -> OperatorProcess:
    """One operator watching the test's namespace (its Lease lives there too)."""
    return start_operator([namespace])


# -- VoiceService helpers -------------------------------------------------------------------


def voiceservice(name: str, **spec: Any) -> dict[str, Any]:
    """A mock-engine VoiceService on the simulated nodes; ``spec`` overrides/extends."""
    body: dict[str, Any] = {
        "engine": {"provider": "mock"},
        "resources": {"gpu": 0},
        "nodeSelector": dict(ON_FAKE_NODES),
    }
    body.update(spec)
    return {"apiVersion": "voice-service.io/v1alpha1", "kind": "VoiceService", "metadata": {"name": name}, "spec": body}


def get_vs(cluster: client.Cluster, namespace: str, name: str) -> dict[str, Any]:
    return cluster.kubectl_json("get", "voiceservice", name, "-n", namespace)


def condition(vs: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in vs.get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return cond
    return {}


def wait_condition(
    cluster: client.Cluster, namespace: str, name: str, kind: str, status: str,
    reason: str | None = None, timeout: float = 60,
) -> dict[str, Any]:
    """Wait until condition ``kind`` has ``status`` (and ``reason``); returns the VoiceService."""

    def probe() -> dict[str, Any] | None:
        vs = get_vs(cluster, namespace, name)
        cond = condition(vs, kind)
        if cond.get("status") == status and (reason is None or cond.get("reason") == reason):
            return vs
        return None

    try:
        return cluster.wait_for(f"{kind}={status}{f' ({reason})' if reason else ''} on {namespace}/{name}", probe, timeout=timeout)
    except AssertionError as err:
        vs = get_vs(cluster, namespace, name)
        raise AssertionError(f"{err}\nconditions: {json.dumps(vs.get('status', {}).get('conditions'), indent=1)}") from None


def events(cluster: client.Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items = cluster.kubectl_json(
        "get", "events", "-n", namespace,
        "--field-selector", f"involvedObject.kind=VoiceService,involvedObject.name={name}",
    )["items"]
    return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


def event_reasons(cluster: client.Cluster, namespace: str, name: str) -> list[str]:
    return [e["reason"] for e in events(cluster, namespace, name)]


def exists(cluster: client.Cluster, namespace: str, kind: str, name: str) -> bool:
    return cluster.kubectl("get", kind, name, "-n", namespace, "--ignore-not-found", "-o", "name").stdout.strip() != ""
