"""The HTTP contract, fuzzed: schemathesis reads the real server's own ``/openapi.json``
(mock engine), generates requests from it, valid and invalid, and runs every check it has,
stateful phase included (voices created, read back and deleted through the document's links),
once with auth off and once with API keys on and the right key supplied.

A run passes when schemathesis reports zero failures and zero errors with every phase run
against every operation, and the server's own log shows no 5xx and no traceback: a client's
malformed request is one line there. The run is bounded (examples per operation, a fixed
seed) so it stays reproducible; ``FUZZ_MAX_EXAMPLES`` / ``FUZZ_SEED`` widen it locally.
Generation is taught what an audio file is, and how to send msgpack, by ``fuzz_hooks``;
``schemathesis.toml`` beside this file holds the rest of its settings.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import StartServer

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "20"))
SEED = int(os.environ.get("FUZZ_SEED", "20261201"))
KEY = "contract-fuzz-key"
PHASES = ("coverage", "fuzzing", "stateful")  # examples: the document has none to replay

# aiohttp's access log line: ... "METHOD /path HTTP/1.1" STATUS SIZE ...
ACCESS = re.compile(r'"[A-Z]+ \S* HTTP/[\d.]+" (\d{3}) ')


def schemathesis_run(url: str, workdir: Path, *, headers: list[str]) -> tuple[subprocess.CompletedProcess[str], dict]:
    report = workdir / "run.json"
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(HERE / "schemathesis.toml"), "--no-color",
        "run", f"{url}/openapi.json", "--checks", "all", "--phases", ",".join(("examples", *PHASES)),
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
        "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    for header in headers:
        command += ["--header", header]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.fuzz_hooks", "PYTHONPATH": str(ROOT)}
    # The working folder keeps schemathesis's cache (and any crash files) out of the repository.
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=540)
    return result, json.loads(report.read_text()) if report.exists() else {}


@pytest.mark.parametrize("auth", ["off", "api-keys"])
def test_the_documented_contract_holds_under_fuzzing(auth: str, start_server: StartServer, tmp_path: Path) -> None:
    env = {"VOICE_LOG_LEVEL": "info"}  # the access log: one line, with its status, per request
    if auth == "api-keys":
        env["VOICE_API_KEYS"] = KEY
    server = start_server(env)
    headers = [f"Authorization: Bearer {KEY}"] if auth == "api-keys" else []

    result, report = schemathesis_run(server.url, tmp_path, headers=headers)

    output = result.stdout[-30000:] + result.stderr[-5000:]
    assert result.returncode == 0 and report.get("exit_code") == 0, output
    assert report["failures"] == [] and report["errors"] == [], output
    assert report["operations"]["tested"] == report["operations"]["total"] >= 9, report["operations"]
    assert all(report["phases"][phase]["status"] == "success" for phase in PHASES), report["phases"]
    assert report["test_cases"]["generated"] >= 100, report["test_cases"]

    assert server.log_path is not None
    log = server.log_path.read_text(errors="replace")
    statuses = [int(status) for status in ACCESS.findall(log)]
    assert len(statuses) >= report["test_cases"]["generated"], "the server saw the generated requests"
    assert not [status for status in statuses if status >= 500], "5xx answers in the server's log"
    assert "Traceback" not in log
    assert 201 in statuses, "no voice was ever created: the stateful phase never reached the store"
    assert 400 in statuses and 422 in statuses, "invalid requests were generated and rejected"
    if auth == "api-keys":
        assert 401 in statuses, "requests without the key were tried and refused"
