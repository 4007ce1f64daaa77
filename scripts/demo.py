"""The local demo (``make demo``): start the inference server with the mock engine, speak a
sentence through both APIs (Fish Audio's ``/v1/tts`` and OpenAI's ``/v1/audio/speech`` via
the ``openai`` SDK), clone a stored voice, save the audio under ``out/demo/`` and say where.
Each step prints as it runs; a failure names the step and why, and the server is stopped.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import lifetime  # noqa: E402
from tests.servers import ServerProcess  # noqa: E402

OUT = ROOT / "out" / "demo"
SENTENCE = "Hello from voice-service. This sentence was synthesized by the local inference server."


def step(title: str) -> None:
    print(f"==> {title}", flush=True)


def seconds_of(wav: bytes) -> float:
    return soundfile.info(io.BytesIO(wav)).duration


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    env = {"VOICE_TTS_PROVIDER": "mock", "VOICE_REFERENCE_PATH": str(OUT / "references")}
    server = ServerProcess(env, log_path=OUT / "server.log")
    current = "start the inference server (mock engine)"
    try:
        step(current)
        started = time.perf_counter()
        server.start()
        print(f"    ready at {server.url} in {time.perf_counter() - started:.1f} s")

        current = "synthesize through POST /v1/tts (Fish Audio API)"
        step(current)
        response = httpx.post(f"{server.url}/v1/tts", json={"text": SENTENCE, "format": "wav"}, timeout=60)
        response.raise_for_status()
        (OUT / "tts.wav").write_bytes(response.content)
        print(f"    {len(response.content)} bytes, {seconds_of(response.content):.2f} s of audio -> {OUT / 'tts.wav'}")

        current = "synthesize through POST /v1/audio/speech with the openai SDK"
        step(current)
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="demo", max_retries=0)
        speech = client.audio.speech.create(model="s1-mini", voice="default", input=SENTENCE, response_format="mp3")
        (OUT / "speech.mp3").write_bytes(speech.content)
        print(f"    {len(speech.content)} bytes of MP3 -> {OUT / 'speech.mp3'}")

        current = "store a reference voice and speak with it"
        step(current)
        rate = 22_050
        tone = 0.3 * np.sin(2 * np.pi * 196.0 * np.arange(rate * 2) / rate)
        buffer = io.BytesIO()
        soundfile.write(buffer, tone.astype(np.float32), rate, format="WAV")
        created = httpx.post(
            f"{server.url}/v1/voices", data={"id": "demo-voice", "text": "A low, steady tone."},
            files={"audio": ("demo-voice.wav", buffer.getvalue(), "audio/wav")}, timeout=30,
        )  # fmt: skip
        created.raise_for_status()
        cloned = httpx.post(f"{server.url}/v1/tts", json={"text": SENTENCE, "reference_id": "demo-voice"}, timeout=60)
        cloned.raise_for_status()
        (OUT / "cloned.wav").write_bytes(cloned.content)
        print(f"    voice 'demo-voice' stored; cloned speech -> {OUT / 'cloned.wav'}")

        current = "read the server's metrics"
        step(current)
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        lines = [line for line in metrics.splitlines() if line.startswith(("voice_audio_seconds_total", "voice_http_requests_total{"))]
        print("    " + "\n    ".join(lines))
    except Exception as exc:
        print(f"demo failed at step '{current}': {exc}", file=sys.stderr)
        print(f"server log: {OUT / 'server.log'}", file=sys.stderr)
        return 1
    finally:
        server.stop()

    print(f"\nDone. Audio files are in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(lifetime.run_main(main))
