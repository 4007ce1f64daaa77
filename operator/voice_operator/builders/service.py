"""The Service in front of the inference pods (the endpoint ``status`` reports).

Called by ``reconcile``; the port name matches the container's, so the target follows the
contract's port without repeating the number.
"""

from __future__ import annotations

from typing import Any

from voice_operator import contract, naming
from voice_operator.builders import common


def service(ctx: common.Context) -> dict[str, Any]:
    settings = ctx.spec.service
    meta = common.metadata(ctx, naming.service(ctx.name), naming.INFERENCE, annotations=dict(settings.annotations) or None)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": settings.type,
            "selector": naming.selector_labels(ctx.name),
            "ports": [
                {
                    "name": contract.PORT_NAME,
                    "port": settings.port,
                    "targetPort": contract.PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }
