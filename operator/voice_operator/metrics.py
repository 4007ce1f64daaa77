"""Prometheus metrics of the operator process (served by ``cli run --metrics-port``).

Low in the stack: ``kube`` counts requests here, ``controller`` counts reconciles and queue
depth, ``leader`` reports leadership. The Helm chart's metrics Service scrapes them, and
``scripts/bench_operator.py`` reads them to report API requests per reconcile.
"""

from __future__ import annotations

from typing import Final

import prometheus_client

REGISTRY: Final = prometheus_client.CollectorRegistry(auto_describe=True)

API_REQUESTS: Final = prometheus_client.Counter(
    "voice_operator_api_requests", "Kubernetes API requests, by verb and by who made them (reconcile, leader).",
    ["verb", "scope"], registry=REGISTRY,
)
RECONCILES: Final = prometheus_client.Counter(
    "voice_operator_reconciles", "Reconciles finished, by result (ok, error, skipped).", ["result"], registry=REGISTRY,
)
RECONCILE_SECONDS: Final = prometheus_client.Histogram(
    "voice_operator_reconcile_seconds", "Time of one reconcile.", registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CHILD_WRITES: Final = prometheus_client.Counter(
    "voice_operator_child_writes", "Children applied or deleted, by kind and action.", ["kind", "action"], registry=REGISTRY,
)
QUEUE_DEPTH: Final = prometheus_client.Gauge(
    "voice_operator_queue_depth", "VoiceServices waiting for a reconcile.", registry=REGISTRY,
)
RECONCILES_RUNNING: Final = prometheus_client.Gauge(
    "voice_operator_reconciles_running", "Reconciles in progress (at most one per VoiceService, one per worker).",
    registry=REGISTRY,
)
LEADER: Final = prometheus_client.Gauge(
    "voice_operator_leader", "1 while this replica holds the leader Lease.", registry=REGISTRY,
)
SERVICES: Final = prometheus_client.Gauge(
    "voice_operator_voiceservices", "VoiceServices known to this replica.", registry=REGISTRY,
)


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Start the /metrics HTTP server in a daemon thread."""
    prometheus_client.start_http_server(port, addr=host, registry=REGISTRY)
