"""A real node in the test cluster: containerd (CRI) with CNI bridge networking, a kubelet
and kube-proxy, joined to the local control plane beside kwok's simulated nodes.

Started on demand by the e2e ``real_node`` fixture (tests/e2e/real_node_fixtures.py) and by
the demo, after ``tests.cluster.launcher`` has the control plane up; its pods really run, as
containers, from images imported from the Docker engine (no registry is ever asked). What
the machine needs (see the README of this folder): root, Debian's containerd and
containernetworking-plugins, iptables; kubelet and kube-proxy come from the same wrapper
module as the control plane (scripts/build-cluster-tools.sh).

One real node per machine at a time (a lock file): kube-proxy owns the host's KUBE-*
iptables chains, so two would fight. Its pods sit on their own bridge (``NODE_BRIDGE``,
``NODE_POD_CIDR``) with no masquerading: they reach each other and this machine, nothing
beyond it. ``stop`` deletes what it made: the pods' containers, the iptables rules, the bridge.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import IO

from tests.cluster import launcher, node_config, pki

NODE_NAME = "localhost"  # resolvable, so the API server reaches the kubelet for exec and logs
REAL_NODE_LABEL = "voice-service.test/real-node"
NODE_BRIDGE = "voice-node0"
NODE_POD_CIDR = "10.88.0.0/24"
# This machine's address on the bridge (the pods' gateway): servers of the tests that pods
# must reach (an S3 server, say) listen there, not on every interface.
NODE_HOST_ADDRESS = str(next(ipaddress.ip_network(NODE_POD_CIDR).hosts()))
PAUSE_IMAGE = "voice-service.local/pause:1"
ROOT = pathlib.Path(os.environ.get("VOICE_NODE_ROOT", "/var/lib/voice-service/node"))
RUN = pathlib.Path("/run/voice-service-node")
LOCK_FILE = RUN / "node.lock"
CNI_BIN_DIR = "/usr/lib/cni"
# ctr waits 10 s to dial a containerd that is not there (at start and stop, clearing what a
# node left) before it gives up; 2 s is ample for one that runs.
CTR = ("ctr", "--connect-timeout", "2s")
PAUSE_SOURCE = pathlib.Path(__file__).resolve().parent / "node" / "pause.c"
# Intra-bridge traffic: Docker sets the FORWARD policy to DROP, and with br_netfilter even
# pod-to-pod frames on one bridge pass that chain.
FORWARD_RULE = ("FORWARD", "-i", NODE_BRIDGE, "-o", NODE_BRIDGE, "-j", "ACCEPT")


class NodeError(RuntimeError):
    pass


def _run(*argv: str, input: bytes | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise NodeError(f"{' '.join(argv[:4])}: {result.stderr.decode(errors='replace').strip()[-2000:]}")
    return result


def missing_prerequisites(bin_dir: pathlib.Path) -> list[str]:
    """What this machine lacks for a real node (empty when it can run one)."""
    missing = [f"{bin_dir}/{name} (make cluster-tools)" for name in ("kubelet", "kube-proxy") if not (bin_dir / name).exists()]
    for tool in ("containerd", "ctr", "iptables", "gcc", "docker"):
        if not _which(tool):
            missing.append(f"{tool} (make engine-packages)")
    if not pathlib.Path(CNI_BIN_DIR, "bridge").exists():
        missing.append(f"{CNI_BIN_DIR}/bridge (make engine-packages)")
    if os.geteuid() != 0:
        missing.append("root (the kubelet and containerd need it)")
    return missing


def _which(tool: str) -> bool:
    return any(pathlib.Path(d, tool).exists() for d in os.environ.get("PATH", "").split(os.pathsep))


class RealNode:
    """containerd, kubelet and kube-proxy as child processes of this one, stopped by pid."""

    def __init__(self, plane_dir: pathlib.Path, bin_dir: pathlib.Path, server: str) -> None:
        self.plane_dir = plane_dir  # the control plane's folder: kubeconfig, run/pki
        self.bin_dir = bin_dir
        self.server = server
        self.dir = ROOT / "session"
        self.logs = self.dir / "logs"
        self.socket = RUN / "containerd.sock"
        self.processes: list[launcher.ManagedProcess] = []
        self._popens: dict[int, subprocess.Popen[bytes]] = {}
        self._lock: IO[str] | None = None

    # -- starting ---------------------------------------------------------------------------

    def start(self, images: Sequence[str], progress: Callable[[str], None] = lambda _: None) -> None:
        RUN.mkdir(parents=True, exist_ok=True)
        self._lock = open(LOCK_FILE, "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NodeError(f"another test run holds the machine's real node ({LOCK_FILE})") from None
        try:
            self._start(images, progress)
        except BaseException:
            self.stop()
            raise

    def _start(self, images: Sequence[str], progress: Callable[[str], None]) -> None:
        self._remove_leftovers()  # of a run that was killed before its stop
        _run("rm", "-rf", str(self.dir))
        self.logs.mkdir(parents=True)
        # An absolute path: ManagedProcess.alive compares it with /proc/<pid>/exe.
        self._spawn("containerd", [shutil.which("containerd") or "containerd", "--config", str(self._write_containerd_config())])
        self._wait("containerd", lambda: self.ctr("version", check=False).returncode == 0)
        progress("containerd up")
        self.import_images([self._pause_image(), *images])
        progress(f"images in containerd: {', '.join(images) or '(none)'}")
        _run("iptables", "-I", *FORWARD_RULE)
        self._bridge_up()
        kubeconfig = self._kubeconfig("kubelet", f"system:node:{NODE_NAME}", ("system:nodes",))
        healthz, port = launcher._free_ports(2)
        self._spawn("kubelet", [
            str(self.bin_dir / "kubelet"),
            f"--config={self._write_kubelet_config(port, healthz)}",
            f"--kubeconfig={kubeconfig}",
            # No --node-ip: the kubelet refuses a loopback one. The API server reaches it by
            # its Hostname address, localhost, where it listens.
            f"--hostname-override={NODE_NAME}",
            f"--root-dir={self.dir / 'kubelet'}",
            f"--cert-dir={self.dir / 'kubelet-pki'}",
            f"--node-labels={REAL_NODE_LABEL}=true",
            "--v=1",
        ])  # fmt: skip
        self._wait("the kubelet's node Ready", self._node_ready, timeout=120)
        progress("kubelet registered, node Ready")
        proxy_kubeconfig = self._kubeconfig("kube-proxy", "system:kube-proxy", ())
        self._spawn("kube-proxy", [
            str(self.bin_dir / "kube-proxy"), f"--config={self._write_proxy_config(proxy_kubeconfig)}", "--v=1",
        ])  # fmt: skip
        self._wait("kube-proxy's rules", lambda: _run("iptables", "-t", "nat", "-S", "KUBE-SERVICES", check=False).returncode == 0)
        progress("kube-proxy up")

    def _bridge_up(self) -> None:
        """The pods' bridge with its gateway address, before any pod: so tests can listen on
        NODE_HOST_ADDRESS from the start. The CNI bridge plugin adopts it as it finds it."""
        _run("ip", "link", "add", NODE_BRIDGE, "type", "bridge")
        prefix = ipaddress.ip_network(NODE_POD_CIDR).prefixlen
        _run("ip", "addr", "add", f"{NODE_HOST_ADDRESS}/{prefix}", "dev", NODE_BRIDGE)
        _run("ip", "link", "set", NODE_BRIDGE, "up")

    def _spawn(self, name: str, argv: list[str]) -> None:
        proc, popen = launcher._spawn(name, argv, self.logs / f"{name}.log", die_with_parent=True)
        self.processes.append(proc)
        self._popens[proc.pid] = popen

    def _wait(self, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
        launcher._wait_until(what, check, self.processes, timeout_s=timeout)

    def ctr(self, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return _run(*CTR, "--address", str(self.socket), "--namespace", "k8s.io", *args, input=input, check=check, timeout=900)

    def _write_containerd_config(self) -> pathlib.Path:
        cni_conf = self.dir / "cni"
        cni_conf.mkdir()
        (cni_conf / "10-voice-node.conflist").write_text(json.dumps(node_config.cni_conflist(NODE_BRIDGE, NODE_POD_CIDR, self.dir / "ipam")))
        config = self.dir / "containerd.toml"
        config.write_text(node_config.containerd_config(ROOT / "containerd", RUN / "containerd", self.socket, PAUSE_IMAGE, CNI_BIN_DIR, cni_conf))
        return config

    def _pause_image(self) -> str:
        """The sandbox image, built here from pause.c (static, FROM scratch) once per machine."""
        if _run("docker", "image", "inspect", PAUSE_IMAGE, check=False).returncode != 0:
            context = self.dir / "pause"
            context.mkdir()
            _run("gcc", "-static", "-O2", "-o", str(context / "pause"), str(PAUSE_SOURCE))
            (context / "Dockerfile").write_text('FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n')
            _run("docker", "build", "--quiet", "-t", PAUSE_IMAGE, str(context))
        return PAUSE_IMAGE

    def import_images(self, images: Sequence[str]) -> None:
        """Each image from the Docker engine into containerd's k8s.io namespace, unless the
        same image (by its config digest, Docker's image id) is there already."""
        for image in images:
            wanted = _run("docker", "image", "inspect", "--format", "{{.Id}}", image).stdout.decode().strip()
            have = self.ctr("images", "ls", f"name=={image}", check=False).stdout.decode()
            if wanted and wanted in _config_digests(self.ctr, image, have):
                continue
            if have.strip().count("\n"):  # an older build under this tag: free its snapshots first (disk)
                self.ctr("images", "rm", "--sync", image, check=False)
            with tempfile.TemporaryFile() as save_errors:  # a file: an unread pipe could block docker save
                saved = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, stderr=save_errors)
                assert saved.stdout is not None
                imported = subprocess.run(
                    [*CTR, "--address", str(self.socket), "--namespace", "k8s.io", "images", "import", "-"],
                    stdin=saved.stdout, capture_output=True, timeout=1800, check=False,
                )  # fmt: skip
                saved.stdout.close()
                if saved.wait() != 0 or imported.returncode != 0:
                    save_errors.seek(0)
                    # docker save's own error first: when it fails (a full disk, say), ctr only sees a cut stream.
                    reasons = [save_errors.read().decode(errors="replace")[-1000:], imported.stderr.decode()[-1000:]]
                    free = shutil.disk_usage(ROOT).free / 2**30
                    raise NodeError(
                        f"importing {image} into containerd failed ({free:.1f} GiB free under {ROOT}): "
                        + " / ".join(reason.strip() for reason in reasons if reason.strip())
                    )
            self._discard_layers(image)
        self._remove_replaced()

    def _remove_replaced(self) -> None:
        """Drop the image-id records (``sha256:<config digest>``) that no tag points to any
        more. The CRI plugin adds one for every image and keeps it when the tag moves to a new
        build, and each pins its build's snapshots: 6 GB a rebuild of the inference image."""
        for ref in stale_image_ids(self.ctr):
            self.ctr("images", "rm", "--sync", ref, check=False)

    def _discard_layers(self, image: str) -> None:
        """Drop the imported layer tarballs once unpacked: containers start from the unpacked
        snapshots, and on a shared disk the inference image would otherwise count twice."""
        listing = self.ctr("images", "ls", f"name=={image}").stdout.decode()
        for layer in _manifest(self.ctr, listing, image).get("layers", []):
            self.ctr("content", "rm", layer["digest"], check=False)

    def _kubeconfig(self, name: str, user: str, groups: tuple[str, ...]) -> pathlib.Path:
        ca = pki.load_ca(self.plane_dir / "run" / "pki")
        pair = ca.issue(f"node-{name}", user, organizations=groups, client=True)
        path = self.dir / f"{name}.kubeconfig"
        launcher._write_json(path, launcher._kubeconfig(self.server, ca.pair.cert, pair, user))
        return path

    def _write_kubelet_config(self, port: int, healthz: int) -> pathlib.Path:
        path = self.dir / "kubelet.json"
        path.write_text(json.dumps(node_config.kubelet_config(self.socket, port, healthz), indent=1))
        return path

    def _write_proxy_config(self, kubeconfig: pathlib.Path) -> pathlib.Path:
        healthz, metrics = launcher._free_ports(2)
        path = self.dir / "kube-proxy.json"
        path.write_text(json.dumps(node_config.proxy_config(kubeconfig, healthz, metrics, NODE_NAME, NODE_POD_CIDR), indent=1))
        return path

    def _node_ready(self) -> bool:
        result = _run(str(self.bin_dir / "kubectl"), f"--kubeconfig={self.plane_dir / 'kubeconfig'}",
                      "get", "node", NODE_NAME, "-o", "json", check=False)  # fmt: skip
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def kill_container(self, container_id: str) -> None:
        """SIGKILL one of its pods' containers from outside, as the OOM killer would."""
        self.ctr("tasks", "kill", "--signal", "SIGKILL", container_id.removeprefix("containerd://"))

    # -- stopping ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the processes (reverse order), then remove the containers, rules and bridge."""
        launcher.stop_processes(self.processes, self._popens)
        self.processes, self._popens = [], {}
        self._remove_leftovers()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _remove_leftovers(self) -> None:
        """What a stopped node leaves behind: pod containers (their shims outlive containerd),
        kube-proxy's chains, our FORWARD rule, the bridge. Safe to run when none exist."""
        for line in _run(*CTR, "--address", str(self.socket), "-n", "k8s.io", "tasks", "ls", "-q", check=False).stdout.decode().split():
            _run(*CTR, "--address", str(self.socket), "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", line, check=False)
        # Shims (and the containers under them) of a containerd that is gone: only ours
        # name this node's socket.
        for shim in _shims(self.socket) if not self._containerd_answers() else []:
            for pid in [*_descendants(shim), shim]:  # the pods' processes, then the shim
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.socket.exists():
            self._wait_tasks_gone()
            for line in _run(*CTR, "--address", str(self.socket), "-n", "k8s.io", "containers", "ls", "-q", check=False).stdout.decode().split():
                _run(*CTR, "--address", str(self.socket), "-n", "k8s.io", "tasks", "delete", "--force", line, check=False)
                _run(*CTR, "--address", str(self.socket), "-n", "k8s.io", "containers", "rm", line, check=False)
        # The kubelet's volume mounts (emptyDirs, tokens) outlive it.
        mounts = [line.split()[1] for line in pathlib.Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(f"{self.dir}/")), key=len, reverse=True):
            _run("umount", "--lazy", mount, check=False)
        if (self.bin_dir / "kube-proxy").exists():
            _run(str(self.bin_dir / "kube-proxy"), "--cleanup", check=False)
        while _run("iptables", "-D", *FORWARD_RULE, check=False).returncode == 0:
            pass
        _run("ip", "link", "delete", NODE_BRIDGE, check=False)

    def _containerd_answers(self) -> bool:
        return self.socket.exists() and self.ctr("version", check=False).returncode == 0

    def _wait_tasks_gone(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listing = _run(*CTR, "--address", str(self.socket), "-n", "k8s.io", "tasks", "ls", check=False).stdout.decode()
            if "RUNNING" not in listing:
                return
            time.sleep(0.2)


def _shims(socket: pathlib.Path) -> list[int]:
    """Process ids of the containerd shims started for ``socket`` (each leads its group)."""
    found = []
    for proc in pathlib.Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and f"-address\0{socket}\0".encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
    return found


def _descendants(pid: int) -> list[int]:
    children: list[int] = []
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += [int(c) for c in (task / "children").read_text().split()]
    return [d for child in children for d in (*_descendants(child), child)]


def stale_image_ids(ctr: Callable[..., subprocess.CompletedProcess[bytes]]) -> list[str]:
    """The ``sha256:`` image records that are not the config digest of a tagged image."""
    listing = ctr("images", "ls").stdout.decode()
    refs = [line.split()[0] for line in listing.splitlines()[1:] if line.strip()]
    tagged = set().union(*(_config_digests(ctr, ref, listing) for ref in refs if not ref.startswith("sha256:")))
    return [ref for ref in refs if ref.startswith("sha256:") and ref not in tagged]


def _config_digests(ctr: Callable[..., subprocess.CompletedProcess[bytes]], image: str, listing: str) -> set[str]:
    """The config digests containerd holds for ``image`` (empty when it has none)."""
    if image not in listing:
        return set()
    with contextlib.suppress(NodeError, ValueError, KeyError):
        return {_manifest(ctr, listing, image)["config"]["digest"]}
    return set()


def _manifest(ctr: Callable[..., subprocess.CompletedProcess[bytes]], listing: str, image: str) -> dict:
    """The image manifest of ``image`` in a ``ctr images ls`` listing (of an index, its first, only one)."""
    manifest = json.loads(ctr("content", "get", _manifest_digest(listing, image)).stdout)
    if "manifests" in manifest:
        manifest = json.loads(ctr("content", "get", manifest["manifests"][0]["digest"]).stdout)
    return manifest


def _manifest_digest(listing: str, image: str) -> str:
    for line in listing.splitlines():
        fields = line.split()
        if fields and fields[0] == image:
            return next(f for f in fields if f.startswith("sha256:"))
    raise KeyError(image)
