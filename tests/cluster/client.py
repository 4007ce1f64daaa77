"""The handle e2e tests get for a cluster: kubectl, helm, waits and pod behaviours.

The `cluster` session fixture in `tests/e2e/conftest.py` yields a `Cluster`, whether
the cluster is the local control plane (`tests.cluster.launcher`) or an existing one
named by KUBECONFIG. Everything goes through the real `kubectl` and `helm` binaries
built with the control plane, so a test reads like the commands a person would type.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from . import nodes

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A `Cluster.wait_for` condition did not hold in time (fails the test like an assert)."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A cluster reachable through `kubeconfig`, with the tools in `bin_dir`.

    `local` is true for the control plane this harness started (here or by
    `make cluster-up`); an existing cluster may lack the simulated GPU nodes, which
    `has_fake_nodes()` tells.
    """

    kubeconfig: pathlib.Path
    bin_dir: pathlib.Path
    local: bool
    cache_dir: pathlib.Path

    @property
    def env(self) -> dict[str, str]:
        """Environment for any subprocess that should talk to this cluster (an operator run)."""
        return dict(
            os.environ,
            KUBECONFIG=str(self.kubeconfig),
            KUBECACHEDIR=str(self.cache_dir),
            PATH=f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        )

    # -- commands -------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60,
        kubeconfig: pathlib.Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl; with `check`, a non-zero exit raises with kubectl's stderr."""
        env = self.env
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        return self._run([str(self.bin_dir / "kubectl"), *args], input, check, timeout, env)

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def apply(self, manifest: dict[str, Any] | list[dict[str, Any]] | str, namespace: str | None = None) -> None:
        """`kubectl apply` one object, a list of objects, or YAML text."""
        if isinstance(manifest, list):
            manifest = {"apiVersion": "v1", "kind": "List", "items": manifest}
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.kubectl(*args, input=text)

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.bin_dir / "helm"), *args], None, check, timeout, self.env)

    @staticmethod
    def _run(
        argv: list[str], input: str | None, check: bool, timeout: float, env: dict[str, str]
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(argv, input=input, capture_output=True, text=True, env=env, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{pathlib.Path(argv[0]).name} {' '.join(argv[1:])} exited {result.returncode}:\n"
                f"{result.stderr.strip()}"
            )
        return result

    # -- waiting --------------------------------------------------------------------

    @staticmethod
    def wait_for(what: str, probe: Callable[[], T], timeout: float = 60, interval: float = 0.5) -> T:
        """Call `probe` until it returns something truthy, and return that."""
        deadline = time.monotonic() + timeout
        last: T = probe()
        while not last:
            if time.monotonic() > deadline:
                raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
            time.sleep(interval)
            last = probe()
        return last

    def wait_crd_established(self, name: str, timeout: float = 60) -> None:
        """Until the CRD ``name`` serves its resource. (``kubectl wait --for=condition=Established``
        fails outright, instead of waiting, when it reads the CRD before it has any conditions.)"""

        def established() -> bool:
            crd = self.kubectl_json("get", "crd", name)
            return any(
                c.get("type") == "Established" and c.get("status") == "True"
                for c in (crd.get("status") or {}).get("conditions") or []
            )

        self.wait_for(f"CRD {name} established", established, timeout=timeout, interval=0.2)

    # -- namespaces and identities --------------------------------------------------

    def create_namespace(self, prefix: str = "e2e") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", name)
        # Pods are refused until the ServiceAccount controller made the default account.
        self.wait_for(
            f"the default ServiceAccount in {name}",
            lambda: self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
            timeout=30, interval=0.2,
        )
        return name

    def delete_namespace(self, name: str, wait: bool = False) -> None:
        self.kubectl("delete", "namespace", name, "--ignore-not-found", f"--wait={str(wait).lower()}")

    def service_account_kubeconfig(self, namespace: str, name: str, path: pathlib.Path) -> pathlib.Path:
        """A kubeconfig that authenticates as a ServiceAccount with a real bound token.

        Written to `path`; the token comes from the TokenRequest API, so requests made
        with it go through the same authentication and RBAC as a pod's.
        """
        token = self.kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()
        config = self.kubectl_json("config", "view", "--raw", "--minify")
        cluster = config["clusters"][0]
        user = f"system:serviceaccount:{namespace}:{name}"
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": user, "namespace": namespace}}],
            "current-context": "sa",
        }
        path.write_text(json.dumps(kubeconfig))
        path.chmod(0o600)
        return path

    # -- simulated nodes and pods ---------------------------------------------------

    def has_fake_nodes(self) -> bool:
        """Whether kwok's GPU nodes and the pod behaviours are available here."""
        return bool(self.fake_nodes())

    def fake_nodes(self) -> list[dict[str, Any]]:
        return self.kubectl_json("get", "nodes", "-l", f"{nodes.FAKE_NODE_LABEL}=true")["items"]

    def gpu_node_names(self) -> list[str]:
        return [
            n["metadata"]["name"]
            for n in self.fake_nodes()
            if int(n["status"].get("allocatable", {}).get(nodes.GPU_RESOURCE, "0")) > 0
        ]

    def set_pod_behavior(self, namespace: str, pod: str, behavior: str) -> None:
        """Make a running pod `ready`, `unready`, `crash`... (see kwok/stages.yaml)."""
        if behavior not in nodes.POD_BEHAVIORS:
            raise ValueError(f"unknown pod behavior {behavior!r}; one of {nodes.POD_BEHAVIORS}")
        self.kubectl(
            "annotate", "pod", pod, "-n", namespace, "--overwrite",
            f"{nodes.POD_BEHAVIOR_ANNOTATION}={behavior}",
        )

    def pods(self, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", "pods", "-n", namespace] + (["-l", selector] if selector else [])
        return self.kubectl_json(*args)["items"]


def pod_is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
