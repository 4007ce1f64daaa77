"""Reading one value from a server's Prometheus ``/metrics`` page, for tests and benchmarks."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families


def value(url: str, sample: str, labels: dict[str, str] | None = None) -> float:
    """The current value of ``sample`` (e.g. ``voice_queue_depth``), 0.0 if absent."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            if item.name == sample and all(item.labels.get(k) == v for k, v in (labels or {}).items()):
                return item.value
    return 0.0


def wait_for(url: str, sample: str, expected: float, *, timeout: float = 20.0) -> float:
    """Poll until ``sample`` equals ``expected`` (bounded); returns the last value seen."""
    deadline = time.monotonic() + timeout
    current = value(url, sample)
    while current != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        current = value(url, sample)
    return current
