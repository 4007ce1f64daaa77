"""The generated CRD: committed copies match the model, and the schema is structural."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml
from voice_operator import crd, spec

REPO = pathlib.Path(__file__).resolve().parents[2]
COPIES = [REPO / "crds" / "voiceservices.yaml", REPO / "charts" / "voice-operator" / "crds" / "voiceservices.yaml"]


@pytest.mark.parametrize("path", COPIES, ids=lambda p: str(p.relative_to(REPO)))
def test_committed_crd_matches_the_model(path: pathlib.Path) -> None:
    if not path.exists():
        if path == COPIES[0]:
            pytest.fail(f"{path} is missing: run `make crd`")
        pytest.skip(f"{path.relative_to(REPO)} not there yet (the chart copies the generated file)")
    assert path.read_text() == crd.render_yaml(), f"{path.relative_to(REPO)} is stale: run `make crd`"


def _walk(node: Any, where: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((where, node))
        for key, value in node.get("properties", {}).items():
            out += _walk(value, f"{where}.{key}")
        if isinstance(node.get("items"), dict):
            out += _walk(node["items"], f"{where}[]")
        if isinstance(node.get("additionalProperties"), dict):
            out += _walk(node["additionalProperties"], f"{where}{{}}")
    return out


def test_schema_is_structural() -> None:
    root = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for where, node in _walk(root):
        assert "$ref" not in node and "title" not in node, where
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], where
        else:
            assert "anyOf" not in node and "allOf" not in node and "oneOf" not in node, where
            assert "type" in node, f"{where} has no type"
        assert node.get("default", "") is not None, f"{where} has a null default"


def test_names_columns_and_subresources() -> None:
    doc = crd.build_crd()
    assert doc["metadata"]["name"] == "voiceservices.voice-service.io"
    names = doc["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == ("VoiceService", "voiceservices", ["vsvc"])
    version = doc["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["storage"] is True
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Ready", "Replicas", "Endpoint", "Age"]


def test_defaults_ranges_enums_and_rules_come_from_the_model() -> None:
    props = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    engine = props["engine"]["properties"]
    assert engine["provider"]["enum"] == ["s1_mini", "mock"]
    assert engine["queueSize"]["minimum"] == 1
    assert props["replicas"]["default"] == 1
    assert props["autoscaling"]["default"]["target"] == {"cpu": {"averageUtilization": 80}}
    assert "image" not in props or "default" not in props["image"]  # the operator's default applies
    rules = [r["rule"] for r in props["autoscaling"]["x-kubernetes-validations"]]
    assert rules == ["self.minReplicas <= self.maxReplicas"]
    size = props["checkpoint"]["properties"]["storage"]["properties"]["size"]
    assert size["x-kubernetes-int-or-string"] and size["pattern"] == spec.QUANTITY_PATTERN


def test_yaml_has_no_aliases() -> None:
    text = crd.render_yaml()
    assert "&id" not in text and "*id" not in text
    assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition"
