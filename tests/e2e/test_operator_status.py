"""The status the operator writes is the status the API server keeps.

The API server prunes status fields its schema does not name without a word, so the unit
tests' schema check is matched here by the real thing: statuses computed for every situation
in tests/operator_statuses.py go through the operator's own write path (``writes.write_status``
on a real ``kube.Kube``) and must read back unchanged; and a status the running operator wrote
reads back with every field ``status.compute`` produces.
"""

from __future__ import annotations

from typing import Any

import pytest
from voice_operator import kube, writes

from tests import operator_statuses
from tests.cluster import client
from tests.e2e.operator_fixtures import (
    OperatorProcess,
    get_vs,
    voiceservice,
    wait_condition,
)

pytestmark = pytest.mark.e2e


def _shape(value: Any) -> Any:
    """The keys of a status, nested (conditions by type), without the values."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return {item.get("type"): _shape(item) for item in value}
    return type(value).__name__


def test_computed_statuses_read_back_unchanged(
    cluster: client.Cluster, namespace: str, crd_installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No operator watches this namespace: only this test writes the status.
    cluster.apply(voiceservice("tts"), namespace)
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    api = kube.Kube(kube.load_client(), "voice-operator")
    for name in operator_statuses.SCENARIOS:
        computed = operator_statuses.scenario(name, "tts", namespace)
        result = writes.Result()
        writes.write_status(api, get_vs(cluster, namespace, "tts"), computed, {}, writes.Memory(), result)
        assert result.wrote and not result.retry, name
        assert get_vs(cluster, namespace, "tts")["status"] == computed, name


def test_what_the_operator_wrote_reads_back_whole(cluster: client.Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(voiceservice("tts", replicas=2), namespace)
    vs = wait_condition(cluster, namespace, "tts", "Ready", "True")
    assert operator_statuses.schema_errors(vs["status"]) == []
    assert _shape(vs["status"]) == _shape(operator_statuses.scenario("ready", "tts", namespace))
