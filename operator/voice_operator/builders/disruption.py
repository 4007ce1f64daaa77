"""The PodDisruptionBudget: node drains take the inference pods down one at a time.

Called by ``reconcile``; only worth having when the service can run more than one pod
(a budget over a single pod would only ever block a drain or allow everything).
"""

from __future__ import annotations

from typing import Any

from voice_operator import naming
from voice_operator.builders import common


def wanted(ctx: common.Context) -> bool:
    a = ctx.spec.autoscaling
    # With autoscaling the budget follows the range, not the moment's replica count,
    # so it does not come and go as the HPA scales.
    return a.max_replicas > 1 if a.enabled else ctx.spec.replicas > 1


def disruption_budget(ctx: common.Context) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": common.metadata(ctx, naming.disruption_budget(ctx.name), naming.INFERENCE),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": naming.selector_labels(ctx.name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",  # a crash-looping pod must not block drains
        },
    }
