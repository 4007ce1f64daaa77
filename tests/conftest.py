"""Fixtures shared by more than one test folder, registered once here.

``tests.storage_fixtures`` (a real S3-compatible server, a local Hugging Face Hub) serves the
voice-store tests and the operator's checkpoint fetcher; ``tests.containers.fixtures`` the
tests that run our images in a Docker engine. ``tiny_checkpoint`` is the S1 Mini
tests' random-weight checkpoint: ``tests.s1_support`` needs torch, so it is imported only when
a test asks for the fixture, and the suite still collects without the [s1] extra.

A SIGTERM or SIGHUP to the test run interrupts it like Ctrl-C (``tests.lifetime``), so every
fixture's teardown stops what it started (operators, servers, the session's cluster).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import lifetime

pytest_plugins = ["tests.storage_fixtures", "tests.containers.fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    lifetime.terminate_as_interrupt()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests import s1_support

    return s1_support.tiny_checkpoint_dir(tmp_path_factory)
