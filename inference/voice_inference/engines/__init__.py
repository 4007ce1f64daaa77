"""Engines: the models behind the scheduler. ``create_engine`` picks one from settings."""

from __future__ import annotations

from voice_inference.engines import base, stepped
from voice_inference.settings import Settings


def create_engine(settings: Settings) -> stepped.SteppedEngine:
    """Build (not load) the engine named by ``VOICE_TTS_PROVIDER``, as the scheduler steps it."""
    if settings.tts_provider == "mock":
        from voice_inference.engines import mock

        return mock.MockEngine(chunk_cost_s=settings.mock_chunk_cost_ms / 1000, max_batch_size=settings.max_batch_size)
    if settings.tts_provider == "s1_mini":
        try:  # torch and fish-speech come with the [s1] extra; the server runs without them
            from voice_inference.engines import s1_mini
        except ImportError as exc:
            raise base.EngineError(
                f"VOICE_TTS_PROVIDER=s1_mini needs the [s1] extra (torch, fish-speech): {exc}"
            ) from exc
        return s1_mini.S1MiniEngine(
            settings.s1_checkpoint_path,
            device=settings.s1_device,
            precision=settings.s1_precision,
            compile=settings.s1_compile,
            stream_frames=settings.s1_stream_frames,
            reference_cache_size=settings.s1_reference_cache_size,
            cpu_threads=settings.s1_cpu_threads,
            max_batch_size=settings.max_batch_size,
            slot_context=settings.s1_slot_context,
            codec_process=settings.s1_codec_process,
        )
    raise base.EngineError(f"unknown tts provider {settings.tts_provider!r}")
