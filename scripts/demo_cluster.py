"""The whole product on one machine (`make demo`): Kubernetes, the chart, the operator, speech.

No cluster and no GPU needed. Step 1 builds the Kubernetes tools once (scripts/build-cluster-tools.sh);
then one of two paths (`--pods auto|real|local`), each step printed and timed as it runs:

* real (scripts/demo_real.py), where a Docker engine answers, both images are built and the
  real node can run (tests/cluster/node.py): the operator and the VoiceService's pod run
  from their images on a real node, and the speech comes through the Service;
* local, otherwise (one line says why):
 2. a local control plane with simulated GPU nodes (tests/cluster/launcher.py), or the one
    `make cluster-up` already runs,
 3. `helm install` of charts/voice-operator,
 4. the operator, as a local process that runs exactly what the chart's pod would run (its
    args and env) with a token of the chart's ServiceAccount, so it has the chart's RBAC,
 5. `kubectl apply -f examples/voiceservice.yaml`,
 6. a wait until `kubectl get vsvc` shows it Ready (kwok plays its pods),
 7. the inference server, started locally as that VoiceService's pod would run it: the env of
    the generated Deployment, with the pod's paths mapped to folders here, and the S1 Mini
    engine on a tiny random-weight checkpoint when the [s1] extra is installed, else mock,
 8. a sentence synthesized over HTTP and saved as a WAV,
 9. the APIs up close: scripts/demo.py (Fish and OpenAI APIs, a cloned voice),

then a summary, and clean-up: every process it started is stopped by its pid, and what it
installed into a cluster it did not start is removed (`--keep`, local path only, leaves the
cluster, release and VoiceService running instead). A failure names the step and the reason.

Usage: python scripts/demo_cluster.py [--pods auto|real|local] [--keep] [--engine auto|s1|mock] [--skip-api-tour]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shutil
import sys
import time
from typing import Any

import httpx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/ (scripts/ is on the path already)

import demo_real
from demo_steps import (
    DEMO_NAMESPACE,
    OUT,
    RELEASE,
    RELEASE_NAMESPACE,
    REQUEST,
    ROOT,
    SENTENCE,
    StepFailed,
    Steps,
    api_tour,
    detail,
    s1_available,
    save_wav,
    say,
    tiny_checkpoint,
    tools,
)

from tests import chart_support, lifetime
from tests.cluster import client, launcher
from tests.servers import ServerProcess

EXAMPLE = ROOT / "examples" / "voiceservice.yaml"


@dataclasses.dataclass
class Demo:
    """What the local path started or created, so that clean-up undoes exactly that."""

    args: argparse.Namespace
    steps: Steps
    plane: launcher.ControlPlane | None = None  # a control plane this run started and owns
    plane_dir: pathlib.Path | None = None
    cluster: client.Cluster | None = None
    installed_release: bool = False
    created_namespaces: list[str] = dataclasses.field(default_factory=list)
    operator: chart_support.OperatorProcess | None = None
    server: ServerProcess | None = None

    @property
    def facts(self) -> dict[str, str]:
        return self.steps.facts


# -- the steps of the local path ---------------------------------------------------------------


def control_plane(demo: Demo, bin_dir: pathlib.Path) -> client.Cluster:
    state = launcher.running_state(launcher.DEFAULT_DIR)
    if state is None and demo.args.keep:
        # A cluster that outlives the demo, stopped later by `make cluster-down`.
        state = launcher.up(launcher.DEFAULT_DIR)
        detail("started; it keeps running after the demo (stop it with `make cluster-down`)")
    elif state is not None:
        detail(f"reusing the cluster `make cluster-up` started at {state.server}")
    if state is not None:
        cluster = client.Cluster(
            kubeconfig=pathlib.Path(state.kubeconfig), bin_dir=pathlib.Path(state.bin_dir), local=True,
            cache_dir=launcher.DEFAULT_DIR / "run" / "kube-cache",
        )
    else:
        # The demo's own cluster: stopped at the end, also on Ctrl-C or SIGTERM.
        launcher.clean_stale_sessions()
        demo.plane_dir = launcher.DEFAULT_DIR / f"demo-{os.getpid()}"
        demo.plane = launcher.ControlPlane(demo.plane_dir, bin_dir, owned=True)
        demo.plane.start()
        detail(f"etcd, kube-apiserver, controller-manager, scheduler and kwok at {demo.plane.server}")
        cluster = client.Cluster(
            kubeconfig=demo.plane.kubeconfig, bin_dir=bin_dir, local=True, cache_dir=demo.plane.run_dir / "kube-cache"
        )
    gpus = {n["metadata"]["name"]: n["status"]["allocatable"].get("nvidia.com/gpu", "0") for n in cluster.fake_nodes()}
    detail("simulated nodes: " + ", ".join(f"{name} ({count} GPU)" for name, count in sorted(gpus.items())))
    demo.cluster = cluster
    demo.facts["kubeconfig"] = str(cluster.kubeconfig)
    return cluster


def helm_install(demo: Demo, cluster: client.Cluster) -> dict[str, Any]:
    existing = cluster.helm("status", RELEASE, "--namespace", RELEASE_NAMESPACE, check=False).returncode == 0
    if not existing and cluster.kubectl("get", "namespace", RELEASE_NAMESPACE, check=False).returncode != 0:
        cluster.kubectl("create", "namespace", RELEASE_NAMESPACE)
        demo.created_namespaces.append(RELEASE_NAMESPACE)
    detail(f"helm upgrade --install {RELEASE} charts/voice-operator --namespace {RELEASE_NAMESPACE} --wait")
    cluster.helm(
        "upgrade", "--install", RELEASE, str(chart_support.CHART_DIR), "--namespace", RELEASE_NAMESPACE,
        "--wait", "--timeout", "120s",
    )
    demo.installed_release = not existing
    objects = cluster.helm("get", "manifest", RELEASE, "--namespace", RELEASE_NAMESPACE).stdout
    kinds = sorted({line.split(":", 1)[1].strip() for line in objects.splitlines() if line.startswith("kind:")})
    detail(f"CRD voiceservices.voice-service.io, and {', '.join(kinds)}")
    deployments = cluster.kubectl_json("get", "deployments", "-n", RELEASE_NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}")
    deployment = deployments["items"][0]
    detail(
        f"deployment/{deployment['metadata']['name']}: {deployment['status'].get('readyReplicas', 0)}/"
        f"{deployment['spec']['replicas']} ready (kwok plays its pod; its container runs here in the next step)"
    )
    return deployment


def start_operator(demo: Demo, cluster: client.Cluster, deployment: dict[str, Any]) -> None:
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    kubeconfig = cluster.service_account_kubeconfig(RELEASE_NAMESPACE, account, OUT / "operator.kubeconfig")
    operator = chart_support.OperatorProcess(deployment, kubeconfig, OUT / "operator.log")
    demo.operator = operator
    operator.start()
    assert operator.process is not None
    detail(f"voice-operator {' '.join(operator.args)}")
    detail(f"as system:serviceaccount:{RELEASE_NAMESPACE}:{account} (a TokenRequest token: the chart's RBAC, nothing more)")
    detail(f"pid {operator.process.pid}; liveness {operator.liveness_url}; metrics {operator.metrics_url}")
    demo.facts["operator log"] = str(operator.log_path)


def apply_example(demo: Demo, cluster: client.Cluster) -> str:
    if not EXAMPLE.exists():
        raise StepFailed(f"{EXAMPLE.relative_to(ROOT)} is missing")
    if cluster.kubectl("get", "namespace", DEMO_NAMESPACE, check=False).returncode != 0:
        cluster.kubectl("create", "namespace", DEMO_NAMESPACE)
        demo.created_namespaces.append(DEMO_NAMESPACE)
    out = cluster.kubectl("apply", "-n", DEMO_NAMESPACE, "-f", str(EXAMPLE)).stdout.strip()
    detail(f"kubectl apply -n {DEMO_NAMESPACE} -f {EXAMPLE.relative_to(ROOT)}")
    detail(out)
    return out.split()[0].split("/")[-1]  # voiceservice.voice-service.io/demo created -> demo


def wait_ready(demo: Demo, cluster: client.Cluster, name: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        obj = cluster.kubectl_json("get", "voiceservice", name, "-n", DEMO_NAMESPACE)
        conditions = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
        return obj if conditions.get("Ready", {}).get("status") == "True" else None

    try:
        obj = cluster.wait_for(f"VoiceService {DEMO_NAMESPACE}/{name} Ready", ready, timeout=120, interval=1)
    except client.WaitTimeout:
        current = cluster.kubectl_json("get", "voiceservice", name, "-n", DEMO_NAMESPACE).get("status", {})
        conditions = "; ".join(f"{c['type']}={c['status']} ({c.get('reason')}: {c.get('message', '')})" for c in current.get("conditions", []))
        raise StepFailed(f"not Ready after 120s: {conditions or 'no status yet'}; see {OUT / 'operator.log'}") from None
    detail(cluster.kubectl("get", "vsvc", name, "-n", DEMO_NAMESPACE, "-o", "wide").stdout.rstrip())
    children = cluster.kubectl("get", "deployments,services,pvc,jobs", "-n", DEMO_NAMESPACE, "-l", f"voice-service.io/service={name}", "-o", "name").stdout.split()
    detail("children: " + ", ".join(children))
    if any(c.startswith("job") for c in children):
        detail("(kwok completes the checkpoint-fetch Job's pod without running it: nothing is downloaded)")
    demo.facts["voiceservice"] = f"{DEMO_NAMESPACE}/{name} Ready, endpoint {obj['status'].get('endpoint')}"
    return obj


def pod_environment(demo: Demo, cluster: client.Cluster, name: str) -> dict[str, str]:
    """The inference container's env from the generated Deployment, made runnable here.

    Paths inside the pod's volumes become the same paths under out/demo-cluster/pod/; the
    checkpoint becomes a tiny random-weight one (S1 engine) or goes away (mock engine).
    """
    deployment = cluster.kubectl_json("get", "deployment", name, "-n", DEMO_NAMESPACE)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    mounts = sorted(container.get("volumeMounts", []), key=lambda m: len(m["mountPath"]), reverse=True)
    pod_env = {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}
    skipped = [item["name"] for item in container.get("env", []) if "value" not in item]
    detail(f"deployment/{name} runs {container['image']} with:")
    detail("\n".join(f"  {k}={v}" for k, v in pod_env.items()))

    changes: dict[str, tuple[str | None, str]] = {}  # name -> (new value or None to drop, why)
    for key, value in pod_env.items():
        mount = next((m for m in mounts if value == m["mountPath"] or value.startswith(m["mountPath"].rstrip("/") + "/")), None)
        if mount is not None:
            local = OUT / "pod" / value.lstrip("/")
            if not mount.get("readOnly"):  # a read-only volume (the checkpoint) is filled, not made
                local.mkdir(parents=True, exist_ok=True)
            changes[key] = (str(local), f"the pod's volume {mount['mountPath']}, as a folder here")

    wanted = demo.args.engine
    if pod_env.get("VOICE_TTS_PROVIDER") == "s1_mini":
        if wanted == "mock" or (wanted == "auto" and not s1_available()):
            why = "as asked (--engine mock)" if wanted == "mock" else "no [s1] extra here (`make venv-s1` installs it)"
            changes["VOICE_TTS_PROVIDER"] = ("mock", why)
            changes["VOICE_S1_CHECKPOINT_PATH"] = (None, "the mock engine needs no checkpoint")
        else:
            # The real engine code on a tiny random-weight checkpoint in the real S1 Mini format.
            checkpoint = tiny_checkpoint()
            changes["VOICE_S1_CHECKPOINT_PATH"] = (str(checkpoint), "a tiny random-weight checkpoint in the S1 Mini format (noise, not words)")
            changes["VOICE_S1_DEVICE"] = ("cpu", "no GPU here")
            changes["VOICE_S1_PRECISION"] = ("float32", "on the CPU")

    env = dict(pod_env)
    detail("changed for this machine:")
    for key, (value, why) in changes.items():
        if value is None:
            env.pop(key, None)
            detail(f"  {key}: removed; {why}")
        else:
            env[key] = value
            shown = str(pathlib.Path(value).relative_to(ROOT)) if value.startswith(str(ROOT)) else value
            detail(f"  {key}={shown}: {why}")
    detail("  VOICE_HOST, VOICE_PORT: a free loopback port instead of 0.0.0.0:8080")
    for key in skipped:
        detail(f"  {key}: from a Secret or a field in the pod; left out")
    demo.facts["engine"] = env.get("VOICE_TTS_PROVIDER", "mock")
    return env


def start_server(demo: Demo, env: dict[str, str]) -> ServerProcess:
    # The pod's env wins over this shell's VOICE_* settings, as it would in the pod.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VOICE_")}
    server = ServerProcess(log_path=OUT / "server.log")
    server.env = {**clean, **env}
    demo.server = server
    server.start(timeout=600)
    assert server.process is not None
    detail(f"voice-inference serve: pid {server.process.pid} at {server.url} (ready: /health/ready answered 200)")
    demo.facts["server log"] = str(server.log_path)
    return server


def synthesize(demo: Demo, server: ServerProcess) -> pathlib.Path:
    started = time.monotonic()
    response = httpx.post(f"{server.url}/v1/tts", json=REQUEST, timeout=600)
    if response.status_code != 200:
        raise StepFailed(f"POST /v1/tts answered {response.status_code}: {response.text[:300]}")
    how = f"POST /v1/tts {json.dumps({**REQUEST, 'text': SENTENCE[:40] + '...'})}"
    return save_wav(demo.steps, response.content, how, time.monotonic() - started)


# -- clean-up and summary --------------------------------------------------------------------


def clean_up(demo: Demo) -> None:
    if demo.server is not None:
        demo.server.stop()
        detail("inference server stopped")
    if demo.operator is not None:
        demo.operator.stop()
        detail("operator stopped")
    # The ServiceAccount token stays valid for an hour: do not leave it lying around.
    (OUT / "operator.kubeconfig").unlink(missing_ok=True)
    if demo.plane is not None:
        if demo.args.keep:  # pragma: no cover - --keep never starts an owned plane
            return
        demo.plane.stop()
        detail("local control plane stopped (etcd, kube-apiserver, controller-manager, scheduler, kwok)")
        if demo.plane_dir is not None:
            shutil.rmtree(demo.plane_dir, ignore_errors=True)
        return
    cluster = demo.cluster
    if cluster is None or demo.args.keep:
        if cluster is not None:
            detail(f"kept: release {RELEASE} in {RELEASE_NAMESPACE}, VoiceService in {DEMO_NAMESPACE} (KUBECONFIG={cluster.kubeconfig})")
        return
    # A cluster this run did not start: take back what it added.
    if demo.installed_release:
        cluster.helm("uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, "--wait", check=False)
        detail(f"helm uninstall {RELEASE}")
    for namespace in reversed(demo.created_namespaces):
        cluster.delete_namespace(namespace)
        detail(f"namespace {namespace} deleted")


LOCAL_SUMMARY = """The chart installed the operator; the operator, with the chart's RBAC, turned
examples/voiceservice.yaml into a Deployment, Service, checkpoint PVC and fetch Job; kwok ran
the pods; the inference server ran here with the pod's env and spoke the sentence."""


def run_local(args: argparse.Namespace, steps: Steps, bin_dir: pathlib.Path) -> None:
    """Steps 2-9 of the local path; clean-up on every way out."""
    demo = Demo(args, steps)
    try:
        with steps("local Kubernetes control plane"):
            cluster = control_plane(demo, bin_dir)
        with steps("helm install the voice-operator chart"):
            deployment = helm_install(demo, cluster)
        with steps("start the operator with the chart's ServiceAccount"):
            start_operator(demo, cluster, deployment)
        with steps("apply examples/voiceservice.yaml"):
            name = apply_example(demo, cluster)
        with steps("wait until `kubectl get vsvc` shows it Ready"):
            wait_ready(demo, cluster, name)
        with steps("run the inference server as the VoiceService's pod would"):
            server = start_server(demo, pod_environment(demo, cluster, name))
        with steps("synthesize a sentence over HTTP"):
            synthesize(demo, server)
        if not args.skip_api_tour:
            with steps("the APIs up close (scripts/demo.py)"):
                api_tour()
    finally:
        with steps.clean_up():
            clean_up(demo)
    if demo.plane is not None:
        demo.facts["kubeconfig"] += " (that cluster is stopped now; `make demo DEMO_ARGS=--keep` keeps one)"


def choose_path(args: argparse.Namespace, bin_dir: pathlib.Path) -> str | None:
    """'real' or 'local' (with one line saying why); None when --pods real cannot run here."""
    if args.pods == "local":
        say("\n==> pods: the local path, as asked (--pods local)")
        return "local"
    reason = demo_real.unavailable_reason(args, bin_dir)
    if reason is None:
        say("\n==> pods: real, on the real node (containerd, kubelet, kube-proxy), from the images")
        return "real"
    if args.pods == "real":
        print(f"demo: --pods real cannot run here: {reason}", file=sys.stderr)
        return None
    say(f"\n==> pods: the local path (kwok plays the pods), because {reason}")
    return "local"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", choices=["auto", "real", "local"], default="auto",
                        help="real: the pods run from the images on a real node; local: kwok plays them and the "
                             "server runs here; auto: real where Docker, the images and the node's needs are met")
    parser.add_argument("--keep", action="store_true", help="leave the cluster, release and VoiceService running (local path)")
    parser.add_argument("--engine", choices=["auto", "s1", "mock"], default="auto",
                        help="auto: S1 Mini on a tiny checkpoint where it can run (the image on the real path, the "
                             "[s1] extra on the local one), else mock")
    parser.add_argument("--skip-api-tour", action="store_true", help="leave out the last step (scripts/demo.py)")
    args = parser.parse_args(argv)

    steps = Steps()
    OUT.mkdir(parents=True, exist_ok=True)
    for stale in ("operator.log", "server.log", "hello.wav"):
        (OUT / stale).unlink(missing_ok=True)
    say("voice-service demo: a Kubernetes control plane, the Helm chart, the operator and the inference")
    say("server, all on this machine. Files go to " + str(OUT.relative_to(ROOT)) + "/")
    failed: str | None = None
    try:
        with steps("Kubernetes tools"):
            bin_dir = tools(steps)
        path = choose_path(args, bin_dir)
        if path is None:
            return 2
        if path == "local" and args.engine == "s1" and not s1_available():
            raise StepFailed("--engine s1 on the local path needs the [s1] extra: run `make venv-s1` first")
        steps.total = (demo_real.STEPS if path == "real" else 9) - args.skip_api_tour
        if path == "real":
            demo_real.run(args, steps, bin_dir)
        else:
            run_local(args, steps, bin_dir)
    except StepFailed as err:
        failed = str(err)
    except KeyboardInterrupt:
        failed = "interrupted"
    if failed:
        print(f"\ndemo failed: {failed}", file=sys.stderr)
        for label in ("operator log", "server log"):
            if label in steps.facts:
                print(f"  {label}: {steps.facts[label]}", file=sys.stderr)
        return 1
    steps.summary(demo_real.SUMMARY if path == "real" else LOCAL_SUMMARY)
    return 0


if __name__ == "__main__":
    sys.exit(lifetime.run_main(main))
