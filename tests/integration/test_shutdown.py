"""SIGTERM drains the real server process (tests/drain_checks.py has the policy and its
checks; tests/containers/test_inference_image.py runs the same checks on the image)."""

from __future__ import annotations

import signal

from tests import drain_checks
from tests.integration.conftest import StartServer


def test_sigterm_drains_accepted_requests_and_exits_zero(start_server: StartServer) -> None:
    server = start_server({"VOICE_MOCK_CHUNK_COST_MS": "100"})
    assert server.process is not None
    process = server.process

    outcome = drain_checks.check_drain(
        server.url,
        send_sigterm=lambda: process.send_signal(signal.SIGTERM),
        wait_exit=lambda timeout: process.wait(timeout=timeout),
    )
    drain_checks.assert_drained(outcome)
    log = server.log_path.read_text() if server.log_path else ""
    assert "Traceback" not in log

