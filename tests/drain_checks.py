"""The drain policy on SIGTERM, checked against any running inference server.

Used by tests/integration/test_shutdown.py (a server process) and by
tests/containers/test_inference_image.py (the image in Docker), which pass how to signal
the server and how to wait for its exit. The policy (README, "Shutdown"): the listening
socket closes at once, so probes and new connections fail (a request on a connection
already open gets 503 ``draining``); requests already accepted, running or waiting, finish
with their whole audio; the process then exits 0, well inside the pod's grace period.
Needs the mock engine with ``SERVER_ENV``: a request takes seconds, and with one batch slot
the second request waits in the queue behind the first.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

SERVER_ENV = {"VOICE_MOCK_CHUNK_COST_MS": "100", "VOICE_MAX_BATCH_SIZE": "1"}
TEXT = "A sentence long enough to keep the engine busy for a couple of seconds while it drains."


@dataclass
class Outcome:
    status: int
    body: bytes
    seconds: float


def _speak(base_url: str, started: concurrent.futures.Future[None] | None = None) -> Outcome:
    begin = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=60) as client:
        with client.stream("POST", "/v1/tts", json={"text": TEXT, "format": "wav", "streaming": True}) as response:
            body = b""
            for chunk in response.iter_bytes():
                if started is not None and not started.done():
                    started.set_result(None)
                body += chunk
            return Outcome(response.status_code, body, time.monotonic() - begin)


def _refused(base_url: str) -> str:
    """What a new connection gets: 'refused' when the socket is closed, else the status."""
    try:
        response = httpx.get(f"{base_url}/health/ready", timeout=5)
    except httpx.TransportError:
        return "refused"
    return str(response.status_code)


def check_drain(base_url: str, send_sigterm: Callable[[], None], wait_exit: Callable[[float], int]) -> dict[str, object]:
    """Run the drain once; returns what happened for the caller's assertions and report."""
    expected = _speak(base_url)  # the mock is deterministic: this is the whole answer
    assert expected.status == 200 and len(expected.body) > 10_000, expected.status
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        running_started: concurrent.futures.Future[None] = concurrent.futures.Future()
        running = pool.submit(_speak, base_url, running_started)
        running_started.result(timeout=30)  # its first audio arrived: the request is accepted
        waiting = pool.submit(_speak, base_url)  # queued behind it
        deadline = time.monotonic() + 10
        while _metric(base_url, "voice_queue_depth") < 1:
            assert time.monotonic() < deadline, "the second request never queued"
            time.sleep(0.05)
        signalled = time.monotonic()
        send_sigterm()
        new_connection = wait_for(lambda: _refused(base_url) in ("refused", "503"), timeout=5)
        after_sigterm = _refused(base_url)
        results = [running.result(timeout=60), waiting.result(timeout=60)]
    exit_code = wait_exit(60)
    return {
        "expected": expected,
        "results": results,
        "new_connection_closed": new_connection,
        "new_connection": after_sigterm,
        "exit_code": exit_code,
        "exit_seconds": time.monotonic() - signalled,
    }


def assert_drained(outcome: dict[str, object], grace_seconds: float = 60) -> None:
    expected = outcome["expected"]
    assert isinstance(expected, Outcome)
    assert outcome["new_connection_closed"], f"a new connection still got {outcome['new_connection']} after SIGTERM"
    for result in outcome["results"]:  # type: ignore[attr-defined]
        assert result.status == 200, result.status
        assert result.body == expected.body, f"an accepted request lost audio: {len(result.body)} of {len(expected.body)} bytes"
    assert outcome["exit_code"] == 0, outcome["exit_code"]
    assert outcome["exit_seconds"] < grace_seconds  # type: ignore[operator]


def _metric(base_url: str, name: str) -> float:
    try:
        text = httpx.get(f"{base_url}/metrics", timeout=5).text
    except httpx.TransportError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False
