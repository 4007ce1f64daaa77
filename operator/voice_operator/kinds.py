"""The kinds of object the operator touches, listed once.

Low in the stack, beside ``naming``: ``kube`` builds its REST paths from ``RESOURCES``,
``handlers`` registers one kopf index and watch per child kind (and one for pods),
``controller`` reads those indexes into a ``reconcile.Snapshot``, ``reconcile`` prunes the
children marked ``pruned`` when no longer wanted, and ``rbac`` derives the rules for them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

from voice_operator import spec


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str  # the manifest's ``kind``
    api_version: str  # group/version, "v1" for the core group
    plural: str  # the REST resource; also the id of its kopf index

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


@dataclasses.dataclass(frozen=True)
class Child(Kind):
    # Deleted by reconcile when the spec no longer wants it (old fetch Jobs, a disabled HPA
    # or PDB, a fetch claim replaced by an existing one); the others go only by garbage
    # collection, with their VoiceService.
    pruned: bool = False


DEPLOYMENT: Final = Child("Deployment", "apps/v1", "deployments")
SERVICE: Final = Child("Service", "v1", "services")
CLAIM: Final = Child("PersistentVolumeClaim", "v1", "persistentvolumeclaims", pruned=True)
JOB: Final = Child("Job", "batch/v1", "jobs", pruned=True)
AUTOSCALER: Final = Child("HorizontalPodAutoscaler", "autoscaling/v2", "horizontalpodautoscalers", pruned=True)
DISRUPTION_BUDGET: Final = Child("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets", pruned=True)

# What the operator renders and applies, in the order reconcile reads them.
CHILDREN: Final[tuple[Child, ...]] = (DEPLOYMENT, SERVICE, CLAIM, JOB, AUTOSCALER, DISRUPTION_BUDGET)
# Watched (the inference and fetch pods, label-selected) but never written.
POD: Final = Kind("Pod", "v1", "pods")
VOICE_SERVICE: Final = Kind(spec.KIND, spec.API_VERSION, spec.PLURAL)

# Every kind ``kube`` can address: (group/version, plural) by kind name.
RESOURCES: Final[Mapping[str, tuple[str, str]]] = {
    k.name: (k.api_version, k.plural)
    for k in (
        *CHILDREN,
        POD,
        VOICE_SERVICE,
        Kind("Secret", "v1", "secrets"),
        Kind("Event", "v1", "events"),
        Kind("Lease", "coordination.k8s.io/v1", "leases"),
    )
}
