"""The Helm chart in a real cluster: schemas, install, RBAC in action, upgrade, uninstall.

Against the local control plane of the pinned Kubernetes release (tests/e2e/conftest.py):

- every object the chart renders passes the API server's own validation (server-side dry
  run with strict field validation, i.e. the OpenAPI schemas of this release) and the
  "restricted" Pod Security Standard, for several value sets;
- `helm install`, then the operator runs as a local process exactly as the chart's pod
  would (its args and env, read from the installed Deployment) with a token of the chart's
  ServiceAccount (TokenRequest): it reconciles a VoiceService with every kind of child to
  Ready, which proves the chart's RBAC is enough; `kubectl auth can-i` proves it is not more;
- the same for a namespace-scoped install (watchNamespaces);
- `helm upgrade` removes what the new values no longer render, and `helm uninstall`
  leaves nothing behind but the CRD (Helm never deletes CRDs, by design).

kwok plays the pods (the operator's own and the inference pods); the operator under test
is the process started here, so a Forbidden anywhere shows up in its log.
"""

from __future__ import annotations

import json
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests import chart_support as chart
from tests.cluster import client, nodes

pytestmark = pytest.mark.e2e

CRD_NAME = "voiceservices.voice-service.io"
GPU_TOLERATION = {"key": nodes.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
# The inference pods land on kwok's nodes, also on a cluster that has real ones (kind).
ON_FAKE_NODES = {nodes.FAKE_NODE_LABEL: "true"}
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}


# -- helpers ---------------------------------------------------------------------------------


def _release() -> str:
    return f"vo-{uuid.uuid4().hex[:6]}"


def _restrict(cluster: client.Cluster, namespace: str) -> None:
    """Enforce the restricted Pod Security Standard in the namespace (the operator's home)."""
    cluster.kubectl("label", "namespace", namespace, "--overwrite", *[f"{k}={v}" for k, v in RESTRICTED.items()])


def _install(cluster: client.Cluster, release: str, namespace: str, values: dict[str, Any], *extra: str) -> str:
    return cluster.helm(
        "install", release, str(chart.CHART_DIR), "--namespace", namespace,
        *chart.set_args(values), *extra,
    ).stdout


def _deployment(cluster: client.Cluster, release: str, namespace: str) -> dict[str, Any]:
    return cluster.kubectl_json("get", "deployment", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}")["items"][0]


def _service_account(deployment: dict[str, Any]) -> str:
    return deployment["spec"]["template"]["spec"]["serviceAccountName"]


def _can_i(cluster: client.Cluster, user: str, *args: str) -> bool:
    result = cluster.kubectl("auth", "can-i", *args, f"--as={user}", check=False)
    if result.returncode not in (0, 1):
        raise AssertionError(f"kubectl auth can-i {' '.join(args)}: {result.stderr}")
    return result.returncode == 0


def _voice_service(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "voice-service.io/v1alpha1", "kind": "VoiceService", "metadata": {"name": name}, "spec": spec}


def _ready(cluster: client.Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    obj = cluster.kubectl_json("get", "voiceservice", name, "-n", namespace)
    conditions = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
    ready = conditions.get("Ready")
    return obj if ready and ready["status"] == "True" else None


def _wait_ready(cluster: client.Cluster, namespace: str, name: str, operator: chart.OperatorProcess) -> dict[str, Any]:
    try:
        return cluster.wait_for(f"VoiceService {namespace}/{name} Ready", lambda: _ready(cluster, namespace, name), timeout=90)
    except client.WaitTimeout as err:
        raise AssertionError(f"{err}\noperator log:\n{operator.log_tail(40)}") from None


def _assert_no_forbidden(cluster: client.Cluster, operator: chart.OperatorProcess, *namespaces: str) -> None:
    """Nothing the operator tried was refused: not in its log, not in the Events it posted.

    Some refusals never reach the log (a Secret check that fails becomes a transient
    condition and a Warning Event on the VoiceService), hence the Events too.
    """
    lines = operator.log().splitlines()
    for namespace in namespaces:
        events = cluster.kubectl_json("get", "events", "-n", namespace)["items"]
        lines += [f"Event {e.get('reason')}: {e.get('message')}" for e in events]
    denied = [line for line in lines if "forbidden" in line.lower() or " 403" in line]
    assert not denied, "the operator was refused something with the chart's RBAC:\n" + "\n".join(denied[:10])


@pytest.fixture
def operator_processes(tmp_path: pathlib.Path) -> Iterator[list[chart.OperatorProcess]]:
    """Operator processes a test starts; each stopped (by pid) at the end, also on failure."""
    started: list[chart.OperatorProcess] = []
    yield started
    for process in started:
        process.stop()


def _start_operator(
    cluster: client.Cluster, release: str, namespace: str, tmp_path: pathlib.Path, started: list[chart.OperatorProcess]
) -> chart.OperatorProcess:
    """The operator as the chart's pod runs it, authenticated as the chart's ServiceAccount."""
    deployment = _deployment(cluster, release, namespace)
    kubeconfig = cluster.service_account_kubeconfig(namespace, _service_account(deployment), tmp_path / f"{release}.kubeconfig")
    process = chart.OperatorProcess(deployment, kubeconfig, tmp_path / f"{release}-operator.log")
    started.append(process)
    return process.start()


@pytest.fixture
def releases(cluster: client.Cluster) -> Iterator[list[tuple[str, str]]]:
    """(release, namespace) pairs a test installs; uninstalled at the end if still there."""
    installed: list[tuple[str, str]] = []
    yield installed
    for release, namespace in installed:
        cluster.helm("uninstall", release, "--namespace", namespace, "--ignore-not-found", check=False)


# -- the API server's validation ---------------------------------------------------------------


def _ensure_crd(cluster: client.Cluster) -> None:
    # Helm installs the CRD only where it is missing; so does this (others may share the cluster).
    if cluster.kubectl("get", "crd", CRD_NAME, check=False).returncode != 0:
        cluster.kubectl("create", "-f", str(chart.CHART_DIR / "crds" / "voiceservices.yaml"))
    cluster.wait_crd_established(CRD_NAME, timeout=30)


def test_rendered_objects_pass_the_api_servers_validation(cluster: client.Cluster, namespace: str) -> None:
    _ensure_crd(cluster)
    _restrict(cluster, namespace)
    watched = [cluster.create_namespace("e2e-watched") for _ in range(2)]
    try:
        variants: dict[str, dict[str, Any]] = {
            "defaults": {},
            "namespaced": {"watchNamespaces": watched, "replicaCount": 2},
            "minimal": {"metrics.enabled": False, "leaderElection.enabled": False, "rbac.create": False,
                        "serviceAccount.create": False, "serviceAccount.name": "default"},
            "everything": {
                "image.digest": "sha256:" + "0" * 64,
                "imagePullSecrets": [{"name": "registry"}],
                "podAnnotations": {"example.com/a": "b"}, "podLabels": {"team": "ml"},
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
                "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 1, "preference": {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}}]}},
                "metrics.service.type": "NodePort", "metrics.service.annotations": {"prometheus.io/scrape": "true"},
                "serviceAccount.annotations": {"example.com/role": "x"},
                "voiceService.create": True,
                "voiceService.spec": {
                    "engine": {"provider": "s1_mini", "compile": True},
                    "checkpoint": {"source": {"huggingface": {"repo": "fishaudio/openaudio-s1-mini"}}},
                    "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 4},
                },
            },
        }
        for name, values in variants.items():
            objects = chart.render(cluster.bin_dir, values, release=f"dry-{name}", namespace=namespace)
            document = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
            result = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=document, check=False)
            assert result.returncode == 0, f"{name}: the API server refused the chart's objects:\n{result.stderr}"
            # PodSecurity admission warns (on Deployments) about anything "restricted" forbids.
            assert "Warning" not in result.stderr, f"{name}: {result.stderr}"
            assert result.stdout.count("(server dry run)") == len(objects)

        # The check has teeth: a field the schema does not know is refused, not dropped.
        deployment = chart.one(chart.render(cluster.bin_dir, namespace=namespace), "Deployment")
        deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
        result = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=json.dumps(deployment), check=False)
        assert result.returncode != 0 and 'unknown field "spec.template.spec.containers[0].livenessProbes"' in result.stderr
    finally:
        for name in watched:
            cluster.delete_namespace(name)


# -- install, then the operator with the chart's RBAC -----------------------------------------


def test_install_and_operator_reconciles_with_the_charts_rbac(
    cluster: client.Cluster, namespace: str, fake_nodes: list[str], tmp_path: pathlib.Path,
    releases: list[tuple[str, str]], operator_processes: list[chart.OperatorProcess],
) -> None:
    _restrict(cluster, namespace)
    release = _release()
    releases.append((release, namespace))
    out = _install(cluster, release, namespace, {
        "voiceServiceDefaults.image": "registry.example/voice-inference:e2e",
        "voiceServiceDefaults.probes.periodSeconds": 7,
        "voiceServiceDefaults.probes.startupSeconds": 120,
    }, "--wait", "--timeout", "90s")
    assert f"kubectl -n {namespace} rollout status deployment/" in out  # NOTES: the next step
    # The operator pod was admitted under "restricted" and became Ready (kwok runs it).
    deployment = _deployment(cluster, release, namespace)
    assert deployment["status"].get("readyReplicas") == 1

    workloads = cluster.create_namespace("e2e-tts")
    try:
        cluster.kubectl("create", "secret", "generic", "api-keys", "-n", workloads, "--from-literal=keys=k1")
        operator = _start_operator(cluster, release, namespace, tmp_path, operator_processes)
        # Every kind of child: Deployment, Service, checkpoint PVC and Job, HPA, PDB; a
        # Secret existence check; Events and status writes.
        cluster.apply(_voice_service(
            "speech",
            replicas=2,
            engine={"provider": "mock"},
            checkpoint={"source": {"huggingface": {"repo": "fishaudio/openaudio-s1-mini", "revision": "main"}}},
            autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 3},
            apiKeySecret={"name": "api-keys", "key": "keys"},
            tolerations=[GPU_TOLERATION],
            nodeSelector=ON_FAKE_NODES,
        ), workloads)
        ready = _wait_ready(cluster, workloads, "speech", operator)
        assert ready["status"]["readyReplicas"] == 2

        children = cluster.kubectl_json(
            "get", "deployments,services,persistentvolumeclaims,jobs,horizontalpodautoscalers,poddisruptionbudgets",
            "-n", workloads, "-l", "voice-service.io/service=speech",
        )["items"]
        assert {c["kind"] for c in children} == {
            "Deployment", "Service", "PersistentVolumeClaim", "Job", "HorizontalPodAutoscaler", "PodDisruptionBudget",
        }
        # The chart's defaults were applied to a manifest that left them out.
        inference = next(c for c in children if c["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
        assert inference["image"] == "registry.example/voice-inference:e2e"
        assert inference["readinessProbe"]["periodSeconds"] == 7
        assert inference["resources"]["limits"][nodes.GPU_RESOURCE] == "1"

        assert f"reconciled {workloads}/speech" in operator.log()
        _assert_no_forbidden(cluster, operator, workloads)
        lease = cluster.kubectl_json("get", "lease", "voice-operator", "-n", namespace)
        assert lease["spec"]["holderIdentity"], "the operator did not take the chart's Lease"
    finally:
        cluster.delete_namespace(workloads)


def test_charts_rbac_grants_nothing_more(cluster: client.Cluster, namespace: str, releases: list[tuple[str, str]]) -> None:
    release = _release()
    releases.append((release, namespace))
    _install(cluster, release, namespace, {})
    user = f"system:serviceaccount:{namespace}:{_service_account(_deployment(cluster, release, namespace))}"
    other = "kube-system"

    must = [
        ("list", "voiceservices.voice-service.io", "--all-namespaces"),
        ("watch", "voiceservices.voice-service.io", "--all-namespaces"),
        ("patch", "voiceservices.voice-service.io", "--subresource=status", "-n", other),
        ("patch", "deployments.apps", "-n", other),
        ("create", "jobs.batch", "-n", other),
        ("delete", "horizontalpodautoscalers.autoscaling", "-n", other),
        ("watch", "pods", "--all-namespaces"),
        ("get", "secrets/some-secret", "-n", other),  # existence checks of referenced Secrets
        ("create", "events", "-n", other),
        ("update", "leases.coordination.k8s.io/voice-operator", "-n", namespace),
    ]
    must_not = [
        ("delete", "nodes"),
        ("get", "nodes"),
        ("list", "secrets", "--all-namespaces"),  # a Secret's existence, never the list of them
        ("watch", "secrets", "-n", other),
        ("create", "secrets", "-n", other),
        ("create", "pods", "-n", other),
        ("delete", "pods", "-n", other),
        ("create", "pods/exec", "-n", other),
        ("get", "configmaps", "-n", other),
        ("create", "serviceaccounts/token", "-n", other),
        ("update", "deployments.apps", "-n", other),  # server-side apply patches; no PUT
        ("delete", "deployments.apps", "-n", other),  # garbage collection removes it
        ("patch", "events", "-n", other),  # each Event is created once
        ("patch", "voiceservices.voice-service.io", "-n", other),  # the user's spec is not ours
        ("delete", "voiceservices.voice-service.io", "-n", other),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("escalate", "clusterroles.rbac.authorization.k8s.io"),
        ("impersonate", "users"),
        ("delete", "namespaces"),
        ("update", "leases.coordination.k8s.io/kube-scheduler", "-n", namespace),  # only its own Lease
        ("update", "leases.coordination.k8s.io/voice-operator", "-n", other),
    ]
    wrong = [f"can {' '.join(a)}" for a in must_not if _can_i(cluster, user, *a)]
    wrong += [f"cannot {' '.join(a)}" for a in must if not _can_i(cluster, user, *a)]
    assert not wrong, f"{user}:\n" + "\n".join(wrong)


def test_namespaced_install_sees_only_its_namespaces(
    cluster: client.Cluster, namespace: str, fake_nodes: list[str], tmp_path: pathlib.Path,
    releases: list[tuple[str, str]], operator_processes: list[chart.OperatorProcess],
) -> None:
    watched, unwatched = cluster.create_namespace("e2e-team"), cluster.create_namespace("e2e-other")
    try:
        release = _release()
        releases.append((release, namespace))
        _install(cluster, release, namespace, {"watchNamespaces": [watched]})
        user = f"system:serviceaccount:{namespace}:{_service_account(_deployment(cluster, release, namespace))}"
        assert _can_i(cluster, user, "patch", "deployments.apps", "-n", watched)
        assert not _can_i(cluster, user, "patch", "deployments.apps", "-n", unwatched)
        assert not _can_i(cluster, user, "list", "voiceservices.voice-service.io", "--all-namespaces")
        assert not _can_i(cluster, user, "get", "secrets/x", "-n", unwatched)

        operator = _start_operator(cluster, release, namespace, tmp_path, operator_processes)
        manifest = _voice_service("speech", engine={"provider": "mock"}, resources={"gpu": 0}, nodeSelector=ON_FAKE_NODES)
        cluster.apply(manifest, watched)
        cluster.apply(manifest, unwatched)
        _wait_ready(cluster, watched, "speech", operator)
        _assert_no_forbidden(cluster, operator, watched)
        # Outside its namespaces the operator neither looks nor writes.
        assert "status" not in cluster.kubectl_json("get", "voiceservice", "speech", "-n", unwatched)
        assert not cluster.kubectl_json("get", "deployments", "-n", unwatched)["items"]
    finally:
        cluster.delete_namespace(watched)
        cluster.delete_namespace(unwatched)


# -- upgrade and uninstall ---------------------------------------------------------------------


def _manifest_objects(cluster: client.Cluster, release: str, namespace: str) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of what the release's manifest holds (CRDs are not in it)."""
    text = cluster.helm("get", "manifest", release, "--namespace", namespace).stdout
    out = set()
    for doc in yaml.safe_load_all(text):
        if doc:
            out.add((doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]))
    return out


def _exists(cluster: client.Cluster, kind: str, namespace: str, name: str) -> bool:
    args = ["get", kind, name, "--ignore-not-found", "-o", "name"] + (["-n", namespace] if namespace else [])
    return bool(cluster.kubectl(*args).stdout.strip())


def test_upgrade_and_uninstall_leave_no_orphans(
    cluster: client.Cluster, namespace: str, fake_nodes: list[str], tmp_path: pathlib.Path,
    releases: list[tuple[str, str]], operator_processes: list[chart.OperatorProcess],
) -> None:
    release = _release()
    releases.append((release, namespace))
    spec: dict[str, Any] = {"engine": {"provider": "mock"}, "resources": {"gpu": 0}, "nodeSelector": ON_FAKE_NODES}
    _install(cluster, release, namespace, {"voiceService.create": True, "voiceService.spec": spec})
    before = _manifest_objects(cluster, release, namespace)
    assert {"ClusterRole", "ClusterRoleBinding", "Service", "VoiceService", "Lease"} <= {kind for kind, _, _ in before}

    # Upgrade: namespace-scoped, no metrics, two replicas of the VoiceService.
    cluster.helm(
        "upgrade", release, str(chart.CHART_DIR), "--namespace", namespace, "--reuse-values",
        *chart.set_args({"watchNamespaces": [namespace], "metrics.enabled": False, "voiceService.spec.replicas": 2}),
    )
    after = _manifest_objects(cluster, release, namespace)
    dropped = before - after
    assert {kind for kind, _, _ in dropped} == {"ClusterRole", "ClusterRoleBinding", "Service"}
    for kind, ns, name in dropped:
        assert not _exists(cluster, kind, ns, name), f"helm upgrade left {kind} {ns}/{name} behind"
    assert ("Role", namespace, f"{release}-voice-operator") in after
    assert cluster.kubectl_json("get", "voiceservice", "voice", "-n", namespace)["spec"]["replicas"] == 2
    args = chart.operator_container(_deployment(cluster, release, namespace))["args"]
    assert f"--namespace={namespace}" in args and "--all-namespaces" not in args

    # The upgraded operator reconciles the chart's own VoiceService, so it has children to clean up.
    operator = _start_operator(cluster, release, namespace, tmp_path, operator_processes)
    _wait_ready(cluster, namespace, "voice", operator)
    _assert_no_forbidden(cluster, operator, namespace)
    operator.stop()

    cluster.helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "60s")
    releases.remove((release, namespace))
    for kind, ns, name in before | after:
        assert not _exists(cluster, kind, ns, name), f"helm uninstall left {kind} {ns}/{name} behind"

    def leftovers() -> list[str]:
        kinds = "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,leases,voiceservices,jobs,persistentvolumeclaims,horizontalpodautoscalers,poddisruptionbudgets"
        by_release = cluster.kubectl("get", kinds, "-n", namespace, "-l", f"app.kubernetes.io/instance={release}", "-o", "name").stdout.split()
        by_owner = cluster.kubectl("get", kinds, "-n", namespace, "-l", "voice-service.io/service=voice", "-o", "name").stdout.split()
        cluster_wide = cluster.kubectl("get", "clusterroles,clusterrolebindings", "-l", f"app.kubernetes.io/instance={release}", "-o", "name").stdout.split()
        return by_release + by_owner + cluster_wide

    # Pods, ReplicaSets and the VoiceService's children go by garbage collection, a moment later.
    cluster.wait_for("the garbage collector to remove the release's dependents", lambda: not leftovers(), timeout=60)
    assert not leftovers()
    assert _exists(cluster, "crd", "", CRD_NAME), "Helm keeps CRDs on uninstall (deleting one deletes every VoiceService)"
