"""The streamed codec decode of the S1 Mini engine in a process of its own (CPU).

Where it sits: ``s1_mini.S1MiniEngine.load`` starts a ``CodecProcess`` when the engine runs on
CPU with ``codec_process`` on (``VOICE_S1_CODEC_PROCESS``, the server's default), and hands its
``decode`` to ``s1_stream.AudioWorker``, whose thread then only sends windows of codes and waits
for their audio. The child runs ``python -m voice_inference.engines.s1_codec_process`` and loads
the same ``codec.pth``; reference voices are still encoded in the server's process.

Why a process: a decode call is about a thousand small torch ops, and between any two of them
Python holds the GIL. Beside the stepping thread, whose ops are as small, every op of one waits
on the other: a batched step of 8 rows took 14.8 ms beside a thread that decodes, 11.4 ms beside
a process that decodes and 11.35 ms alone (tiny checkpoint, 2 CPUs, median of 6 runs each).

The child ends when told to (``close``), and on its own when the server's end of the socket
closes, so a server that is killed leaves no decoder behind.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import torch

STOP_TIMEOUT_S = 10.0


class CodecProcessError(RuntimeError):
    """The codec process failed a call, or is gone."""


class CodecProcess:
    """A child process that decodes windows of codes with the codec at ``codec_path``."""

    def __init__(self, codec_path: Path, *, threads: int) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(codec_path), str(theirs.fileno()), str(threads)],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        self._connection = Connection(ours.detach())
        self._lock = threading.Lock()  # one call at a time on the one socket
        self._ready = False

    @property
    def pid(self) -> int:
        return self._process.pid

    def wait_ready(self) -> None:
        """Until the child has loaded the codec (it loads while the server loads the model)."""
        if not self._ready:
            self._call("ready")
            self._ready = True

    def decode(self, windows: list[torch.Tensor]) -> list[np.ndarray]:
        """``s1_stream.decode_batch`` of these windows (num_codebooks, n_i), in the child."""
        return self._call("decode", [window.to("cpu", torch.int32).numpy() for window in windows])

    def warm_up(self, num_codebooks: int, longest: int) -> int:
        """``s1_stream.warm_up_decode`` in the child; the number of shapes it warmed."""
        return self._call("warm_up", num_codebooks, longest)

    def close(self) -> None:
        """Stop the child and wait for it; kill it if it does not stop in time."""
        with self._lock:
            try:
                self._connection.send(("stop",))
            except OSError:
                pass  # already gone
            self._connection.close()
        try:
            self._process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _call(self, kind: str, *args: Any) -> Any:
        with self._lock:
            try:
                self._connection.send((kind, *args))
                outcome, value = self._connection.recv()
            except (EOFError, OSError) as exc:
                raise CodecProcessError(f"the codec process is gone (exit code {self._process.poll()})") from exc
        if outcome == "error":
            raise CodecProcessError(f"the codec process failed: {value}")
        return value


def serve(codec_path: Path, connection: Connection, threads: int) -> None:
    """The child's loop: one reply per call, until ``stop`` or the server's end closes."""
    from voice_inference.engines import s1_codec, s1_stream  # the child's own imports

    torch.set_num_threads(threads)
    codec = s1_codec.load_codec(codec_path, torch.device("cpu"))
    handlers = {
        "ready": lambda: None,
        "decode": lambda windows: s1_stream.decode_batch(
            codec, [torch.from_numpy(window) for window in windows], autocast_dtype=None
        ),
        "warm_up": lambda num_codebooks, longest: s1_stream.warm_up_decode(codec, num_codebooks, longest),
    }
    while True:
        try:
            kind, *args = connection.recv()
        except (EOFError, OSError):
            return  # the server is gone
        if kind == "stop":
            return
        try:
            reply = ("ok", handlers[kind](*args))
        except Exception as exc:  # the call's failure goes to the caller; the process serves on
            reply = ("error", f"{exc.__class__.__name__}: {exc}")
        try:
            connection.send(reply)
        except OSError:
            return


if __name__ == "__main__":
    path, descriptor, thread_count = sys.argv[1:4]
    serve(Path(path), Connection(int(descriptor)), int(thread_count))
