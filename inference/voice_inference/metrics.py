"""Prometheus metrics of one server, on a registry of its own (so tests can run many apps).

Created by ``app.build_app``; updated by the request middleware (requests by route and
status), the scheduler and its engine loop (queue depth, slots in use, rejections, engine ready,
rows per step, step time, time in the queue), the synthesis handlers (time to first audio byte,
audio produced, real-time factor) and live sessions (``api_live``: open sessions, segments,
time to first audio); served at ``/metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5)
_ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
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
        self.queue_depth = Gauge("voice_queue_depth", "Requests waiting for a batch slot.", registry=r)
        self.in_flight = Gauge("voice_in_flight_requests", "Requests in batch slots (the engine works on them).", registry=r)
        self.batch_slots = Gauge("voice_batch_slots", "Batch slots of the engine (VOICE_MAX_BATCH_SIZE).", registry=r)
        self.slot_occupancy = Gauge(
            "voice_batch_slot_occupancy", "Fraction of batch slots in use (0 to 1): the autoscaling signal.", registry=r
        )
        self.queue_wait = Histogram(
            "voice_queue_wait_seconds", "From request arrival to a batch slot.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.step_seconds = Histogram(
            "voice_engine_step_seconds", "Time of one engine step (every row in it).", buckets=_STEP_BUCKETS, registry=r
        )
        self.rows_per_step = Histogram(
            "voice_engine_rows_per_step", "Requests advanced together by one engine step.", buckets=_ROWS_BUCKETS, registry=r
        )
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
