"""Exactly the API access the operator uses, as RBAC rules (``voice-operator rbac`` prints them).

The Helm chart's ClusterRole (or per-namespace Roles) should carry these rules and nothing
more; a test of the chart can compare against ``RULES``. Each rule says who needs it.
Leader election needs ``LEASE_RULES`` in the operator's own namespace only.
"""

from __future__ import annotations

from typing import Any, Final

import yaml

from voice_operator import kinds, spec

_WATCH = ["get", "list", "watch"]
_APPLY = ["get", "list", "watch", "create", "patch"]  # server-side apply is a patch that may create
_OWN = [*_APPLY, "delete"]  # children reconcile deletes when no longer wanted

RULES: Final[list[dict[str, Any]]] = [
    # kopf watches VoiceServices; reconcile writes their status.
    {"apiGroups": [spec.GROUP], "resources": [spec.PLURAL], "verbs": _WATCH},
    {"apiGroups": [spec.GROUP], "resources": [f"{spec.PLURAL}/status"], "verbs": ["get", "patch"]},
    # Children carry owner references with blockOwnerDeletion; clusters running the
    # OwnerReferencesPermissionEnforcement admission plugin (OpenShift) require this for them.
    {"apiGroups": [spec.GROUP], "resources": [f"{spec.PLURAL}/finalizers"], "verbs": ["update"]},
    # The children: watched (label-selected) and applied; old Jobs, HPAs, PDBs and a fetch
    # claim no longer used are deleted. The Deployment and Service go only by garbage collection.
    *(
        {"apiGroups": [child.group], "resources": [child.plural], "verbs": _OWN if child.pruned else _APPLY}
        for child in kinds.CHILDREN
    ),
    # Pod states feed the Degraded condition; read only.
    {"apiGroups": [kinds.POD.group], "resources": [kinds.POD.plural], "verbs": ["list", "watch"]},
    # Only existence checks (metadata-only GET) of Secrets a spec names.
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    # Events on VoiceServices (core/v1, each posted once: ``kube.post_event``).
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]

LEASE_RULES: Final[list[dict[str, Any]]] = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
]


def render_yaml() -> str:
    return yaml.safe_dump({"rules": RULES, "leaseRules": LEASE_RULES}, sort_keys=False)
