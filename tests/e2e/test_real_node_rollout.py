"""A spec change rolls out under steady client load with zero failed requests, on the real
node: readiness, the serve-on delay and the drain on SIGTERM, and the PodDisruptionBudget together.

The load runs from this machine (the node itself) to the Service's cluster IP, through
kube-proxy's rules, bounded in count and time; the numbers are printed (pytest -s).
"""

from __future__ import annotations

import concurrent.futures
import statistics
import threading
import time

import httpx
import pytest

from tests.cluster import client, node
from tests.e2e.operator_fixtures import OperatorProcess, voiceservice, wait_condition
from tests.e2e.real_node_fixtures import ON_REAL_NODE

pytestmark = pytest.mark.e2e

MAX_REQUESTS = 20_000
MAX_SECONDS = 240.0
PACE_SECONDS = 0.02  # per worker: about 100 requests/s in all, so the load outlasts the rollout


def test_rollout_under_load_fails_no_request(
    cluster: client.Cluster, namespace: str, operator: OperatorProcess, real_node: node.RealNode
) -> None:
    vs = voiceservice("roll", replicas=2, nodeSelector=dict(ON_REAL_NODE), imagePullPolicy="Never")
    cluster.apply(vs, namespace)
    wait_condition(cluster, namespace, "roll", "Ready", "True", "Available", timeout=240)
    assert cluster.kubectl_json("get", "pdb", "-n", namespace)["items"], "no PodDisruptionBudget"
    service = cluster.kubectl_json("get", "service", "roll", "-n", namespace)
    url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}/v1/tts"
    old_pods = {p["metadata"]["name"] for p in cluster.pods(namespace, "voice-service.io/service=roll")}

    stop = threading.Event()
    results: list[tuple[float, int | str]] = []  # (seconds, status or error name)
    began = time.monotonic()

    def load() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set() and len(results) < MAX_REQUESTS and time.monotonic() - began < MAX_SECONDS:
                start = time.monotonic()
                try:
                    outcome: int | str = http.post(url, json={"text": "Rolling along.", "format": "pcm"}).status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                results.append((time.monotonic() - start, outcome))
                stop.wait(PACE_SECONDS)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        workers = [pool.submit(load) for _ in range(2)]
        cluster.wait_for("steady load", lambda: len(results) >= 20, timeout=60)
        rollout_start = time.monotonic()
        vs["spec"]["env"] = [{"name": "VOICE_LOG_LEVEL", "value": "warning"}]  # a new pod template
        cluster.apply(vs, namespace)
        cluster.kubectl("rollout", "status", "deployment/roll", "-n", namespace, "--timeout=200s", timeout=220)
        rollout_seconds = time.monotonic() - rollout_start
        time.sleep(2)  # a little load on the new pods too
        stop.set()
        for worker in workers:
            worker.result()

    new_pods = {p["metadata"]["name"] for p in cluster.pods(namespace, "voice-service.io/service=roll")}
    failures = [r for r in results if r[1] != 200]
    latencies = sorted(seconds for seconds, _ in results)
    print(
        f"\nrollout under load: {len(results)} requests, {len(failures)} failed, rollout {rollout_seconds:.1f} s, "
        f"latency p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )
    assert not old_pods & new_pods, "the pods were not replaced"
    assert len(results) < MAX_REQUESTS and not failures, failures[:10]
