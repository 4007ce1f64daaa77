"""Does a live object already carry everything the operator would apply? (drift detection)

Called by ``reconcile`` before each server-side apply: when every field of the rendered
manifest is present with the same value in the live object, the apply is skipped, which is
what makes a no-op reconcile write nothing. Fields the API server adds (defaults, status,
nodePort, clusterIP...) are ignored; a field someone changed or removed is found, and the
apply that follows takes it back. ``differences`` names the paths, for the drift Event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes.utils import quantity as k8s_quantity


def _is_empty(value: Any) -> bool:
    """Values the API server omits from objects (omitempty): absent in live means equal."""
    if value is None or value is False:
        return True
    if isinstance(value, (str, list, dict)):
        return len(value) == 0
    return isinstance(value, int) and not isinstance(value, bool) and value == 0


def _scalars_equal(desired: Any, live: Any) -> bool:
    if desired == live and type(desired) is type(live):
        return True
    if isinstance(desired, bool) or isinstance(live, bool):
        return False
    if isinstance(desired, (int, float, str)) and isinstance(live, (int, float, str)):
        # Quantities come back canonical ("1000m" -> "1"); compare their values.
        try:
            return k8s_quantity.parse_quantity(desired) == k8s_quantity.parse_quantity(live)
        except (ValueError, TypeError, ArithmeticError):
            return str(desired) == str(live)
    return False


def differences(desired: Any, live: Any, path: str = "", limit: int = 10) -> list[str]:
    """Paths (up to ``limit``) where ``live`` lacks or differs from ``desired``."""
    out: list[str] = []
    _walk(desired, live, path, out, limit)
    return out


def _walk(desired: Any, live: Any, path: str, out: list[str], limit: int) -> None:
    if len(out) >= limit:
        return
    if isinstance(desired, Mapping):
        if live is None and _is_empty(dict(desired)):
            return
        if not isinstance(live, Mapping):
            out.append(path or ".")
            return
        for key, value in desired.items():
            sub = f"{path}.{key}" if path else key
            if key not in live:
                if not _is_empty(value):
                    out.append(sub)
                continue
            _walk(value, live[key], sub, out, limit)
        return
    if isinstance(desired, list):
        if live is None and not desired:
            return
        if not isinstance(live, list) or len(live) != len(desired):
            out.append(path)
            return
        for index, (d, item) in enumerate(zip(desired, live, strict=True)):
            _walk(d, item, f"{path}[{index}]", out, limit)
        return
    if live is None:
        if not _is_empty(desired):
            out.append(path)
        return
    if not _scalars_equal(desired, live):
        out.append(path)


def is_subset(desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """True when applying ``desired`` onto ``live`` would change nothing we own."""
    return not differences(desired, live, limit=1)
