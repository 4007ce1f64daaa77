"""Fixtures for tests that run our images in the real Docker engine (tests/containers/ and
the e2e tests of the images), registered once by the root conftest.

Without an engine, or without the images (``make images``), these tests skip and say why;
where ``VOICE_REQUIRE_CONTAINERS=1`` (``.ci/run`` sets it) they fail instead, so CI never
passes by skipping them. Containers run on an ``--internal`` network the session creates:
they reach each other and this machine, never anything beyond it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.containers import engine


def _missing(reason: str) -> None:
    if os.environ.get("VOICE_REQUIRE_CONTAINERS") == "1":
        pytest.fail(f"VOICE_REQUIRE_CONTAINERS=1, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker() -> engine.Docker:
    client = engine.Docker()
    reason = client.unavailable_reason()
    if reason:
        _missing(reason)
    return client


def _image(docker: engine.Docker, reference: str) -> str:
    if not docker.has_image(reference):
        _missing(f"image {reference} is not built (make images)")
    return reference


@pytest.fixture(scope="session")
def operator_image(docker: engine.Docker) -> str:
    return _image(docker, engine.OPERATOR_IMAGE)


@pytest.fixture(scope="session")
def inference_image(docker: engine.Docker) -> str:
    return _image(docker, engine.INFERENCE_IMAGE)


@pytest.fixture(scope="session")
def container_network(docker: engine.Docker) -> Iterator[str]:
    """A bridge network without a route out (``--internal``), removed at the end."""
    name = f"voice-test-{os.getpid()}"
    docker.run("network", "create", "--internal", name)
    yield name
    docker.run("network", "rm", name, check=False)
