"""Engines: the models behind the scheduler. ``create_engine`` picks one from settings."""

from __future__ import annotations

from voice_inference.engines import base
from voice_inference.settings import Settings


def create_engine(settings: Settings) -> base.Engine:
    """Build (not load) the engine named by ``VOICE_TTS_PROVIDER``."""
    if settings.tts_provider == "mock":
        from voice_inference.engines import mock

        return mock.MockEngine(chunk_cost_s=settings.mock_chunk_cost_ms / 1000)
    if settings.tts_provider == "s1_mini":
        raise base.EngineError("the s1_mini engine is not available in this build")
    raise base.EngineError(f"unknown tts provider {settings.tts_provider!r}")
