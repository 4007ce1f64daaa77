"""Reading live Kubernetes objects as the watch caches hold them (plain dicts).

The lowest layer of the status logic: ``checkpoints`` and ``status`` read nested fields,
conditions and container states through these helpers, so a field the API server left
out (an empty status, a pod not scheduled yet) reads as a default instead of raising.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

TRUE: Final = "True"
FALSE: Final = "False"

# Container waiting reasons that will not clear up by waiting.
BAD_WAITING_REASONS: Final = frozenset({
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
})


def get(obj: Any, *keys: str, default: Any = None) -> Any:
    """``obj[k1][k2]...``, or ``default`` where a level is missing or null."""
    for key in keys:
        if not isinstance(obj, Mapping):
            return default
        obj = obj.get(key)
    return default if obj is None else obj


def condition(obj: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    """The status condition of type ``kind``, if the object reports one."""
    for cond in get(obj, "status", "conditions", default=[]):
        if cond.get("type") == kind:
            return cond
    return None


def live_pods(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The pods not being deleted (a terminating pod no longer counts)."""
    return [p for p in pods if not get(p, "metadata", "deletionTimestamp")]


def bad_waiting(pod: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """(container status, its waiting state) of the first container stuck in a bad reason."""
    for cs in get(pod, "status", "containerStatuses", default=[]):
        waiting = get(cs, "state", "waiting")
        if waiting and waiting.get("reason") in BAD_WAITING_REASONS:
            return cs, waiting
    return None
