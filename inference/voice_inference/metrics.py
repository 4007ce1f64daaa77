"""Prometheus metrics of one server, on a registry of its own (so tests can run many apps).

Created by ``app.build_app``; updated by the request middleware (requests by route and
status), the scheduler (queue depth, in flight, rejections, engine ready), the synthesis handlers
(time to first audio byte, audio produced, real-time factor) and live sessions (``api_live``:
open sessions, segments, time to first audio); served at ``/metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_RTF_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "voice_http_requests", "HTTP requests by route and status.", ["route", "method", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "voice_http_request_duration_seconds", "Time to the end of the response.", ["route"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge("voice_queue_depth", "Requests waiting for the engine.", registry=r)
        self.in_flight = Gauge("voice_in_flight_requests", "Requests the engine is working on.", registry=r)
        self.rejected = Counter("voice_rejected_requests", "Requests refused because the queue was full.", registry=r)
        self.ttfb = Histogram(
            "voice_time_to_first_audio_seconds", "From request arrival to the first audio bytes.",
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.audio_seconds = Counter("voice_audio_seconds", "Seconds of audio produced.", registry=r)
        self.rtf = Histogram(
            "voice_real_time_factor", "Synthesis time divided by audio duration (below 1: faster than real time).",
            buckets=_RTF_BUCKETS, registry=r,
        )  # fmt: skip
        self.live_sessions = Gauge("voice_live_sessions", "Open /v1/tts/live sessions.", registry=r)
        self.live_segments = Counter("voice_live_segments", "Text segments synthesized in live sessions.", registry=r)
        self.live_ttfa = Histogram(
            "voice_live_time_to_first_audio_seconds",
            "Live sessions: from the first complete segment of text to its first audio sent.",
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.ready = Gauge("voice_engine_ready", "1 once the engine is loaded and warmed up.", registry=r)
