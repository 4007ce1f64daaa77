"""The Docker engine as the container tests see it: its CLI, run as a child process.

Used by tests/containers/fixtures.py (the fixtures) and the container tests. ``Docker`` runs
``docker`` commands and raises with their stderr; ``Container`` is one container a test
started, reached on its own IP on a network the test run created, and removed by its id.
Nothing here talks to a registry: images come from ``make images``.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The tags `make images` gives them (the chart's defaults), unless the environment names others.
VERSION = tomllib.loads((pathlib.Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["version"]
REGISTRY = os.environ.get("IMAGE_REGISTRY", "ghcr.io/voice-service")
OPERATOR_IMAGE = os.environ.get("OPERATOR_IMAGE", f"{REGISTRY}/voice-operator:{VERSION}")
INFERENCE_IMAGE = os.environ.get("INFERENCE_IMAGE", f"{REGISTRY}/voice-inference:{VERSION}")


class DockerError(RuntimeError):
    pass


class Docker:
    def __init__(self, binary: str = "docker") -> None:
        self.binary = binary

    def run(self, *args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise DockerError(f"docker {' '.join(args[:3])}...: {result.stderr.strip()}")
        return result

    def unavailable_reason(self) -> str | None:
        """Why no container can run here, or None when an engine answers."""
        if shutil.which(self.binary) is None:
            return "no docker client on PATH (apt-get install docker.io)"
        result = self.run("info", "--format", "{{.ServerVersion}}", timeout=30, check=False)
        if result.returncode != 0:
            return f"no Docker engine answers ({result.stderr.strip()[:120]}); start one: scripts/images/engine.sh start"
        return None

    def has_image(self, reference: str) -> bool:
        return self.run("image", "inspect", reference, check=False).returncode == 0

    def inspect(self, what: str) -> dict[str, Any]:
        return json.loads(self.run("inspect", what).stdout)[0]


@dataclass
class Container:
    docker: Docker
    id: str
    network: str

    @property
    def ip(self) -> str:
        networks = self.docker.inspect(self.id)["NetworkSettings"]["Networks"]
        return networks[self.network]["IPAddress"]

    def url(self, port: int) -> str:
        return f"http://{self.ip}:{port}"

    def state(self) -> dict[str, Any]:
        return self.docker.inspect(self.id)["State"]

    def logs(self) -> str:
        result = self.docker.run("logs", self.id, check=False)
        return result.stdout + result.stderr

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return self.docker.run("exec", self.id, *command, check=False)

    def signal(self, name: str) -> None:
        self.docker.run("kill", "--signal", name, self.id)

    def wait_exit(self, timeout: float) -> int:
        """The exit code, once the container has stopped (``docker wait``)."""
        result = self.docker.run("wait", self.id, timeout=timeout)
        return int(result.stdout.strip())

    def wait_http(self, url: str, *, status: int = 200, timeout: float = 120.0) -> None:
        """Poll ``url`` until it answers ``status``; fail early when the container exits."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == status:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                if exc.code == status:
                    return
                last = f"HTTP {exc.code}"
            except OSError as exc:
                last = str(exc)
            if not self.state()["Running"]:
                raise DockerError(f"container exited ({self.state()['ExitCode']}) before {url} answered:\n{self.logs()[-3000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"{url} did not answer {status} within {timeout} s (last: {last}):\n{self.logs()[-3000:]}")

    def remove(self) -> None:
        self.docker.run("rm", "--force", "--volumes", self.id, check=False)


# The pod's security context, as the operator's Deployment sets it (voice_operator.builders).
LOCKED_DOWN = (
    "--read-only",
    "--user", "10001:10001",
    "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges",
)  # fmt: skip


def start(
    docker: Docker,
    image: str,
    *args: str,
    network: str,
    env: dict[str, str] | None = None,
    options: Sequence[str] = (),
) -> Container:
    """``docker run --detach`` on ``network``; the caller removes the container."""
    env_args = [f"--env={key}={value}" for key, value in (env or {}).items()]
    result = docker.run("run", "--detach", f"--network={network}", *options, *env_args, image, *args)
    return Container(docker, result.stdout.strip(), network)
