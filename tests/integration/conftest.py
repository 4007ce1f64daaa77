"""Fixtures that run the real inference server as a child process on loopback.

``server``: one mock-engine server for the module (local voice store in a temp folder).
``start_server(env)``: a server with its own settings, stopped at the end of the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers import ServerProcess

StartServer = Callable[..., ServerProcess]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    started: list[ServerProcess] = []

    def start(env: dict[str, str] | None = None, *, wait_ready: bool = True) -> ServerProcess:
        settings = {"VOICE_TTS_PROVIDER": "mock", "VOICE_REFERENCE_PATH": str(tmp_path / "references"), **(env or {})}
        server = ServerProcess(settings, log_path=tmp_path / f"server-{len(started)}.log")
        started.append(server)
        return server.start(wait_ready=wait_ready)

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("server")
    env = {"VOICE_TTS_PROVIDER": "mock", "VOICE_REFERENCE_PATH": str(folder / "references")}
    with ServerProcess(env, log_path=folder / "server.log") as running:
        yield running
