"""The simulated nodes of the e2e cluster.

Sits below `tests.cluster.launcher`, which creates these Node objects after the API
server is up; the kwok controller it starts then manages every node carrying
`MANAGED_ANNOTATION`, driven by the Stages in `tests/cluster/kwok/stages.yaml`.
A Node keeps the `status.capacity`/`allocatable` given at creation, which is how the
GPU nodes advertise `nvidia.com/gpu` without a device plugin.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# kwok is started with --manage-nodes-with-annotation-selector=<this>=fake.
MANAGED_ANNOTATION = "kwok.x-k8s.io/node"
# Tests find the simulated nodes (and know pod behaviours are available) by this label.
FAKE_NODE_LABEL = "voice-service.test/fake-node"
GPU_RESOURCE = "nvidia.com/gpu"
# The taint GPU node pools usually carry, so that only pods asking for GPUs land there.
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"

# Pod annotation that the kwok Stages react to; see the header of kwok/stages.yaml.
POD_BEHAVIOR_ANNOTATION = "voice-service.test/pod-behavior"
POD_BEHAVIORS = ("ready", "unready", "crash", "fail", "pending")


@dataclasses.dataclass(frozen=True)
class FakeNode:
    """One simulated node: its name, GPU count and whether it carries the GPU taint."""

    name: str
    gpus: int
    tainted: bool
    cpu: str = "32"
    memory: str = "256Gi"

    def manifest(self) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            FAKE_NODE_LABEL: "true",
        }
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": "110", "ephemeral-storage": "500Gi"}
        if self.gpus:
            # The labels NVIDIA's GPU feature discovery puts on real GPU nodes.
            labels |= {
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": GPU_PRODUCT,
                "nvidia.com/gpu.count": str(self.gpus),
            }
            resources[GPU_RESOURCE] = str(self.gpus)
        spec: dict[str, Any] = {}
        if self.tainted:
            spec["taints"] = [dict(GPU_TAINT)]
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {MANAGED_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": spec,
            "status": {"capacity": resources, "allocatable": dict(resources)},
        }


# Two GPU nodes (one plain, one tainted like a real GPU pool) and one CPU-only node.
DEFAULT_NODES: tuple[FakeNode, ...] = (
    FakeNode(name="kwok-gpu-0", gpus=2, tainted=False),
    FakeNode(name="kwok-gpu-1", gpus=2, tainted=True),
    FakeNode(name="kwok-cpu-0", gpus=0, tainted=False, cpu="16", memory="64Gi"),
)
