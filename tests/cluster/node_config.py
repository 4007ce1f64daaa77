"""The real node's configuration files, as pure functions of their few inputs: containerd's
TOML (with the CRI plugin and its CNI network), the kubelet's and kube-proxy's JSON.

tests/cluster/node.py writes them into its session folder and starts the programs on them.
"""

from __future__ import annotations

import pathlib
from typing import Any


def cni_conflist(bridge: str, pod_cidr: str, ipam_dir: pathlib.Path) -> dict[str, Any]:
    """One bridge for the pods, its gateway on this machine, no masquerading."""
    return {
        "cniVersion": "1.0.0",
        "name": "voice-node",
        "plugins": [
            {
                "type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]],
                         "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(ipam_dir)},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }  # fmt: skip


def containerd_config(
    root: pathlib.Path, state: pathlib.Path, socket: pathlib.Path, sandbox_image: str, cni_bin_dir: str, cni_conf_dir: pathlib.Path
) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[{cri}]
  sandbox_image = "{sandbox_image}"
  # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails to start.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.cni]
  bin_dir = "{cni_bin_dir}"
  conf_dir = "{cni_conf_dir}"
"""


def kubelet_config(socket: pathlib.Path, port: int, healthz: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "127.0.0.1",
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz,
        # Loopback only; the API server has no kubelet client certificate to present.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        # This machine runs cgroup v1 without systemd.
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{socket}",
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        "registerNode": True,
        "serializeImagePulls": False,
        # The machine's disk is shared and fuller than the defaults allow; images are
        # imported, not pulled, so garbage collection would only lose them.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "nodeStatusUpdateFrequency": "2s",
        "syncFrequency": "10s",
        "maxPods": 30,
    }  # fmt: skip


def proxy_config(kubeconfig: pathlib.Path, healthz: int, metrics: int, node_name: str, pod_cidr: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "hostnameOverride": node_name,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{healthz}",
        "metricsBindAddress": f"127.0.0.1:{metrics}",
        "clusterCIDR": pod_cidr,
        # Service traffic between pods on one bridge comes back through the host this way.
        "iptables": {"masqueradeAll": True, "minSyncPeriod": "0s", "syncPeriod": "10s"},
        "conntrack": {"maxPerCore": 0},  # leave the host's conntrack sysctls alone
    }
