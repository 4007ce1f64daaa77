"""The real-pod path of `make demo` (scripts/demo_cluster.py chooses it after step 1): the
operator and the VoiceService's pod run from their images on a real node, and the speech
comes through the Service. Everything stays on this machine.

 2. a local control plane (tests/cluster/launcher.py) whose API server listens on
    API_ADDRESS, an address of this machine on a device of its own (API_DEVICE, an empty
    bridge). Pods route to it through their gateway, and it is the `kubernetes` Service's
    endpoint, so in-cluster clients reach the API server as in any cluster (loopback,
    where the API server usually listens here, is each pod's own);
 3. the real node (tests/cluster/node.py): containerd, a kubelet and kube-proxy, both images
    imported from the Docker engine;
 4. `helm install` of the chart with the operator's Deployment on the real node (nodeSelector,
    imagePullPolicy Never), and a wait until its pod holds the operator's leader Lease: the
    operator runs from its image and reaches the API server from the pod;
 5. a CPU-only VoiceService for that node: S1 Mini on the tiny random-weight checkpoint, on a
    `local` PersistentVolume over out/demo-cluster/tiny-checkpoint (`--engine mock`: the mock
    engine, no checkpoint);
 6. a wait until `kubectl get vsvc` shows it Ready: its pod passed the startup and readiness probes;
 7. a sentence through the Service: POST to its cluster IP, which kube-proxy's rules send
    to the pod, saved as a WAV;
 8. the APIs up close (scripts/demo.py), as on the local path.

Clean-up stops the node (its pods' containers, rules and bridge go with it), then the
control plane, then removes API_DEVICE.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import shutil
import subprocess
import time
from typing import IO, Any

import httpx
from demo_steps import (
    DEMO_NAMESPACE,
    OUT,
    RELEASE,
    RELEASE_NAMESPACE,
    REQUEST,
    ROOT,
    SENTENCE,
    TINY_CHECKPOINT,
    StepFailed,
    Steps,
    api_tour,
    detail,
    s1_available,
    save_wav,
    tiny_checkpoint,
)

from tests import chart_support
from tests.cluster import client, launcher, node
from tests.containers import engine

STEPS = 8
API_DEVICE = "voice-api0"
# Held while API_DEVICE exists: a second demo must never delete the device under the first.
API_DEVICE_LOCK = pathlib.Path("/run/voice-service-demo-api.lock")
# Outside the node's pod range (10.88.0.0/24) and every range the cluster hands out.
API_ADDRESS = "10.88.1.1"
NAME = "demo"
LEASE = "voice-operator"  # the chart's leaderElection.leaseName
CLAIM = "tiny-checkpoint"
ON_REAL_NODE = {node.REAL_NODE_LABEL: "true"}
SUMMARY = """The chart's operator ran from its image as a pod on the real node and, with the chart's RBAC,
turned the VoiceService into a Deployment and a Service; the inference image's pod passed its
probes on that node, and the sentence came back through the Service's cluster IP (kube-proxy)."""


# -- can it run here? --------------------------------------------------------------------------


def unavailable_reason(args: argparse.Namespace, bin_dir: pathlib.Path) -> str | None:
    """Why the real path cannot run here (one line), or None when it can."""
    if args.keep:
        return "--keep asks for a cluster that outlives the demo, and the real node stops with the demo"
    docker = engine.Docker()
    reason = docker.unavailable_reason()
    if reason is not None:
        return reason
    missing = [image for image in (engine.OPERATOR_IMAGE, engine.INFERENCE_IMAGE) if not docker.has_image(image)]
    if missing:
        return f"{', '.join(missing)} not built (make images)"
    needs = node.missing_prerequisites(bin_dir)
    if needs:
        return f"the real node needs {', '.join(needs)}"
    if node_busy():
        return f"another run holds the machine's real node ({node.LOCK_FILE})"
    return None


def node_busy() -> bool:
    """Whether another process holds the real node's lock right now."""
    if not node.LOCK_FILE.exists():
        return False
    with open(node.LOCK_FILE) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
    return False


# -- manifests (pure) ----------------------------------------------------------------------------


def chart_values(operator_image: str, inference_image: str) -> dict[str, Any]:
    """The chart's values that put the operator on the real node, from the local images."""
    repository, _, tag = operator_image.rpartition(":")
    return {
        "image.repository": repository,
        "image.tag": tag,
        "image.pullPolicy": "Never",
        "nodeSelector": dict(ON_REAL_NODE),
        "voiceServiceDefaults.image": inference_image,
    }


def checkpoint_volume(path: pathlib.Path, namespace: str, claim: str) -> list[dict[str, Any]]:
    """A `local` PersistentVolume over ``path`` on the real node and the claim bound to it."""
    volume = f"{namespace}-{claim}"
    size = "1Gi"
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadOnlyMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "local": {"path": str(path)},
                "claimRef": {"namespace": namespace, "name": claim},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node.NODE_NAME]}]},
                ]}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": size}},
            },
        },
    ]  # fmt: skip


def voiceservice(name: str, s1_claim: str | None) -> dict[str, Any]:
    """A CPU-only VoiceService for the real node: S1 Mini on the checkpoint in ``s1_claim``,
    or the mock engine when None."""
    spec: dict[str, Any] = {
        "replicas": 1,
        "imagePullPolicy": "Never",
        "nodeSelector": dict(ON_REAL_NODE),
        "resources": {"gpu": 0},
        "engine": {"provider": "mock"},
        # Probed every 2 s, not 10: Ready (what the demo waits for) follows the warm-up closely.
        "probes": {"periodSeconds": 2},
    }
    if s1_claim is not None:
        spec["engine"] = {"provider": "s1_mini", "device": "cpu", "precision": "float32"}
        spec["checkpoint"] = {"source": {"existingClaim": {"name": s1_claim}}}
    return {"apiVersion": "voice-service.io/v1alpha1", "kind": "VoiceService", "metadata": {"name": name}, "spec": spec}


# -- the steps -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Started:
    """What this path started, so that clean-up stops exactly that."""

    api_lock: IO[str] | None = None
    api_device: bool = False
    plane: launcher.ControlPlane | None = None
    plane_dir: pathlib.Path | None = None
    real_node: node.RealNode | None = None
    cluster: client.Cluster | None = None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise StepFailed(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def control_plane(started: Started, steps: Steps, bin_dir: pathlib.Path) -> client.Cluster:
    started.api_lock = open(API_DEVICE_LOCK, "w")  # noqa: SIM115 - held until clean-up
    try:
        fcntl.flock(started.api_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise StepFailed(f"another demo runs its real path ({API_DEVICE_LOCK})") from None
    _ip("link", "delete", API_DEVICE, check=False)  # left by a run that was killed
    _ip("link", "add", API_DEVICE, "type", "bridge")
    started.api_device = True
    _ip("addr", "add", f"{API_ADDRESS}/32", "dev", API_DEVICE)
    _ip("link", "set", API_DEVICE, "up")
    launcher.clean_stale_sessions()
    started.plane_dir = launcher.DEFAULT_DIR / f"demo-{os.getpid()}"
    started.plane = launcher.ControlPlane(started.plane_dir, bin_dir, owned=True, api_address=API_ADDRESS)
    started.plane.start()
    cluster = client.Cluster(
        kubeconfig=started.plane.kubeconfig, bin_dir=bin_dir, local=True, cache_dir=started.plane.run_dir / "kube-cache"
    )
    started.cluster = cluster
    detail(f"etcd, kube-apiserver, controller-manager, scheduler and kwok; the API server at {started.plane.server}")
    detail(f"({API_ADDRESS} is on {API_DEVICE}, a device of this machine: pods reach it, nothing beyond this machine does)")
    [endpoints] = cluster.wait_for("the kubernetes Service's endpoints", lambda: cluster.kubectl_json(
        "get", "endpointslices", "-n", "default", "-l", "kubernetes.io/service-name=kubernetes")["items"])  # fmt: skip
    address = f"{endpoints['endpoints'][0]['addresses'][0]}:{endpoints['ports'][0]['port']}"
    detail(f"service/kubernetes {launcher.SERVICE_CLUSTER_IP}:443 -> {address} (how pods find the API server)")
    steps.facts["kubeconfig"] = f"{cluster.kubeconfig} (that cluster is stopped now)"
    return cluster


def start_node(started: Started, bin_dir: pathlib.Path) -> None:
    assert started.plane is not None
    real = node.RealNode(started.plane.directory, bin_dir, started.plane.server)
    started.real_node = real
    begun = time.monotonic()
    images = [engine.OPERATOR_IMAGE, engine.INFERENCE_IMAGE]
    real.start(images, progress=lambda m: detail(f"{m} ({time.monotonic() - begun:.1f}s)"))
    detail(f"node {node.NODE_NAME} ({node.REAL_NODE_LABEL}=true), pods on bridge {node.NODE_BRIDGE} ({node.NODE_POD_CIDR}); logs in {real.logs}")


def install_chart(steps: Steps, cluster: client.Cluster) -> None:
    values = chart_values(engine.OPERATOR_IMAGE, engine.INFERENCE_IMAGE)
    detail(f"helm install {RELEASE} charts/voice-operator --namespace {RELEASE_NAMESPACE} --create-namespace")
    detail("  " + " ".join(f"--set-json {k}={json.dumps(v)}" for k, v in values.items()))
    cluster.helm(
        "install", RELEASE, str(chart_support.CHART_DIR), "--namespace", RELEASE_NAMESPACE, "--create-namespace",
        *chart_support.set_args(values),
    )  # fmt: skip

    def leading() -> tuple[dict[str, Any], str] | None:
        # Not `helm --wait`: the pod turns Ready at its first readiness probe after kopf is up
        # (every 10 s); the Lease shows the same thing, at once.
        holder = cluster.kubectl(
            "get", "lease", LEASE, "-n", RELEASE_NAMESPACE, "-o", "jsonpath={.spec.holderIdentity}", check=False
        ).stdout  # fmt: skip
        pods = cluster.pods(RELEASE_NAMESPACE, f"app.kubernetes.io/instance={RELEASE}")
        pod = next((p for p in pods if holder.startswith(f"{p['metadata']['name']}-")), None)  # identity: hostname-pid-...
        return (pod, holder) if pod is not None else None

    pod, holder = cluster.wait_for("the operator's pod to hold the leader Lease", leading, timeout=180, interval=0.5)
    [status] = pod["status"]["containerStatuses"]
    detail(f"pod/{pod['metadata']['name']} running on node {pod['spec']['nodeName']} at {pod['status']['podIP']}, "
           f"image {status['image']} ({status['imageID'][:19]}...)")  # fmt: skip
    detail(f"it holds lease/{LEASE} as {holder}: it reaches the API server through service/kubernetes, "
           f"as system:serviceaccount:{RELEASE_NAMESPACE}:{pod['spec']['serviceAccountName']}")  # fmt: skip
    steps.facts["operator pod"] = f"{RELEASE_NAMESPACE}/{pod['metadata']['name']} on {pod['spec']['nodeName']}"


def apply_voiceservice(args: argparse.Namespace, steps: Steps, cluster: client.Cluster) -> None:
    cluster.kubectl("create", "namespace", DEMO_NAMESPACE)
    claim = None
    if args.engine != "mock":
        # Written once; by this venv's engine code where it has one, else by the inference image.
        command = None if s1_available() else [
            "docker", "run", "--rm", "--network=none", "--user=0:0", f"--volume={OUT}:/out",
            engine.INFERENCE_IMAGE, "make-checkpoint", f"/out/{TINY_CHECKPOINT.name}", "--size", "tiny",
        ]  # fmt: skip
        path = tiny_checkpoint(command)
        cluster.apply(checkpoint_volume(path, DEMO_NAMESPACE, CLAIM))
        detail(f"persistentvolume/{DEMO_NAMESPACE}-{CLAIM} (local, on {node.NODE_NAME}) over {path.relative_to(ROOT)}, "
               f"claimed by persistentvolumeclaim/{CLAIM}")  # fmt: skip
        claim = CLAIM
    manifest = voiceservice(NAME, claim)
    cluster.apply(manifest, DEMO_NAMESPACE)
    engine_name = "S1 Mini on the tiny random-weight checkpoint (noise, not words), on the CPU" if claim else "mock (as asked: --engine mock)"
    detail(f"voiceservice/{NAME} in {DEMO_NAMESPACE}: engine {engine_name}")
    detail(f"  spec: {json.dumps(manifest['spec'])}")
    steps.facts["engine"] = engine_name


def wait_ready(steps: Steps, cluster: client.Cluster) -> None:
    def ready() -> bool:
        obj = cluster.kubectl_json("get", "voiceservice", NAME, "-n", DEMO_NAMESPACE)
        return any(c["type"] == "Ready" and c["status"] == "True" for c in obj.get("status", {}).get("conditions", []))

    try:
        # The pod's startup probe allows 600 s for loading and warming up the model.
        cluster.wait_for(f"VoiceService {DEMO_NAMESPACE}/{NAME} Ready", ready, timeout=600, interval=1)
    except client.WaitTimeout:
        status = cluster.kubectl_json("get", "voiceservice", NAME, "-n", DEMO_NAMESPACE).get("status", {})
        conditions = "; ".join(f"{c['type']}={c['status']} ({c.get('reason')}: {c.get('message', '')})" for c in status.get("conditions", []))
        raise StepFailed(f"not Ready after 600s: {conditions or 'no status yet'}") from None
    detail(cluster.kubectl("get", "vsvc", NAME, "-n", DEMO_NAMESPACE, "-o", "wide").stdout.rstrip())
    [pod] = cluster.pods(DEMO_NAMESPACE, f"voice-service.io/service={NAME}")
    [status] = pod["status"]["containerStatuses"]
    started_at = status["state"]["running"]["startedAt"]
    detail(f"pod/{pod['metadata']['name']} on node {pod['spec']['nodeName']} at {pod['status']['podIP']}: "
           f"{status['image']}, running since {started_at}, ready (startup and readiness probes on /health/ready passed)")  # fmt: skip
    steps.facts["inference pod"] = f"{DEMO_NAMESPACE}/{pod['metadata']['name']} on {pod['spec']['nodeName']}"


def speak(steps: Steps, cluster: client.Cluster) -> None:
    service = cluster.kubectl_json("get", "service", NAME, "-n", DEMO_NAMESPACE)
    ip, port = service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"]

    def routed() -> bool:
        # Only once kube-proxy's rule sends the cluster IP to the pod: a packet to it would
        # otherwise follow this machine's default route.
        rules = subprocess.run(["iptables", "-t", "nat", "-S", "KUBE-SERVICES"], capture_output=True, text=True, timeout=30, check=False).stdout
        return any(f"-d {ip}/32" in rule and f"--dport {port}" in rule and "-j KUBE-SVC-" in rule for rule in rules.splitlines())

    cluster.wait_for(f"kube-proxy's rule for {ip}:{port}", routed, timeout=60, interval=0.2)
    started = time.monotonic()
    response = httpx.post(f"http://{ip}:{port}/v1/tts", json=REQUEST, timeout=600)
    if response.status_code != 200:
        raise StepFailed(f"POST http://{ip}:{port}/v1/tts answered {response.status_code}: {response.text[:300]}")
    body = json.dumps({**REQUEST, "text": SENTENCE[:40] + "..."})
    how = f"POST http://{ip}:{port}/v1/tts {body}\n(service/{NAME}'s cluster IP: kube-proxy's rules send it to the pod)"
    save_wav(steps, response.content, how, time.monotonic() - started)


def save_logs(steps: Steps, cluster: client.Cluster) -> None:
    """The pods' logs into OUT before the node goes (a failed run's post-mortem)."""
    for label, namespace, selector, file in (
        ("operator log", RELEASE_NAMESPACE, f"app.kubernetes.io/instance={RELEASE}", "operator.log"),
        ("server log", DEMO_NAMESPACE, f"voice-service.io/service={NAME}", "server.log"),
    ):
        logs = cluster.kubectl("logs", "-n", namespace, "-l", selector, "--tail=-1", check=False, timeout=30)
        if logs.stdout:
            (OUT / file).write_text(logs.stdout)
            steps.facts[label] = str(OUT / file)


def clean_up(steps: Steps, started: Started) -> None:
    if started.cluster is not None and started.real_node is not None:
        with contextlib.suppress(Exception):  # logs are a courtesy; clean-up goes on regardless
            save_logs(steps, started.cluster)
    if started.real_node is not None:
        started.real_node.stop()
        detail("real node stopped (kube-proxy, kubelet, containerd); its pods' containers, rules and bridge removed")
    if started.plane is not None:
        started.plane.stop()
        detail("local control plane stopped (etcd, kube-apiserver, controller-manager, scheduler, kwok)")
        if started.plane_dir is not None:
            shutil.rmtree(started.plane_dir, ignore_errors=True)
    if started.api_device:  # last: nothing may still send to API_ADDRESS once it is gone
        _ip("link", "delete", API_DEVICE, check=False)
        detail(f"{API_DEVICE} ({API_ADDRESS}) removed")
    if started.api_lock is not None:
        started.api_lock.close()


def run(args: argparse.Namespace, steps: Steps, bin_dir: pathlib.Path) -> None:
    """Steps 2-8 of the real path; clean-up on every way out."""
    started = Started()
    try:
        with steps("local Kubernetes control plane, its API server on an address the pods reach"):
            cluster = control_plane(started, steps, bin_dir)
        with steps("the real node: containerd, kubelet, kube-proxy; the images imported"):
            start_node(started, bin_dir)
        with steps("helm install the chart: the operator runs as a pod on the real node"):
            install_chart(steps, cluster)
        with steps("apply a CPU-only VoiceService for the real node"):
            apply_voiceservice(args, steps, cluster)
        with steps("wait until `kubectl get vsvc` shows it Ready (its pod's probes pass)"):
            wait_ready(steps, cluster)
        with steps("synthesize a sentence through the Service"):
            speak(steps, cluster)
        if not args.skip_api_tour:
            with steps("the APIs up close (scripts/demo.py)"):
                api_tour()
    finally:
        with steps.clean_up():
            clean_up(steps, started)
