"""The S1 Mini engine on a GPU: bfloat16 by default, and the compiled decode step (inductor with
CUDA graphs). Skipped where CUDA is absent; the CPU tests cover the same code paths otherwise."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from tests import s1_support

s1_support.require_engine()

import torch  # noqa: E402
from voice_inference.engines import base, s1_mini, stepped  # noqa: E402


pytestmark = [
    pytest.mark.s1,
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: GPU tests run where one is present"),
]


HOP = 2048


def synthesize(engine: s1_mini.S1MiniEngine, seed: int = 1) -> np.ndarray:
    request = base.SynthesisRequest(text="Hello from the GPU.", seed=seed, max_new_tokens=40)
    return np.concatenate(list(stepped.OneAtATime(engine).generate(request, threading.Event())))


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_gpu_generation_is_seeded_and_well_formed(tiny_checkpoint: Path, compile: bool) -> None:
    engine = s1_mini.S1MiniEngine(tiny_checkpoint, device="auto", compile=compile, max_batch_size=2)
    engine.load()
    assert engine.device.type == "cuda"
    assert engine.dtype in (torch.bfloat16, torch.float16)
    engine.warm_up()  # compiles (and records CUDA graphs) when compile=True
    first = synthesize(engine)
    assert first.dtype == np.float32 and 0 < first.size <= 40 * HOP and first.size % HOP == 0
    assert np.isfinite(first).all()
    assert np.array_equal(synthesize(engine), first)
    engine.close()
