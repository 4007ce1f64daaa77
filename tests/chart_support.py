"""The Helm chart as tests and the cluster demo use it: rendering, and the operator as a process.

Used by tests/unit/test_chart.py (render and inspect), tests/e2e/test_chart.py (install,
then run the operator with the chart's ServiceAccount) and scripts/demo_cluster.py. The
chart lives in charts/voice-operator; `helm` is the one built with the local control plane
(scripts/build-cluster-tools.sh), so the Kubernetes version helm renders for is the
pinned release of the e2e cluster.

`OperatorProcess` runs `voice-operator` exactly as the chart's Deployment would run it in
a pod (its args and env, read from the rendered or live Deployment), with two changes a
local process needs: the liveness endpoint and metrics server listen on free loopback
ports, and POD_NAMESPACE (a fieldRef in the pod) is filled in from the Deployment.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from tests import lifetime, servers

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CHART_DIR = REPO_ROOT / "charts" / "voice-operator"
OPERATOR_CONTAINER = "operator"


class HelmError(AssertionError):
    """helm exited non-zero; the message carries its stderr (what a user would read)."""


def kube_version(bin_dir: pathlib.Path) -> str:
    """The pinned Kubernetes release of the built tools (their cache folder is k8s-<version>)."""
    name = bin_dir.parent.name
    if not name.startswith("k8s-v"):
        raise ValueError(f"cannot tell the Kubernetes version from {bin_dir}")
    return name.removeprefix("k8s-")


def helm(bin_dir: pathlib.Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> str:
    """Run the built helm; a non-zero exit raises `HelmError` with helm's own message."""
    result = subprocess.run(
        [str(bin_dir / "helm"), *args], capture_output=True, text=True, timeout=timeout, check=False,
        env=dict(env) if env is not None else None,
    )
    if result.returncode != 0:
        raise HelmError(result.stderr.strip() or result.stdout.strip())
    return result.stdout


def set_args(values: Mapping[str, Any]) -> list[str]:
    """`--set-json key=value` for each item: exact types, no helm --set string parsing."""
    out: list[str] = []
    for key, value in values.items():
        out += ["--set-json", f"{key}={json.dumps(value)}"]
    return out


def render(
    bin_dir: pathlib.Path,
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "voice-operator",
    namespace: str = "voice-system",
    extra: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """`helm template` of the chart, parsed into objects (CRDs not included)."""
    text = helm(
        bin_dir, "template", release, str(CHART_DIR), "--namespace", namespace,
        "--kube-version", kube_version(bin_dir), *set_args(values or {}), *extra,
    )
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(objects: Iterable[Mapping[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        dict(o) for o in objects
        if o.get("kind") == kind and (name is None or o.get("metadata", {}).get("name") == name)
    ]


def one(objects: Iterable[Mapping[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    if len(found) != 1:
        raise AssertionError(f"expected one {kind}{' ' + name if name else ''}, found {len(found)}")
    return found[0]


def operator_container(deployment: Mapping[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == OPERATOR_CONTAINER)


def pod_env(deployment: Mapping[str, Any]) -> dict[str, str]:
    """The container's env with the fieldRefs the chart uses resolved as the kubelet would."""
    namespace = deployment["metadata"]["namespace"]
    env: dict[str, str] = {}
    for item in operator_container(deployment).get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = namespace
        else:
            raise ValueError(f"env {item['name']}: only values and the namespace fieldRef can run locally")
    return env


def local_args(deployment: Mapping[str, Any], liveness_port: int, metrics_port: int) -> list[str]:
    """The container's args, with the endpoints moved to loopback ports of this machine."""
    args: list[str] = []
    for arg in operator_container(deployment)["args"]:
        if arg.startswith("--liveness="):
            arg = f"--liveness=http://127.0.0.1:{liveness_port}/healthz"
        elif arg.startswith("--metrics-port=") and arg != "--metrics-port=0":
            arg = f"--metrics-port={metrics_port}"
        args.append(arg)
    return args


class OperatorProcess:
    """`voice-operator` started as the chart's pod would run it, stopped by its own pid."""

    def __init__(self, deployment: Mapping[str, Any], kubeconfig: pathlib.Path, log_path: pathlib.Path) -> None:
        self.liveness_port = servers.free_port()
        self.metrics_port = servers.free_port()
        self.args = local_args(deployment, self.liveness_port, self.metrics_port)
        # Only the pod's env on top of a minimal one: nothing of this shell leaks in
        # (a KUBECONFIG pointing at the admin, say), except what Python needs to run.
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONUNBUFFERED": "1",
            **pod_env(deployment),
            "KUBECONFIG": str(kubeconfig),
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def liveness_url(self) -> str:
        return f"http://127.0.0.1:{self.liveness_port}/healthz"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 60) -> OperatorProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "voice_operator", *self.args],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped by pid, never by name
                preexec_fn=lifetime.die_with_parent,  # noqa: PLW1509 - even if we are SIGKILLed
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"voice-operator exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.liveness_url, timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"voice-operator not live at {self.liveness_url} after {timeout:.0f}s:\n{self.log_tail()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self) -> int | None:
        """SIGTERM (the operator releases the Lease and exits), SIGKILL after 15 s."""
        return servers.stop_process_group(self.process)
