"""Starts and stops the local Kubernetes control plane of the e2e tests.

Called by the pytest session fixture in `tests/e2e/conftest.py` (an owned cluster that
lives as long as the test session) and by `python -m tests.cluster up|down`, which
`make cluster-up` / `make cluster-down` run (a cluster that outlives the command).
Below it sit `pki` (certificates and keys) and `nodes` (the simulated nodes); the
binaries come from `scripts/build-cluster-tools.sh`, which this module runs when some
are missing.

The flow of `ControlPlane.start()`: certificates, then etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and the kwok controller, each on a free
loopback port and each waited for until healthy; then the fake nodes, and a last
wait until they are Ready and the `default` ServiceAccount exists (pods are refused
before that). Processes are only ever stopped by the ids recorded at start, one
process group each, never by name.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from tests import lifetime

from . import nodes, pki

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO_ROOT / ".cluster"
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-cluster-tools.sh"
STAGES_FILE = pathlib.Path(__file__).resolve().parent / "kwok" / "stages.yaml"

TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "helm")
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_CLUSTER_IP = "10.96.0.1"
# Pod IPs that kwok writes into pod status; nothing ever routes to them.
POD_CIDR = "10.244.0.0/16"
CLUSTER_NAME = "voice-e2e"
STATE_FILE = "state.json"
KUBECONFIG_FILE = "kubeconfig"
SESSION_DIR_PREFIX = "pytest-"

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0


class ClusterError(RuntimeError):
    """The control plane could not be started, or a component died."""


# ---------------------------------------------------------------------------------------
# Binaries


def tools_bin_dir() -> pathlib.Path:
    """The folder holding the built binaries (`VOICE_CLUSTER_BIN_DIR` overrides it)."""
    override = os.environ.get("VOICE_CLUSTER_BIN_DIR")
    if override:
        return pathlib.Path(override)
    # The build script owns the cache layout; ask it rather than repeat it here.
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-bin-dir"], check=True, capture_output=True, text=True
    )
    return pathlib.Path(out.stdout.strip())


def missing_tools(bin_dir: pathlib.Path) -> list[str]:
    return [name for name in TOOLS if not os.access(bin_dir / name, os.X_OK)]


def ensure_tools(bin_dir: pathlib.Path) -> None:
    """Build the binaries when some are missing; the first build takes many minutes."""
    missing = missing_tools(bin_dir)
    if not missing:
        return
    if os.environ.get("VOICE_CLUSTER_BIN_DIR"):
        raise ClusterError(f"VOICE_CLUSTER_BIN_DIR={bin_dir} lacks {', '.join(missing)}")
    print(f"cluster: building missing tools ({', '.join(missing)}) with {BUILD_SCRIPT}", file=sys.stderr)
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True)


# ---------------------------------------------------------------------------------------
# Processes


@dataclasses.dataclass(frozen=True)
class ManagedProcess:
    """A process this module started, in a process group of its own (pgid == pid)."""

    name: str
    pid: int
    exe: str
    log: str

    def alive(self) -> bool:
        # Comparing the executable guards against a recycled pid: a pid is only ever
        # signalled while it still runs the binary we started under that id.
        try:
            exe = os.readlink(f"/proc/{self.pid}/exe")
        except OSError:
            return False
        return exe.removesuffix(" (deleted)") == self.exe

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = pathlib.Path(self.log).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _spawn(
    name: str, argv: Sequence[str], log_path: pathlib.Path, *, die_with_parent: bool
) -> tuple[ManagedProcess, subprocess.Popen[bytes]]:
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own session and process group: a Ctrl-C in the terminal reaches the test
            # runner only, which then stops the components in order.
            start_new_session=True,
            # Covers the one case no handler can, a test run killed with SIGKILL. SIGKILL, not
            # SIGTERM: all components get it at once, and an API server whose etcd is already
            # gone never finishes its graceful shutdown.
            preexec_fn=lifetime.die_with_parent if die_with_parent else None,  # noqa: PLW1509
        )
    return ManagedProcess(name=name, pid=popen.pid, exe=str(argv[0]), log=str(log_path)), popen


def stop_processes(
    processes: Sequence[ManagedProcess], popens: dict[int, subprocess.Popen[bytes]] | None = None
) -> None:
    """Stop processes in reverse start order: SIGTERM to each group, then SIGKILL."""
    popens = popens or {}
    for proc in reversed(processes):
        if not proc.alive():
            _reap(popens.get(proc.pid))
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while proc.alive() and time.monotonic() < deadline:
            _reap(popens.get(proc.pid))
            time.sleep(0.05)
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        _reap(popens.get(proc.pid), wait=True)


def _reap(popen: subprocess.Popen[bytes] | None, *, wait: bool = False) -> None:
    # Our own children must be waited for, or they linger as zombies until we exit.
    if popen is None:
        return
    if wait:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=STOP_TIMEOUT_S)
    else:
        popen.poll()


def _free_ports(count: int) -> list[int]:
    """Ports the kernel hands out as free on 127.0.0.1 (all held open until all are picked)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# ---------------------------------------------------------------------------------------
# Kubeconfig files


def _kubeconfig(server: str, ca: pathlib.Path, client: pki.CertPair, user: str) -> dict[str, Any]:
    """A kubeconfig with the certificates embedded, so it can be copied anywhere."""

    def b64(path: pathlib.Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(client.cert), "client-key-data": b64(client.key)}}],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": CLUSTER_NAME,
    }


def _write_json(path: pathlib.Path, data: dict[str, Any], mode: int = 0o600) -> None:
    # kubeconfig files are YAML, and JSON is YAML: no YAML library needed to write them.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.chmod(mode)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------
# Health checks


def _get(url: str, context: ssl.SSLContext | None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def _wait_until(
    what: str,
    check: Callable[[], bool],
    processes: Sequence[ManagedProcess],
    timeout_s: float = START_TIMEOUT_S,
) -> None:
    """Poll `check` until it holds; fail early, with its log, if a component dies."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return
        for proc in processes:
            if not proc.alive():
                raise ClusterError(f"{proc.name} exited while waiting for {what}; log {proc.log}:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name} ({p.log}):\n{p.log_tail(10)}" for p in processes)
            raise ClusterError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{tails}")
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------
# The control plane


@dataclasses.dataclass
class State:
    """What `cluster-down` needs to find a running cluster again; saved as state.json."""

    kubeconfig: str
    server: str
    bin_dir: str
    processes: list[ManagedProcess]

    def save(self, path: pathlib.Path) -> None:
        data = dataclasses.asdict(self)
        _write_json(path, data, mode=0o644)

    @classmethod
    def load(cls, path: pathlib.Path) -> State | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        data["processes"] = [ManagedProcess(**p) for p in data["processes"]]
        return cls(**data)


class ControlPlane:
    """One local cluster rooted at `directory`.

    Layout: `kubeconfig` (admin), `state.json` (pids), `run/` (pki, logs, etcd data).
    `owned=True` ties the processes to this Python process: they are stopped at exit,
    on SIGTERM/SIGHUP, and by the kernel if this process is killed outright.
    `api_address`: where the API server listens and what it advertises (the `kubernetes`
    Service's endpoint). Loopback by default; pods that talk to the API server (the real
    node's, scripts/demo_real.py) need a local address outside 127/8 that they can route to.
    """

    def __init__(
        self, directory: pathlib.Path, bin_dir: pathlib.Path, *, owned: bool, api_address: str = "127.0.0.1"
    ) -> None:
        self.directory = directory
        self.bin_dir = bin_dir
        self.owned = owned
        self.api_address = api_address
        self.run_dir = directory / "run"
        self.kubeconfig = directory / KUBECONFIG_FILE
        self.state_path = directory / STATE_FILE
        self.server = ""
        self.processes: list[ManagedProcess] = []
        self._popens: dict[int, subprocess.Popen[bytes]] = {}
        self._stop_lock = threading.Lock()
        self._previous_handlers: dict[int, Any] = {}
        self._started_at = 0.0

    def _progress(self, message: str) -> None:
        print(f"cluster: {message} ({time.monotonic() - self._started_at:.1f}s)", file=sys.stderr, flush=True)

    # -- starting -------------------------------------------------------------------

    def start(self) -> None:
        """Start every component and return once the cluster takes pods; stop all on failure."""
        if self.owned:
            atexit.register(self.stop)
            self._install_signal_handlers()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self._started_at = time.monotonic()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True)
        certs = pki.write_pki(self.run_dir / "pki", service_cluster_ip=SERVICE_CLUSTER_IP, api_address=self.api_address)
        etcd_client, etcd_peer, apiserver_port, cm_port, scheduler_port = _free_ports(5)
        self.server = f"https://{self.api_address}:{apiserver_port}"
        _write_json(self.kubeconfig, _kubeconfig(self.server, certs.ca.cert, certs.admin, "admin"))

        # Components get their own identity each, so RBAC sees who does what.
        component_kubeconfigs = {}
        for name, pair, user in (
            ("controller-manager", certs.controller_manager, "system:kube-controller-manager"),
            ("scheduler", certs.scheduler, "system:kube-scheduler"),
            ("kwok", certs.kwok, "kwok-controller"),
        ):
            path = self.run_dir / f"{name}.kubeconfig"
            _write_json(path, _kubeconfig(self.server, certs.ca.cert, pair, user))
            component_kubeconfigs[name] = path

        tls = ssl.create_default_context(cafile=str(certs.ca.cert))
        admin_tls = ssl.create_default_context(cafile=str(certs.ca.cert))
        admin_tls.load_cert_chain(str(certs.admin.cert), str(certs.admin.key))

        etcd = self._launch("etcd", logs, [
            "--name=voice-e2e",
            f"--data-dir={self.run_dir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=voice-e2e=http://127.0.0.1:{etcd_peer}",
            # Throwaway data: skipping fsync makes every write several times faster.
            "--unsafe-no-fsync=true",
            # One member: a short election timeout only makes it leader sooner.
            "--heartbeat-interval=25",
            "--election-timeout=250",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ])
        _wait_until(
            "etcd health",
            lambda: _get(f"http://127.0.0.1:{etcd_client}/health", None)[1].find(b'"true"') >= 0,
            [etcd],
        )
        self._progress("etcd healthy")

        apiserver = self._launch("kube-apiserver", logs, [
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            f"--bind-address={self.api_address}",
            f"--advertise-address={self.api_address}",
            f"--secure-port={apiserver_port}",
            f"--cert-dir={self.run_dir / 'apiserver'}",
            f"--tls-cert-file={certs.apiserver.cert}",
            f"--tls-private-key-file={certs.apiserver.key}",
            f"--client-ca-file={certs.ca.cert}",
            "--authorization-mode=Node,RBAC",
            # The default plugins (ServiceAccount, NamespaceLifecycle, LimitRanger,
            # DefaultStorageClass, ResourceQuota, PodSecurity, webhooks...) stay on.
            # OwnerReferencesPermissionEnforcement (on in OpenShift) checks that whoever sets
            # blockOwnerDeletion may update the owner's finalizers: the operator's RBAC must.
            "--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={certs.service_account_pub}",
            f"--service-account-signing-key-file={certs.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
            "--event-ttl=1h",
            "--v=1",
        ])
        _wait_until(
            "kube-apiserver /readyz",
            lambda: _get(f"{self.server}/readyz", admin_tls)[0] == 200,
            [etcd, apiserver],
        )
        self._progress("kube-apiserver ready")

        # kwok and the nodes come before the controller-manager, so the nodes are Ready
        # by the time its node lifecycle controller looks at them and lifts the
        # not-ready taint that admission (TaintNodesByCondition) gave every new node.
        kwok = self._launch("kwok", logs, kwok_args(component_kubeconfigs["kwok"]))
        self.kubectl("apply", "-f", "-", input=json.dumps(_default_storage_class()))
        create_fake_nodes(self.kubectl)

        controller_manager = self._launch("kube-controller-manager", logs, [
            f"--kubeconfig={component_kubeconfigs['controller-manager']}",
            "--bind-address=127.0.0.1",
            f"--secure-port={cm_port}",
            f"--tls-cert-file={certs.controller_manager_serving.cert}",
            f"--tls-private-key-file={certs.controller_manager_serving.key}",
            "--leader-elect=false",
            # Each controller acts as its own ServiceAccount, as in a real cluster.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={certs.service_account_key}",
            f"--root-ca-file={certs.ca.cert}",
            f"--cluster-signing-cert-file={certs.ca.cert}",
            f"--cluster-signing-key-file={certs.ca.key}",
            f"--cluster-name={CLUSTER_NAME}",
            # All default controllers: GC, Deployment, ReplicaSet, Job, HPA, PV binder,
            # PVC protection, namespace, ServiceAccount, node lifecycle, EndpointSlice...
            "--controllers=*",
            # PVCs of the default StorageClass get real (hostPath) volumes: the in-tree
            # provisioner makes empty folders under /tmp/hostpath_pv/ and removes them.
            "--enable-hostpath-provisioner=true",
            "--horizontal-pod-autoscaler-sync-period=5s",
            # Start-up makes one ServiceAccount and token per controller; the default
            # client rate limit (20/s) alone would stretch it by seconds.
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ])
        scheduler = self._launch("kube-scheduler", logs, [
            f"--kubeconfig={component_kubeconfigs['scheduler']}",
            "--bind-address=127.0.0.1",
            f"--secure-port={scheduler_port}",
            f"--tls-cert-file={certs.scheduler_serving.cert}",
            f"--tls-private-key-file={certs.scheduler_serving.key}",
            "--leader-elect=false",
            "--v=1",
        ])
        everything = [etcd, apiserver, controller_manager, scheduler, kwok]
        _wait_until(
            "kube-controller-manager /healthz",
            lambda: _get(f"https://127.0.0.1:{cm_port}/healthz", tls)[0] == 200,
            everything,
        )
        _wait_until(
            "kube-scheduler /healthz",
            lambda: _get(f"https://127.0.0.1:{scheduler_port}/healthz", tls)[0] == 200,
            everything,
        )
        self._progress("controller-manager and scheduler healthy")

        api = _ApiReader(self.server, admin_tls)
        _wait_until("fake nodes Ready and schedulable", lambda: _nodes_ready(api), everything)
        self._progress("fake nodes Ready")
        # The ServiceAccount admission plugin refuses pods until this account exists.
        _wait_until(
            "the default ServiceAccount",
            lambda: api.status("/api/v1/namespaces/default/serviceaccounts/default") == 200,
            everything,
        )
        self._progress("default ServiceAccount exists")

    def _launch(self, name: str, logs: pathlib.Path, args: list[str]) -> ManagedProcess:
        argv = [str(self.bin_dir / name), *args]
        proc, popen = _spawn(name, argv, logs / f"{name}.log", die_with_parent=self.owned)
        self.processes.append(proc)
        self._popens[proc.pid] = popen
        # Saved after every start, so `cluster-down` finds whatever got started.
        State(str(self.kubeconfig), self.server, str(self.bin_dir), self.processes).save(self.state_path)
        return proc

    # -- using ----------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return run_kubectl(self.bin_dir, self.kubeconfig, self.run_dir / "kube-cache", list(args), input)

    # -- stopping -------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every process this object started; safe to call more than once."""
        with self._stop_lock:
            if not self.processes:
                return
            stop_processes(self.processes, self._popens)
            self.processes = []
            self._popens = {}
            with contextlib.suppress(FileNotFoundError):
                self.state_path.unlink()
        self._restore_signal_handlers()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._previous_handlers[sig] = signal.signal(sig, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Stop the cluster, then let the signal do what it would have done without us.
        previous = self._previous_handlers.get(signum, signal.SIG_DFL)
        self.stop()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def kwok_args(kubeconfig: pathlib.Path) -> list[str]:
    """Flags of the kwok controller: it manages only the nodes annotated as fake."""
    return [
        f"--kubeconfig={kubeconfig}",
        f"--config={STAGES_FILE}",
        f"--manage-nodes-with-annotation-selector={nodes.MANAGED_ANNOTATION}=fake",
        f"--cidr={POD_CIDR}",
        "--node-ip=10.0.0.1",
        "--node-lease-duration-seconds=40",
    ]


def run_kubectl(
    bin_dir: pathlib.Path, kubeconfig: pathlib.Path, cache_dir: pathlib.Path, args: list[str], input: str | None
) -> str:
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), KUBECACHEDIR=str(cache_dir))
    result = subprocess.run(
        [str(bin_dir / "kubectl"), *args], input=input, capture_output=True, text=True, env=env, timeout=60, check=False
    )
    if result.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def create_fake_nodes(kubectl: Callable[..., str]) -> None:
    """Create the simulated nodes that do not exist yet (status included: create keeps it)."""
    existing = set(kubectl("get", "nodes", "-o", "name").split())
    missing = [node.manifest() for node in nodes.DEFAULT_NODES if f"node/{node.name}" not in existing]
    if missing:
        kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": missing}))


def _default_storage_class() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": "standard",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "kubernetes.io/host-path",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


class _ApiReader:
    """Just enough of an API client for the start-up waits (no subprocess per poll)."""

    def __init__(self, server: str, context: ssl.SSLContext) -> None:
        self.server = server
        self.context = context

    def status(self, path: str) -> int:
        return _get(self.server + path, self.context)[0]

    def json(self, path: str) -> dict[str, Any] | None:
        code, body = _get(self.server + path, self.context)
        return json.loads(body) if code == 200 else None


def _nodes_ready(api: _ApiReader) -> bool:
    listing = api.json(f"/api/v1/nodes?labelSelector={nodes.FAKE_NODE_LABEL}%3Dtrue")
    if not listing or len(listing["items"]) < len(nodes.DEFAULT_NODES):
        return False
    for node in listing["items"]:
        conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        if conditions.get("Ready") != "True":
            return False
        # The node lifecycle controller lifts these taints a moment after Ready.
        taints = {t["key"] for t in node.get("spec", {}).get("taints", [])}
        if taints & {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}:
            return False
    return True


# ---------------------------------------------------------------------------------------
# Entry points for the command line (make cluster-up / cluster-down)


def running_state(directory: pathlib.Path) -> State | None:
    """The state of a cluster started in `directory` whose processes all still run."""
    state = State.load(directory / STATE_FILE)
    if state is None or not state.processes or not all(p.alive() for p in state.processes):
        return None
    return state


def clean_stale_sessions(root: pathlib.Path = DEFAULT_DIR) -> None:
    """Remove the folders of test sessions that died (`pytest-<pid>` with no such pid).

    A session killed by a signal stops its processes but cannot delete its folder.
    """
    for directory in root.glob(f"{SESSION_DIR_PREFIX}*"):
        pid = directory.name.removeprefix(SESSION_DIR_PREFIX)
        if not pid.isdigit() or pathlib.Path(f"/proc/{pid}").exists():
            continue
        down(directory, quiet=True)
        shutil.rmtree(directory, ignore_errors=True)


def session_dir(root: pathlib.Path = DEFAULT_DIR) -> pathlib.Path:
    """The folder of this process's own cluster, apart from `make cluster-up`'s."""
    return root / f"{SESSION_DIR_PREFIX}{os.getpid()}"


def up(directory: pathlib.Path = DEFAULT_DIR) -> State:
    """Start a cluster that outlives this process, unless one already runs there."""
    state = running_state(directory)
    if state is not None:
        print(f"cluster: already running at {state.server}")
        return state
    down(directory, quiet=True)  # clears what a crashed or half-stopped cluster left
    bin_dir = tools_bin_dir()
    ensure_tools(bin_dir)
    directory.mkdir(parents=True, exist_ok=True)
    plane = ControlPlane(directory, bin_dir, owned=False)
    started = time.monotonic()
    plane.start()
    print(f"cluster: up at {plane.server} in {time.monotonic() - started:.1f}s")
    state = State.load(plane.state_path)
    assert state is not None
    return state


def down(directory: pathlib.Path = DEFAULT_DIR, *, quiet: bool = False) -> None:
    """Stop the processes recorded in `directory`'s state file (by pid, never by name)."""
    state_path = directory / STATE_FILE
    state = State.load(state_path)
    if state is None:
        if not quiet:
            print("cluster: not running")
        return
    stop_processes(state.processes)
    state_path.unlink(missing_ok=True)
    if not quiet:
        print(f"cluster: stopped {len(state.processes)} processes")


def attach_kwok(kubeconfig: pathlib.Path, directory: pathlib.Path) -> State:
    """Run only kwok and the fake nodes against an existing cluster (for kind).

    Lets the same tests, GPU nodes and pod behaviours included, run on any cluster
    without installing anything into it but three Node objects.
    """
    down(directory, quiet=True)
    bin_dir = tools_bin_dir()
    ensure_tools(bin_dir)
    directory.mkdir(parents=True, exist_ok=True)
    run_dir = directory / "run"
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    cache = run_dir / "kube-cache"
    proc, _ = _spawn(
        "kwok", [str(bin_dir / "kwok"), *kwok_args(kubeconfig)], run_dir / "logs" / "kwok.log", die_with_parent=False
    )
    state = State(str(kubeconfig), "", str(bin_dir), [proc])
    state.save(directory / STATE_FILE)

    def kubectl(*args: str, input: str | None = None) -> str:
        return run_kubectl(bin_dir, kubeconfig, cache, list(args), input)

    create_fake_nodes(kubectl)
    kubectl("wait", "--for=condition=Ready", "--timeout=90s", "node", "-l", f"{nodes.FAKE_NODE_LABEL}=true")
    print(f"cluster: kwok attached to {kubeconfig}; fake nodes Ready")
    return state
