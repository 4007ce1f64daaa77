"""The real-pod path of `make demo` (scripts/demo_real.py) offline: the chart values, the
VoiceService and the checkpoint volume it applies, and when it says it cannot run.

The run itself, on the real node, is tests/e2e/test_demo.py.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import pytest
from voice_operator import spec

from tests import chart_support as chart
from tests.cluster import launcher, node
from tests.containers import engine

sys.path.insert(0, str(chart.REPO_ROOT / "scripts"))
import demo_real


def test_chart_values_put_the_operator_on_the_real_node_from_the_local_image() -> None:
    bin_dir = launcher.tools_bin_dir()
    if not (bin_dir / "helm").exists():
        pytest.skip(f"helm is not built yet ({bin_dir}/helm): run `make cluster-tools`")
    objects = chart.render(bin_dir, demo_real.chart_values(engine.OPERATOR_IMAGE, engine.INFERENCE_IMAGE))
    pod = chart.one(objects, "Deployment")["spec"]["template"]["spec"]
    container = chart.operator_container(chart.one(objects, "Deployment"))
    assert pod["nodeSelector"] == {node.REAL_NODE_LABEL: "true"}
    assert (container["image"], container["imagePullPolicy"]) == (engine.OPERATOR_IMAGE, "Never")
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["VOICE_OPERATOR_DEFAULT_IMAGE"] == engine.INFERENCE_IMAGE


@pytest.mark.parametrize("claim", ["tiny-checkpoint", None])
def test_the_voiceservice_is_a_cpu_one_for_the_real_node(claim: str | None) -> None:
    manifest = demo_real.voiceservice("demo", claim)
    parsed = spec.VoiceServiceSpec.model_validate(manifest["spec"])  # the operator's own model
    assert parsed.resources.gpu == 0
    assert parsed.node_selector == {node.REAL_NODE_LABEL: "true"}
    assert parsed.image_pull_policy == "Never"
    if claim is None:
        assert parsed.engine.provider == "mock" and parsed.checkpoint is None
    else:
        assert (parsed.engine.provider, parsed.engine.device) == ("s1_mini", "cpu")
        assert parsed.checkpoint is not None and parsed.checkpoint.source.existing_claim is not None
        assert parsed.checkpoint.source.existing_claim.name == claim


def test_the_checkpoint_claim_binds_to_a_local_volume_on_the_real_node() -> None:
    volume, claim = demo_real.checkpoint_volume(pathlib.Path("/srv/checkpoint"), "voice-demo", "tiny-checkpoint")
    assert volume["spec"]["claimRef"] == {"namespace": "voice-demo", "name": "tiny-checkpoint"}
    assert claim["spec"]["volumeName"] == volume["metadata"]["name"]
    # "" on both: no StorageClass, so no provisioner makes a volume of its own for the claim.
    assert volume["spec"]["storageClassName"] == claim["spec"]["storageClassName"] == ""
    assert claim["spec"]["accessModes"] == volume["spec"]["accessModes"]
    assert volume["spec"]["local"] == {"path": "/srv/checkpoint"}
    [term] = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert term["matchExpressions"][0]["values"] == [node.NODE_NAME]


def _args(**overrides: object) -> argparse.Namespace:
    return argparse.Namespace(**{"keep": False, "engine": "auto", "pods": "auto", **overrides})


def test_it_says_why_it_cannot_run(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    assert "real node stops with the demo" in (demo_real.unavailable_reason(_args(keep=True), tmp_path) or "")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    reason = demo_real.unavailable_reason(_args(), tmp_path) or ""
    assert reason.startswith(("no Docker engine answers", "no docker client on PATH")), reason
