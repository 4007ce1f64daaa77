"""The HTTP contract, fuzzed: schemathesis reads the real server's own ``/openapi.json``
(mock engine), generates requests from it, valid and invalid, and runs every check it has,
stateful phase included (voices created, read back and deleted through the document's links),
once with auth off and once with API keys on and the right key supplied.

A run passes when schemathesis reports zero failures and zero errors with every phase run
against every operation of the route table, and the server's own log shows no 5xx and no
traceback: a client's malformed request is one line there. ``GET /v1/tts/live`` is a
WebSocket: schemathesis sends it only plain GETs, whose documented answer, 426 Upgrade
Required, is what is checked there (the sessions themselves are ``test_live_api``'s). The run
is bounded (examples per operation, a fixed seed) so it stays reproducible;
``FUZZ_MAX_EXAMPLES`` / ``FUZZ_SEED`` widen it locally. Generation is taught what an audio
file is, how to send msgpack, and which form cases a client can send, by ``fuzz_hooks``;
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
from voice_inference import routes

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "20"))
SEED = int(os.environ.get("FUZZ_SEED", "20261201"))
KEY = "contract-fuzz-key"
PHASES = ("coverage", "fuzzing", "stateful")  # examples: the document has none to replay

# aiohttp's access log line: ... "METHOD /path?query HTTP/1.1" STATUS SIZE ...
ACCESS = re.compile(r'"([A-Z]+) ([^\s?]*)\S* HTTP/[\d.]+" (\d{3}) ')


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
    # Every route but GET /openapi.json: schemathesis leaves out the document it was loaded from.
    assert report["operations"]["tested"] == report["operations"]["total"] == len(routes.ROUTES) - 1, report["operations"]
    assert all(report["phases"][phase]["status"] == "success" for phase in PHASES), report["phases"]
    assert report["test_cases"]["generated"] >= 100, report["test_cases"]

    assert server.log_path is not None
    log = server.log_path.read_text(errors="replace")
    answered = {(method, path, int(status)) for method, path, status in ACCESS.findall(log)}
    statuses = [int(status) for _, _, status in ACCESS.findall(log)]
    assert len(statuses) >= report["test_cases"]["generated"], "the server saw the generated requests"
    # The 5xx lines, with the server's warnings and errors that say why.
    errors = [line for line in log.splitlines() if (m := ACCESS.search(line)) and int(m.group(3)) >= 500]
    warnings = [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line]
    assert not errors, "5xx answers in the server's log:\n" + "\n".join(errors[:20] + warnings[:20])
    assert "Traceback" not in log
    assert 201 in statuses, "no voice was ever created: the stateful phase never reached the store"
    assert ("POST", "/model", 201) in answered, "no voice was created through Fish Audio's /model"
    assert ("GET", "/v1/tts/live", 426) in answered, "the WebSocket route's plain-HTTP answer was never seen"
    assert 400 in statuses and 422 in statuses, "invalid requests were generated and rejected"
    if auth == "api-keys":
        assert 401 in statuses, "requests without the key were tried and refused"
