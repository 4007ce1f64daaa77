"""The voice-operator command line: CRD and RBAC output, readable start-up failures."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml
from voice_operator import cli, config, crd, rbac

from tests.servers import free_port


def test_crd_command_prints_the_generated_crd(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    assert cli.main(["crd"]) == 0
    assert capsys.readouterr().out == crd.render_yaml()
    out = tmp_path / "crd.yaml"
    assert cli.main(["crd", "--output", str(out)]) == 0
    assert out.read_text() == crd.render_yaml()


def test_rbac_command_lists_the_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rbac"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["rules"] == rbac.RULES and doc["leaseRules"] == rbac.LEASE_RULES
    verbs = {(g, r): set(rule["verbs"]) for rule in doc["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert verbs[("", "pods")] == {"list", "watch"} and verbs[("", "secrets")] == {"get"}
    assert "delete" not in verbs[("voice-service.io", "voiceservices")]


def test_run_needs_a_scope() -> None:
    with pytest.raises(SystemExit):
        cli.main(["run"])


def test_run_without_a_reachable_api_server_exits_2(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "x", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert cli.main(["run", "--namespace", "default", "--metrics-port", "0", "--liveness", ""]) == 2
    assert "cannot reach the Kubernetes API" in capsys.readouterr().err


def test_defaults_from_environment() -> None:
    defaults = config.Defaults.from_env({
        "VOICE_OPERATOR_DEFAULT_IMAGE": "registry.example/tts:1",
        "VOICE_OPERATOR_DEFAULT_STARTUP_SECONDS": "900",
        "VOICE_OPERATOR_DEFAULT_GPU_RESOURCE_NAME": "",
    })
    assert defaults.image == "registry.example/tts:1" and defaults.startup_seconds == 900
    assert defaults.gpu_resource_name == "nvidia.com/gpu"
    with pytest.raises(ValueError, match="VOICE_OPERATOR_DEFAULT_PROBE_PERIOD_SECONDS"):
        config.Defaults.from_env({"VOICE_OPERATOR_DEFAULT_PROBE_PERIOD_SECONDS": "ten"})
