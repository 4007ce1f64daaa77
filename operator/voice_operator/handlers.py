"""kopf registrations: watch caches (indexes), event hooks, startup/cleanup, liveness probes.

``cli run`` builds a registry with ``register`` and hands it to ``kopf.operator``. kopf
watches VoiceServices and the children the operator labels (server-side label selector,
so the operator never lists a cluster's other pods), keeps each in an index trimmed to
what ``reconcile`` reads, and calls the event hooks here, which only enqueue the owning
VoiceService in the ``controller``. No kopf handler writes to the cluster: no finalizers,
no annotations, no progress in status; the leader's ``reconcile`` does every write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from voice_operator import config, kinds, naming, spec
from voice_operator import controller as controller_mod

logger = logging.getLogger(__name__)

# (group/version, plural) of each watched child kind (and pods), by its kopf index id.
CHILD_RESOURCES: Mapping[str, tuple[str, str]] = {
    kind.plural: (kind.api_version, kind.plural) for kind in (*kinds.CHILDREN, kinds.POD)
}
MANAGED = {naming.MANAGED_BY_LABEL: config.MANAGED_BY}
_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def _meta(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata", {})
    out = {
        key: meta[key]
        for key in (
            "name", "namespace", "uid", "resourceVersion", "generation", "labels",
            "ownerReferences", "deletionTimestamp", "creationTimestamp",
        )
        if key in meta
    }
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _DROPPED_ANNOTATIONS}
    if annotations:
        out["annotations"] = annotations
    return out


def trim_object(body: Mapping[str, Any]) -> dict[str, Any]:
    """A child as ``reconcile`` needs it: no managedFields (the bulk of an object)."""
    out: dict[str, Any] = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": _meta(body)}
    for key in ("spec", "status"):
        if key in body:
            out[key] = _plain(body[key])
    return out


def trim_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    """A pod as ``status`` needs it: phase, conditions, container states; no spec."""
    st = body.get("status") or {}
    containers = [
        {k: cs[k] for k in ("name", "ready", "started", "restartCount", "state", "lastState") if k in cs}
        for cs in st.get("containerStatuses") or []
    ]
    return {
        "metadata": _meta(body),
        "status": _plain({
            "phase": st.get("phase"),
            "conditions": [
                {k: c[k] for k in ("type", "status", "reason", "message", "lastTransitionTime") if k in c}
                for c in st.get("conditions") or []
            ],
            "containerStatuses": containers,
        }),
    }


def _plain(value: Any) -> Any:
    """kopf bodies are views; indexes keep plain, immutable-by-convention copies."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _owner_key(namespace: str | None, labels: Mapping[str, str], body: Mapping[str, Any] | None = None) -> tuple[str, str] | None:
    """The VoiceService a child belongs to: its label, else its owner reference (someone
    may have stripped the labels, which is drift the owner must hear about)."""
    owner = labels.get(naming.SERVICE_LABEL)
    if not owner and body is not None:
        for ref in body.get("metadata", {}).get("ownerReferences") or []:
            if ref.get("kind") == spec.KIND and ref.get("apiVersion", "").startswith(spec.GROUP + "/"):
                owner = ref.get("name")
    if not namespace or not owner:
        return None
    return (namespace, owner)


def connection_info(configuration: Any) -> kopf.ConnectionInfo:
    """kopf credentials from a kubernetes client Configuration (kubeconfig or in-cluster)."""
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix("authorization")
    scheme, token = None, None
    if header:
        parts = header.split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def register(registry: kopf.OperatorRegistry, ctl: controller_mod.Controller) -> None:
    """Register every handler of the operator on ``registry``, bound to ``ctl``."""
    vs_resource = (kinds.VOICE_SERVICE.api_version, kinds.VOICE_SERVICE.plural)

    @kopf.index(*vs_resource, id=controller_mod.SERVICES_INDEX, registry=registry)
    def voiceservices(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Any, Any]:
        return {(namespace, name): trim_object(body)}

    def child_index(index_id: str) -> None:
        trim = trim_pod if index_id == controller_mod.PODS_INDEX else trim_object

        def index_fn(body: kopf.Body, namespace: str, labels: Mapping[str, str], **_: Any) -> dict[Any, Any] | None:
            key = _owner_key(namespace, labels)
            return None if key is None else {key: trim(body)}

        kopf.index(*CHILD_RESOURCES[index_id], id=index_id, labels=MANAGED, registry=registry)(index_fn)

    # The event hooks are coroutines: kopf runs a plain function in a thread pool, and the
    # controller's queue, timers and asyncio.Event belong to the event loop.
    def child_event(index_id: str) -> None:
        async def on_child(namespace: str, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> None:
            ctl.mark_indexed()
            key = _owner_key(namespace, labels, body)
            if key is not None:
                ctl.enqueue(key)

        kopf.on.event(*CHILD_RESOURCES[index_id], id=f"{index_id}-event", labels=MANAGED, registry=registry)(on_child)

    for index_id in CHILD_RESOURCES:
        child_index(index_id)
        child_event(index_id)

    @kopf.on.event(*vs_resource, id="voiceservice-event", registry=registry)
    async def on_voiceservice(type: str | None, namespace: str, name: str, **_: Any) -> None:
        ctl.mark_indexed()
        if type == "DELETED":
            ctl.forget((namespace, name))  # children go by garbage collection
        else:
            ctl.enqueue((namespace, name))

    @kopf.on.startup(registry=registry)
    async def start_controller(memo: kopf.Memo, **kwargs: Any) -> None:
        ctl.attach(kwargs)
        memo["controller_task"] = asyncio.create_task(ctl.run(memo.get("elector")), name="voice-operator controller")

    @kopf.on.cleanup(registry=registry)
    async def stop_controller(memo: kopf.Memo, **_: Any) -> None:
        task = memo.get("controller_task")
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # kopf's watches use the very credentials of the operator's own client.
        return connection_info(ctl.api.client.configuration)

    @kopf.on.probe(id="leader", registry=registry)
    def leader_probe(**_: Any) -> bool:
        return ctl.is_leader

    @kopf.on.probe(id="reconciles", registry=registry)
    def reconciles_probe(**_: Any) -> int:
        return ctl.reconciles
