"""The writes of a reconcile: server-side apply, delete, the status patch, Events.

Called by ``reconcile`` (in a worker thread) with the ``Result`` it returns to the
``controller``: each helper records there what it wrote, the problems the API answered
with (which the status then reports) and whether a retry may help. ``Memory`` is what
this replica wrote recently, so a reconcile that runs ahead of the watch does not write
the same thing twice.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from typing import Any

from voice_operator import compare, kinds, kube, metrics, naming, status

logger = logging.getLogger(__name__)

EVENT_COMPONENT = "voice-operator"

Owner = tuple[str, str]  # (namespace, VoiceService name)


@dataclasses.dataclass
class Result:
    wrote: bool = False
    retry: bool = False  # something failed that a later attempt may fix (backoff)
    tally: kube.Tally = dataclasses.field(default_factory=kube.Tally)
    events: list[status.Event] = dataclasses.field(default_factory=list)
    created: list[str] = dataclasses.field(default_factory=list)  # one Event for them all
    problems: list[status.Problem] = dataclasses.field(default_factory=list)  # for the Degraded condition


class Memory:
    """What this replica wrote recently, so a reconcile running ahead of the watch
    (the cache not yet showing our own write) does not write the same thing twice.

    Entries are grouped by VoiceService and dropped with it (``forget``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (namespace, service) -> (kind, child name) -> (manifest hash, rv before, rv after)
        self._applied: dict[Owner, dict[tuple[str, str], tuple[str, str, str]]] = {}
        self._status: dict[Owner, dict[str, Any]] = {}

    def applied_unchanged(self, owner: Owner, child: tuple[str, str], desired_hash: str, live_rv: str) -> bool:
        """Whether we applied exactly this manifest over, or into, the live version we see."""
        with self._lock:
            entry = self._applied.get(owner, {}).get(child)
        return entry is not None and entry[0] == desired_hash and live_rv in entry[1:]

    def remember_apply(self, owner: Owner, child: tuple[str, str], desired_hash: str, rv_before: str, rv_after: str) -> None:
        with self._lock:
            self._applied.setdefault(owner, {})[child] = (desired_hash, rv_before, rv_after)

    def last_status(self, owner: Owner) -> dict[str, Any] | None:
        with self._lock:
            return self._status.get(owner)

    def remember_status(self, owner: Owner, value: dict[str, Any]) -> None:
        with self._lock:
            self._status[owner] = value

    def forget(self, owner: Owner) -> None:
        with self._lock:
            self._applied.pop(owner, None)
            self._status.pop(owner, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._applied.keys() | self._status.keys())


def apply(
    api: kube.Kube,
    owner: Owner,
    manifest: dict[str, Any],
    live: Mapping[str, Any] | None,
    memory: Memory,
    result: Result,
    spec_changed: bool,
) -> dict[str, Any] | None:
    """Apply ``manifest`` unless ``live`` already matches it; the applied object, or None."""
    kind, meta = manifest["kind"], manifest["metadata"]
    child = (kind, meta["name"])
    desired_hash = naming.stable_hash(manifest)
    live_rv = str((live or {}).get("metadata", {}).get("resourceVersion", ""))
    drift: list[str] = []
    if live is not None:
        if compare.is_subset(manifest, live):
            return None
        if memory.applied_unchanged(owner, child, desired_hash, live_rv):
            return None  # our own write, not yet in the cache (or a value the server normalizes)
        drift = compare.differences(manifest, live, limit=5)
    try:
        applied = api.apply(manifest)
    except kube.KubeError as err:
        result.problems.append(status.Problem("ApplyFailed", f"{kind} {meta['name']}: {err.message}"))
        result.retry = True
        logger.warning("apply %s %s/%s failed: %s", kind, meta["namespace"], meta["name"], err)
        return None
    result.wrote = True
    new_rv = str(applied.get("metadata", {}).get("resourceVersion", ""))
    memory.remember_apply(owner, child, desired_hash, live_rv, new_rv)
    if live is None:
        metrics.CHILD_WRITES.labels(kind=kind, action="create").inc()
        result.created.append(f"{kind} {meta['name']}")
    elif new_rv != live_rv:
        metrics.CHILD_WRITES.labels(kind=kind, action="update").inc()
        if spec_changed:
            result.events.append(status.Event("Normal", "Updated", f"updated {kind} {meta['name']}: {', '.join(drift)}"))
        else:
            result.events.append(
                status.Event("Warning", "DriftRepaired", f"{kind} {meta['name']} was changed outside the operator; restored {', '.join(drift)}")
            )
    return applied


def delete(api: kube.Kube, kind: str, namespace: str, name: str, live: Mapping[str, Any], result: Result) -> bool:
    """Delete that incarnation of a child (by uid); whether it went."""
    try:
        api.delete(kind, namespace, name, uid=live.get("metadata", {}).get("uid"))
    except kube.KubeError as err:
        result.problems.append(status.Problem("DeleteFailed", f"{kind} {name}: {err.message}"))
        result.retry = True
        return False
    result.wrote = True
    metrics.CHILD_WRITES.labels(kind=kind, action="delete").inc()
    result.events.append(status.Event("Normal", "Deleted", f"deleted {kind} {name} (no longer wanted)"))
    return True


def merge_patch(current: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``current`` into ``new``: ``new`` itself, with
    null for every key, at any depth, that ``new`` no longer has (a merge patch keeps the rest)."""
    patch: dict[str, Any] = dict(new)
    for key, old in current.items():
        if key not in new:
            patch[key] = None
        elif isinstance(old, Mapping) and isinstance(new[key], Mapping):
            patch[key] = merge_patch(old, new[key])
    return patch


def write_status(
    api: kube.Kube,
    body: Mapping[str, Any],
    new_status: dict[str, Any],
    previous: Mapping[str, Any],
    memory: Memory,
    result: Result,
) -> None:
    """Patch the status subresource, unless the cache or our last write already shows it."""
    meta = body["metadata"]
    current = dict(body.get("status") or {})
    if status.same_status(current, new_status) or status.same_status(previous, new_status):
        return
    try:
        api.patch_status(kinds.VOICE_SERVICE.name, meta["namespace"], meta["name"], merge_patch(current, new_status))
    except kube.KubeError as err:
        if err.status != 404:  # a deleted VoiceService needs no status
            logger.warning("status of %s/%s not written: %s", meta["namespace"], meta["name"], err)
            result.retry = True
        return
    result.wrote = True
    memory.remember_status((meta["namespace"], meta["name"]), new_status)


def post_events(api: kube.Kube, body: Mapping[str, Any], events: list[status.Event]) -> None:
    """Events on the VoiceService, best effort (a refused Event changes nothing)."""
    involved = {"apiVersion": kinds.VOICE_SERVICE.api_version, "kind": kinds.VOICE_SERVICE.name, "metadata": body["metadata"]}
    for event in events:
        try:
            api.post_event(involved, type=event.type, reason=event.reason, message=event.message, component=EVENT_COMPONENT)
        except kube.KubeError as err:
            logger.info("event %s not posted: %s", event.reason, err)
