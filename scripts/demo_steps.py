"""What both paths of `make demo` share: printing, timed steps, the Kubernetes tools, the tiny
S1 checkpoint, the WAV, the API tour.

scripts/demo_cluster.py runs the demo and its local path (kwok plays the pods, the inference
server runs here); scripts/demo_real.py is the path where the pods really run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator

import soundfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import chart_support
from tests.cluster import launcher

OUT = ROOT / "out" / "demo-cluster"
TINY_CHECKPOINT = OUT / "tiny-checkpoint"
RELEASE = "voice-operator"
RELEASE_NAMESPACE = "voice-system"
DEMO_NAMESPACE = "voice-demo"
CLEAN_UP = "clean-up"
SENTENCE = "Hello from voice-service. A VoiceService on Kubernetes synthesized this sentence."
# Seeded: unseeded, the tiny random-weight model now and then ends the sentence at once (422
# no_audio); with this seed it speaks 4.5 s of it, every time.
REQUEST = {"text": SENTENCE, "format": "wav", "seed": 1}


class StepFailed(Exception):
    """A step could not finish; the message says why (no traceback for the user)."""


def say(text: str = "") -> None:
    print(text, flush=True)


def detail(text: str) -> None:
    for line in text.splitlines():
        say(f"      {line}")


@dataclasses.dataclass
class Steps:
    """The demo's numbered steps, each timed; ``total`` is known once the path is chosen."""

    total: int = 0
    timings: list[tuple[str, float]] = dataclasses.field(default_factory=list)
    facts: dict[str, str] = dataclasses.field(default_factory=dict)  # for the summary
    started_at: float = dataclasses.field(default_factory=time.monotonic)

    @contextlib.contextmanager
    def __call__(self, title: str) -> Iterator[None]:
        number = sum(1 for title, _ in self.timings if title != CLEAN_UP) + 1
        say(f"\n==> [{number}/{self.total}] {title}" if self.total else f"\n==> [{number}] {title}")
        started = time.monotonic()
        try:
            yield
        except StepFailed as err:
            raise StepFailed(f"step {number} ({title}) failed: {err}") from None
        except Exception as err:
            # kubectl/helm failures (AssertionError from tests.cluster.client) carry the tool's own message.
            why = str(err) if isinstance(err, AssertionError) else f"{type(err).__name__}: {err}"
            raise StepFailed(f"step {number} ({title}) failed: {why}") from err
        elapsed = time.monotonic() - started
        self.timings.append((title, elapsed))
        say(f"    done in {elapsed:.1f}s")

    @contextlib.contextmanager
    def clean_up(self) -> Iterator[None]:
        """Clean-up, timed too (it runs on every way out, so failures inside it do not stop it)."""
        say("\n==> clean-up")
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings.append((CLEAN_UP, time.monotonic() - started))

    def summary(self, what_happened: str) -> None:
        say("\n==> summary")
        detail(what_happened)
        for key, value in self.facts.items():
            detail(f"{key + ':':<16}{value}")
        detail("")
        for title, seconds in self.timings:
            detail(f"{seconds:6.1f}s  {title}")
        detail(f"{time.monotonic() - self.started_at:6.1f}s  in all")


def tools(steps: Steps) -> pathlib.Path:
    bin_dir = launcher.tools_bin_dir()
    missing = launcher.missing_tools(bin_dir)
    if missing:
        detail(f"building {', '.join(missing)} into {bin_dir}")
        detail("(the first build compiles Kubernetes from Go modules: about 25 minutes on 2 cores; later runs skip it)")
        launcher.ensure_tools(bin_dir)
    version = chart_support.kube_version(bin_dir)
    detail(f"Kubernetes {version}, helm, kwok and etcd in {bin_dir}")
    steps.facts["kubernetes"] = version
    return bin_dir


def s1_available() -> bool:
    """Whether this venv can run the S1 Mini engine (the [s1] extra, `make venv-s1`)."""
    try:
        return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("fish_speech") is not None
    except (ImportError, ValueError):
        return False


def tiny_checkpoint(command: list[str] | None = None) -> pathlib.Path:
    """TINY_CHECKPOINT, written once: a random-weight checkpoint in the real S1 Mini format
    (noise, not words). ``command`` writes it (given the folder); by default this venv's
    `voice-inference make-checkpoint`."""
    if (TINY_CHECKPOINT / "codec.pth").exists():  # written last
        detail(f"the tiny random-weight S1 Mini checkpoint in {TINY_CHECKPOINT.relative_to(ROOT)} (made by an earlier run)")
        return TINY_CHECKPOINT
    argv = command or [sys.executable, "-m", "voice_inference", "make-checkpoint", str(TINY_CHECKPOINT), "--size", "tiny"]
    detail(f"writing a tiny random-weight S1 Mini checkpoint: {' '.join(argv[-4:])}")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise StepFailed(f"make-checkpoint failed: {(result.stderr or result.stdout).strip()[-1500:]}")
    return TINY_CHECKPOINT


def save_wav(steps: Steps, content: bytes, how: str, seconds: float) -> pathlib.Path:
    path = OUT / "hello.wav"
    path.write_bytes(content)
    info = soundfile.info(io.BytesIO(content))
    detail(how)
    detail(f"{len(content)} bytes: {info.duration:.2f}s of {info.samplerate} Hz audio in {seconds:.2f}s -> {path.relative_to(ROOT)}")
    steps.facts["audio"] = f"{path} ({info.duration:.2f}s)"
    return path


def api_tour() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py")], capture_output=True, text=True, timeout=600, check=False)
    detail((result.stdout + result.stderr).rstrip())
    if result.returncode != 0:
        raise StepFailed(f"scripts/demo.py exited {result.returncode}")
