"""The streamed codec decode in a process of its own (``s1_codec_process``), on the tiny
checkpoint: it decodes what the server's process would, a failed call is the caller's error and
the process serves on, it ends on ``close`` and when the process that started it is killed, and
an engine whose decoder is gone fails its rows instead of hanging."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tests import lifetime, s1_support

s1_support.require_engine()

import torch  # noqa: E402
from voice_inference.engines import base, s1_codec, s1_codec_process, s1_mini, s1_stream, stepped  # noqa: E402

pytestmark = pytest.mark.s1

CODEBOOKS = 4  # the tiny checkpoint's


def windows(*lengths: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 100, (CODEBOOKS, length), generator=generator) for length in lengths]


@pytest.fixture(scope="module")
def process(tiny_checkpoint: Path):  # noqa: ANN201
    started = s1_codec_process.CodecProcess(tiny_checkpoint / "codec.pth", threads=1)
    started.wait_ready()
    yield started
    started.close()


def test_the_process_decodes_what_the_server_process_would(tiny_checkpoint: Path, process) -> None:  # noqa: ANN001
    codec = s1_codec.load_codec(tiny_checkpoint / "codec.pth", torch.device("cpu"))
    batch = windows(13, 16)
    here = s1_stream.decode_batch(codec, batch, autocast_dtype=None)
    there = process.decode(batch)
    assert [audio.shape for audio in there] == [audio.shape for audio in here] == [(13 * 2048,), (16 * 2048,)]
    for mine, theirs in zip(here, there, strict=True):
        np.testing.assert_allclose(theirs, mine, atol=1e-5)
    assert process.warm_up(CODEBOOKS, 16) == 2 * 2  # 1 and 2 windows, at 8 and 16 frames


def test_a_failed_call_is_an_error_and_the_process_serves_on(process) -> None:  # noqa: ANN001
    with pytest.raises(s1_codec_process.CodecProcessError, match="the codec process failed"):
        process.decode([torch.full((CODEBOOKS, 8), -5)])  # no codebook has a code -5
    [audio] = process.decode(windows(8))
    assert audio.shape == (8 * 2048,) and np.isfinite(audio).all()


def test_close_ends_the_process(tiny_checkpoint: Path) -> None:
    started = s1_codec_process.CodecProcess(tiny_checkpoint / "codec.pth", threads=1)
    started.wait_ready()
    started.close()
    assert not lifetime.running(started.pid)
    with pytest.raises(s1_codec_process.CodecProcessError, match="gone"):
        started.decode(windows(8))


def test_the_process_ends_when_the_server_that_started_it_is_killed(tiny_checkpoint: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from voice_inference.engines import s1_codec_process; "
        f"p = s1_codec_process.CodecProcess(Path({str(tiny_checkpoint / 'codec.pth')!r}), threads=1); "
        "p.wait_ready(); print(p.pid, flush=True); sys.stdin.read()"
    )
    server = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child = int(server.stdout.readline())
        assert lifetime.running(child)
        server.send_signal(signal.SIGKILL)  # no chance to close anything
        server.wait(timeout=30)
        lifetime.wait_gone(child, timeout=30)
    finally:
        server.kill()
        server.wait()


def test_an_engine_whose_decoder_is_gone_fails_its_requests(tiny_checkpoint: Path) -> None:
    engine = s1_mini.S1MiniEngine(tiny_checkpoint, device="cpu", max_batch_size=2, cpu_threads=1, codec_process=True)
    engine.load()
    try:
        assert engine._codec_process is not None
        os.kill(engine._codec_process.pid, signal.SIGKILL)
        request = base.SynthesisRequest(text="Hello there.", seed=1, max_new_tokens=12)
        with pytest.raises(s1_codec_process.CodecProcessError, match="gone"):
            list(stepped.OneAtATime(engine).generate(request, threading.Event()))
    finally:
        engine.close()
