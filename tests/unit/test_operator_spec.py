"""The VoiceService model: defaults, and the Python twins of the CRD's CEL rules."""

from __future__ import annotations

import pathlib

import pydantic
import pytest
import yaml
from voice_operator import spec

REPO = pathlib.Path(__file__).resolve().parents[2]
MOCK = {"engine": {"provider": "mock"}}


def test_defaults() -> None:
    s = spec.VoiceServiceSpec.model_validate(MOCK)
    assert s.replicas == 1 and s.resources.gpu == 1 and s.image is None
    assert s.rollout.max_surge == 0 and s.rollout.max_unavailable == 1
    assert s.service.port == 80 and s.engine.queue_size == 16


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({}, "s1_mini needs spec.checkpoint"),
        ({**MOCK, "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 2}}, "minReplicas must not exceed maxReplicas"),
        ({"checkpoint": {"source": {}}}, "exactly one of huggingface, s3 or existingClaim"),
        ({"checkpoint": {"source": {"huggingface": {"repo": "a/b"}, "s3": {"uri": "s3://bucket"}}}}, "exactly one of"),
        ({**MOCK, "rollout": {"maxSurge": "0%", "maxUnavailable": 0}}, "cannot both be 0"),
        ({**MOCK, "autoscaling": {"target": {}}}, "exactly one of cpu or podMetric"),
        ({**MOCK, "references": {"storage": "s3"}}, "storage s3 needs references.s3"),
        ({**MOCK, "resources": {"gpu": -1}}, "greater than or equal to 0"),
        ({**MOCK, "resources": {"requests": {"cpu": "lots"}}}, "should match pattern"),
        ({**MOCK, "checkpoint": {"source": {"s3": {"uri": "http://x"}}}}, "should match pattern"),
        ({**MOCK, "unknownField": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_specs_are_rejected_with_the_rule_message(manifest: dict, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        spec.VoiceServiceSpec.model_validate(manifest)


def test_quantities_accept_ints_and_strings() -> None:
    s = spec.VoiceServiceSpec.model_validate({**MOCK, "resources": {"requests": {"cpu": 2, "memory": "8Gi"}}})
    assert s.resources.requests == {"cpu": 2, "memory": "8Gi"}


@pytest.mark.parametrize("name", ["demo", "a", "tts-1"])
def test_valid_names(name: str) -> None:
    assert spec.valid_name(name) is None


@pytest.mark.parametrize("name", ["Demo", "1tts", "a" * 49, "tts-", "t_s"])
def test_invalid_names(name: str) -> None:
    assert spec.valid_name(name)


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path: pathlib.Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == spec.KIND:
            spec.VoiceServiceSpec.model_validate(doc["spec"])
            assert spec.valid_name(doc["metadata"]["name"]) is None
