"""The HorizontalPodAutoscaler, aimed at the VoiceService itself rather than its Deployment.

Called by ``reconcile`` when ``spec.autoscaling.enabled``. The HPA scales through the
VoiceService's scale subresource (``spec.replicas``, ``status.selector``), so the replica
count has one owner and the operator carries it to the Deployment like any other change.
"""

from __future__ import annotations

from typing import Any

from voice_operator import naming, spec
from voice_operator.builders import common


def _metric(target: spec.AutoscalingTarget) -> dict[str, Any]:
    if target.cpu is not None:
        return {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target.cpu.average_utilization}},
        }
    assert target.pod_metric is not None
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": target.pod_metric.name},
            "target": {"type": "AverageValue", "averageValue": common.quantity(target.pod_metric.average_value)},
        },
    }


def wanted(ctx: common.Context) -> bool:
    return ctx.spec.autoscaling.enabled


def autoscaler(ctx: common.Context) -> dict[str, Any]:
    a = ctx.spec.autoscaling
    hpa_spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": spec.API_VERSION, "kind": spec.KIND, "name": ctx.name},
        "minReplicas": a.min_replicas,
        "maxReplicas": a.max_replicas,
        "metrics": [_metric(a.target)],
    }
    if a.behavior:
        hpa_spec["behavior"] = a.behavior
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": common.metadata(ctx, naming.autoscaler(ctx.name), naming.INFERENCE),
        "spec": hpa_spec,
    }
