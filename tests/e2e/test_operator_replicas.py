"""Two operator replicas: one leads and writes, the other stands by and takes over."""

from __future__ import annotations

import signal

import pytest

from tests.cluster import client
from tests.e2e.operator_fixtures import voiceservice, wait_condition

pytestmark = pytest.mark.e2e


def test_one_leader_writes_and_a_standby_takes_over(cluster: client.Cluster, namespace: str, start_operator) -> None:
    first = start_operator([namespace])
    cluster.wait_for("a leader", first.is_leader, timeout=30)
    second = start_operator([namespace])
    cluster.apply(voiceservice("one"), namespace)
    wait_condition(cluster, namespace, "one", "Ready", "True")
    assert first.is_leader() and not second.is_leader()
    writes = ("apply", "patch_status", "delete", "create")
    assert second.api_requests(writes) == 0  # the standby only watched
    assert (second.health() or {}).get("reconciles") == 0

    # The leader dies without releasing its Lease: the standby waits for it to expire.
    first.stop(signal.SIGKILL)
    cluster.wait_for("the standby leads", second.is_leader, timeout=45)
    cluster.apply(voiceservice("two"), namespace)
    wait_condition(cluster, namespace, "two", "Ready", "True")
    assert second.api_requests(writes) > 0

    # A clean stop hands the Lease over at once.
    third = start_operator([namespace])
    second.stop(signal.SIGTERM)
    cluster.wait_for("the third leads", third.is_leader, timeout=15)
    lease = cluster.kubectl_json("get", "lease", "voice-operator", "-n", namespace)
    assert lease["spec"]["leaseTransitions"] >= 2
