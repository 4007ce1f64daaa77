"""Failures of pods that really run, on the real node (tests/cluster/node.py): a container
killed from outside restarts and the VoiceService shows Degraded, then recovers; a pod
deleted in the middle of a streamed request gives its client a clear end, never a hang."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import httpx
import pytest

from tests.cluster import client, node
from tests.e2e.operator_fixtures import OperatorProcess, condition, get_vs, voiceservice, wait_condition
from tests.e2e.real_node_fixtures import ON_REAL_NODE

pytestmark = pytest.mark.e2e


def real_voiceservice(name: str, **spec: object) -> dict:
    return voiceservice(name, nodeSelector=dict(ON_REAL_NODE), imagePullPolicy="Never", **spec)


class DegradedWatch:
    """Every Degraded=True reason a VoiceService's status shows, from a ``kubectl get --watch``:
    each status write arrives as its own event, so a state that lasts milliseconds is still seen
    (polling can miss it: the mock engine restarts in about a second)."""

    def __init__(self, cluster: client.Cluster, namespace: str, name: str) -> None:
        self.reasons: list[str] = []
        self._process = subprocess.Popen(
            [str(cluster.bin_dir / "kubectl"), "get", "voiceservice", name, "-n", namespace, "--watch", "-o", "json"],
            env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self._process.stdout:  # objects are printed indented, one after another
            buffer += line
            try:
                vs, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                continue
            buffer = buffer.lstrip()[end:]
            degraded = condition(vs, "Degraded")
            if degraded.get("status") == "True":
                self.reasons.append(degraded.get("reason", ""))

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)
        self._reader.join(timeout=10)


def test_killed_container_restarts_and_the_voiceservice_recovers(
    cluster: client.Cluster, namespace: str, operator: OperatorProcess, real_node: node.RealNode
) -> None:
    cluster.apply(real_voiceservice("tts"), namespace)
    wait_condition(cluster, namespace, "tts", "Ready", "True", "Available", timeout=240)
    [pod] = cluster.pods(namespace, "voice-service.io/service=tts")
    watch = DegradedWatch(cluster, namespace, "tts")
    try:
        real_node.kill_container(pod["status"]["containerStatuses"][0]["containerID"])

        def recovered() -> bool:
            vs = get_vs(cluster, namespace, "tts")
            [now] = cluster.pods(namespace, "voice-service.io/service=tts")
            restarts = now["status"]["containerStatuses"][0]["restartCount"]
            healthy = condition(vs, "Ready").get("status") == "True" and condition(vs, "Degraded").get("status") == "False"
            return bool(watch.reasons) and restarts >= 1 and healthy

        cluster.wait_for("Degraded, then recovered after the kill", recovered, timeout=120, interval=0.5)
    finally:
        watch.stop()
    assert set(watch.reasons) <= {"PodsNotReady", "CrashLoopBackOff"}, watch.reasons
    [now] = cluster.pods(namespace, "voice-service.io/service=tts")
    last = now["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 137 and now["metadata"]["uid"] == pod["metadata"]["uid"]  # the same pod, restarted


def test_pod_deleted_mid_request_ends_the_stream_promptly(
    cluster: client.Cluster, namespace: str, operator: OperatorProcess, real_node: node.RealNode
) -> None:
    # Slow audio (200 ms a chunk) so the request is still streaming when the pod goes.
    cluster.apply(real_voiceservice("slow", env=[{"name": "VOICE_MOCK_CHUNK_COST_MS", "value": "200"}]), namespace)
    wait_condition(cluster, namespace, "slow", "Ready", "True", "Available", timeout=240)
    [pod] = cluster.pods(namespace, "voice-service.io/service=slow")
    url = f"http://{pod['status']['podIP']}:8080/v1/tts"  # this machine is the node: the pod IP is on its bridge
    first_bytes = threading.Event()
    outcome: dict[str, object] = {}

    def stream() -> None:
        begin = time.monotonic()
        try:
            with httpx.stream("POST", url, json={"text": "word " * 120, "format": "wav", "streaming": True}, timeout=30) as response:
                outcome["status"] = response.status_code
                for _ in response.iter_bytes():
                    first_bytes.set()
            outcome["end"] = "complete"
        except httpx.HTTPError as exc:
            outcome["end"] = type(exc).__name__
        outcome["seconds"] = time.monotonic() - begin

    worker = threading.Thread(target=stream)
    worker.start()
    assert first_bytes.wait(60), outcome
    deleted = time.monotonic()
    # One second of grace: the kubelet sends SIGTERM, then SIGKILL, mid-stream.
    cluster.kubectl("delete", "pod", pod["metadata"]["name"], "-n", namespace, "--grace-period=1", "--wait=false")
    worker.join(timeout=60)
    assert not worker.is_alive(), "the client hung after its pod was deleted"
    assert outcome["status"] == 200
    # The stream ended, cut (the connection closed with the body incomplete) or whole; not a hang, not a 5xx.
    assert outcome["end"] in ("complete", "RemoteProtocolError", "ReadError"), outcome
    assert time.monotonic() - deleted < 20, outcome
