"""The Helm chart offline: lint, what `helm template` renders, and what values.schema.json refuses.

No cluster needed, only the `helm` built by scripts/build-cluster-tools.sh (the tests skip,
saying so, where it is not built yet). The checks that need the API server (the rendered
objects against the pinned release's schemas, install, RBAC in action) are in
tests/e2e/test_chart.py. Where the chart repeats something the operator defines (RBAC
rules, CLI flags, the defaults' variables), a test here compares the two, so
neither can drift alone.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
from typing import Any

import pytest
import yaml
from voice_operator import cli, config, rbac, spec

from tests import chart_support as chart
from tests.cluster import launcher

REPO_ROOT = chart.REPO_ROOT
CHART = chart.CHART_DIR


@pytest.fixture(scope="module")
def bin_dir() -> pathlib.Path:
    path = launcher.tools_bin_dir()
    if not (path / "helm").exists():
        pytest.skip(f"helm is not built yet ({path}/helm): run `make cluster-tools`")
    return path


@pytest.fixture(scope="module")
def default_objects(bin_dir: pathlib.Path) -> list[dict[str, Any]]:
    return chart.render(bin_dir)


def _triples(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """RBAC rules as (apiGroup, resource, verb) grants, however they are grouped."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


# -- lint and files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"watchNamespaces": ["team-a", "team-b"], "leaderElection.enabled": False, "metrics.enabled": False},
        {"voiceService.create": True, "voiceService.spec": {"engine": {"provider": "mock"}}},
    ],
    ids=["defaults", "namespaced", "with-voiceservice"],
)
def test_lint_strict(bin_dir: pathlib.Path, values: dict[str, Any]) -> None:
    out = chart.helm(bin_dir, "lint", "--strict", str(CHART), *chart.set_args(values))
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_chart_ships_only_the_voiceservice_crd() -> None:
    # That the chart's copy equals the generated CRD is checked by test_operator_crd.py
    # (it compares both copies with the model; `make crd` rewrites both).
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == ["voiceservices.yaml"]


def test_values_are_documented_line_by_line() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = [
        f"line {n + 1}: {line.strip()}"
        for n, line in enumerate(lines)
        if re.match(r"^\s*[A-Za-z][\w-]*:", line) and not (n and lines[n - 1].strip().startswith("#"))
    ]
    assert not undocumented, "values.yaml keys without a comment above them:\n" + "\n".join(undocumented)


def test_chart_versions_match_the_project() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert version is not None
    assert meta["appVersion"] == version.group(1)
    # The default images are this release's.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["voiceServiceDefaults"]["image"].endswith(f":{meta['appVersion']}")


# -- the operator Deployment -----------------------------------------------------------------


def test_deployment_args_are_the_operators_flags(default_objects: list[dict[str, Any]]) -> None:
    deployment = chart.one(default_objects, "Deployment")
    args = chart.operator_container(deployment)["args"]
    parsed = cli._parser().parse_args(args)  # the operator's own parser: unknown flags fail here
    assert parsed.command == "run"
    assert parsed.all_namespaces is True
    assert parsed.leader_election is True
    assert parsed.leader_election_namespace == "voice-system"
    assert parsed.metrics_port == 9090


def test_namespaced_install_watches_only_listed_namespaces(bin_dir: pathlib.Path) -> None:
    objects = chart.render(bin_dir, {"watchNamespaces": ["team-a", "team-b"]})
    deployment = chart.one(objects, "Deployment")
    parsed = cli._parser().parse_args(chart.operator_container(deployment)["args"])
    assert parsed.namespaces == ["team-a", "team-b"] and not parsed.all_namespaces
    assert not chart.find(objects, "ClusterRole") and not chart.find(objects, "ClusterRoleBinding")
    roles = {r["metadata"]["namespace"]: r for r in chart.find(objects, "Role") if not r["metadata"]["name"].endswith("-leader-election")}
    bindings = {b["metadata"]["namespace"] for b in chart.find(objects, "RoleBinding") if not b["metadata"]["name"].endswith("-leader-election")}
    assert set(roles) == {"team-a", "team-b"} == bindings
    for role in roles.values():
        assert _triples(role["rules"]) == _triples(rbac.RULES)


def test_liveness_probe_targets_kopfs_endpoint(default_objects: list[dict[str, Any]]) -> None:
    container = chart.operator_container(chart.one(default_objects, "Deployment"))
    liveness = next(a for a in container["args"] if a.startswith("--liveness="))
    match = re.fullmatch(r"--liveness=http://0\.0\.0\.0:(\d+)(/\S+)", liveness)
    assert match, liveness
    probe = container["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert probe["path"] == match.group(2)
    assert ports[probe["port"]] == int(match.group(1))


def test_restricted_security_context(default_objects: list[dict[str, Any]]) -> None:
    pod = chart.one(default_objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsUser"] != 0
    container = chart.operator_container(chart.one(default_objects, "Deployment"))
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_voiceservice_defaults_reach_the_operator_config(bin_dir: pathlib.Path, default_objects: list[dict[str, Any]]) -> None:
    # With the chart's default values the operator gets exactly its built-in defaults.
    env = chart.pod_env(chart.one(default_objects, "Deployment"))
    assert config.Defaults.from_env(env) == config.Defaults()
    # Every default the operator reads is set by the chart, and nothing else under that prefix.
    fields = {f"VOICE_OPERATOR_DEFAULT_{f.name.upper()}" for f in config.Defaults.__dataclass_fields__.values()}
    assert {k for k in env if k.startswith("VOICE_OPERATOR_DEFAULT_")} == fields

    custom = chart.render(bin_dir, {
        "voiceServiceDefaults": {
            "image": "registry.example/voice-inference:7",
            "fetchImage": "",
            "gpuResourceName": "nvidia.com/mig-1g.10gb",
            "probes": {"startupSeconds": 900, "startupSecondsCompile": 2400, "periodSeconds": 7, "timeoutSeconds": 3, "failureThreshold": 4},
            "clusterDomain": "corp.internal",
        },
        "image.repository": "registry.example/voice-operator",
        "image.tag": "7",
    })
    defaults = config.Defaults.from_env(chart.pod_env(chart.one(custom, "Deployment")))
    assert defaults == config.Defaults(
        image="registry.example/voice-inference:7",
        fetch_image="registry.example/voice-operator:7",  # the operator's own image by default
        gpu_resource_name="nvidia.com/mig-1g.10gb",
        startup_seconds=900,
        startup_seconds_compile=2400,
        probe_period_seconds=7,
        probe_timeout_seconds=3,
        probe_failure_threshold=4,
        cluster_domain="corp.internal",
    )


def test_image_digest_pins_the_image(bin_dir: pathlib.Path) -> None:
    digest = "sha256:" + "a" * 64
    objects = chart.render(bin_dir, {"image.digest": digest})
    assert chart.operator_container(chart.one(objects, "Deployment"))["image"] == f"ghcr.io/voice-service/voice-operator@{digest}"


# -- RBAC ------------------------------------------------------------------------------------


def test_cluster_rbac_is_exactly_what_the_operator_uses(default_objects: list[dict[str, Any]]) -> None:
    role = chart.one(default_objects, "ClusterRole")
    assert _triples(role["rules"]) == _triples(rbac.RULES)
    binding = chart.one(default_objects, "ClusterRoleBinding")
    account = chart.one(default_objects, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "voice-system"}]
    assert chart.one(default_objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_leader_election_rbac_is_one_lease(default_objects: list[dict[str, Any]]) -> None:
    role = chart.one(default_objects, "Role")
    assert role["metadata"]["namespace"] == "voice-system"
    assert _triples(role["rules"]) == _triples(rbac.LEASE_RULES)
    # get/update only on the chart's own Lease (create cannot be limited by name).
    for rule in role["rules"]:
        if set(rule["verbs"]) != {"create"}:
            assert rule["resourceNames"] == ["voice-operator"]
    lease = chart.one(default_objects, "Lease")
    assert lease["metadata"]["name"] == "voice-operator"


def test_no_rbac_when_disabled(bin_dir: pathlib.Path) -> None:
    objects = chart.render(bin_dir, {"rbac.create": False, "serviceAccount.create": False, "serviceAccount.name": "ops"})
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"}
    assert chart.one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_service_selects_the_operator_pods(default_objects: list[dict[str, Any]]) -> None:
    service = chart.one(default_objects, "Service")
    deployment = chart.one(default_objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"] for p in chart.operator_container(deployment)["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in ports


def test_metrics_off(bin_dir: pathlib.Path) -> None:
    objects = chart.render(bin_dir, {"metrics.enabled": False})
    assert not chart.find(objects, "Service")
    container = chart.operator_container(chart.one(objects, "Deployment"))
    assert "--metrics-port=0" in container["args"]
    assert [p["name"] for p in container["ports"]] == ["healthz"]


def test_service_monitor(bin_dir: pathlib.Path) -> None:
    with pytest.raises(chart.HelmError, match="no monitoring.coreos.com/v1 ServiceMonitor CRD"):
        chart.render(bin_dir, {"metrics.serviceMonitor.enabled": True})
    objects = chart.render(
        bin_dir, {"metrics.serviceMonitor.enabled": True, "metrics.serviceMonitor.labels": {"release": "prom"}},
        extra=["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"],
    )
    monitor = chart.one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= chart.one(objects, "Service")["metadata"]["labels"].items()


# -- the optional VoiceService ---------------------------------------------------------------


def test_voiceservice_from_values(bin_dir: pathlib.Path) -> None:
    assert not chart.find(chart.render(bin_dir), "VoiceService")
    wanted = {
        "engine": {"provider": "s1_mini"},
        "checkpoint": {"source": {"huggingface": {"repo": "fishaudio/openaudio-s1-mini"}}},
        "replicas": 2,
    }
    objects = chart.render(bin_dir, {"voiceService.create": True, "voiceService.name": "tts", "voiceService.spec": wanted})
    service = chart.one(objects, "VoiceService", "tts")
    assert service["apiVersion"] == spec.API_VERSION
    assert service["metadata"]["namespace"] == "voice-system"
    assert service["spec"] == wanted
    spec.VoiceServiceSpec.model_validate(service["spec"])


# -- values.schema.json ----------------------------------------------------------------------


def test_schema_is_valid_json_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) == set(schema["properties"])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"watchNamespace": ["a"]}, "additional properties 'watchNamespace' not allowed"),
        ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
        ({"watchNamespaces": ["Team_A"]}, "at '/watchNamespaces/0': 'Team_A' does not match pattern"),
        ({"image.pullPolicy": "Sometimes"}, "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"),
        ({"voiceServiceDefaults.gpuResourceName": "gpu"}, "at '/voiceServiceDefaults/gpuResourceName': 'gpu' does not match pattern"),
        ({"voiceServiceDefaults.probes.startupSeconds": 5}, "at '/voiceServiceDefaults/probes/startupSeconds': minimum: got 5, want 10"),
        ({"metrics.port": 70000}, "at '/metrics/port': maximum: got 70,000, want 65,535"),
        ({"logLevel": "verbose"}, "at '/logLevel': value must be one of 'debug', 'info', 'warning', 'error'"),
        ({"resources.limits.memory": "lots"}, "at '/resources/limits/memory'"),
        ({"voiceService.name": "Bad_Name"}, "at '/voiceService/name': 'Bad_Name' does not match pattern"),
        ({"image.digest": "latest"}, "at '/image/digest': 'latest' does not match pattern"),
        ({"serviceAccount.name": "Ops_Bot"}, "at '/serviceAccount/name': 'Ops_Bot' does not match pattern"),
        ({"voiceService.namespace": "Team A"}, "at '/voiceService/namespace': 'Team A' does not match pattern"),
        ({"priorityClassName": "High_Prio"}, "at '/priorityClassName': 'High_Prio' does not match pattern"),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, dict) else None,
)
def test_schema_rejects_bad_values(bin_dir: pathlib.Path, values: dict[str, Any], message: str) -> None:
    with pytest.raises(chart.HelmError) as failure:
        chart.render(bin_dir, values)
    text = str(failure.value)
    assert "values don't meet the specifications of the schema" in text
    assert message in text, text


def test_missing_service_account_name_is_explained(bin_dir: pathlib.Path) -> None:
    with pytest.raises(chart.HelmError, match="serviceAccount.name is required when serviceAccount.create is false"):
        chart.render(bin_dir, {"serviceAccount.create": False})


def test_helm_set_string_typo_is_rejected_by_install_path(bin_dir: pathlib.Path) -> None:
    # What a person types (--set, not --set-json) gets the same readable refusal.
    result = subprocess.run(
        [str(bin_dir / "helm"), "template", "r", str(CHART), "--kube-version", chart.kube_version(bin_dir),
         "--set", "workers=0"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode != 0
    assert "at '/workers': minimum: got 0, want 1" in result.stderr
