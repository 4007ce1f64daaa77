"""Real storage backends on loopback, for the voice-store tests and HTTP tests that need them.

* ``MotoS3``: moto's standalone S3 server as a child process on a free loopback port, with
  IAM authentication on (so wrong credentials really fail); stopped by the process it started.
* ``LocalHub``: a small aiohttp app on a background thread that answers the Hub routes
  ``huggingface_hub`` calls to read a repo (repo info, tree listing, ``resolve`` with
  ``ETag``/``X-Repo-Commit`` headers), over in-memory repos with real git-style commits.

Fixtures: ``moto_s3`` (one server per session), ``s3_bucket`` (a fresh bucket per test, with
the AWS credentials in the environment), ``local_hub`` (a fresh Hub per test). ``env()`` on
each gives the ``VOICE_*`` and ``AWS_*`` variables for a server started as a child process.
Use them with ``from tests.storage_fixtures import moto_s3, s3_bucket, local_hub``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import numpy as np
import pytest
import soundfile
from aiohttp import web

from tests.servers import free_port

REGION = "us-east-1"


def wav_bytes(seconds: float = 0.5, rate: int = 16_000, frequency: float = 220.0) -> bytes:
    """A short sine tone as 16-bit WAV file bytes; the frequency tells voices apart."""
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    samples = (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# S3 -------------------------------------------------------------------------------------------


class MotoS3:
    """moto_server in a child process; ``access_key``/``secret_key`` are a real IAM user's in it."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host  # an address of this machine (loopback, or the real node's bridge)
        self.port = 0
        self.endpoint_url = ""
        self.access_key = ""
        self.secret_key = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count()

    def start(self, timeout: float = 60.0) -> MotoS3:
        self.port = free_port(self.host)
        self.endpoint_url = f"http://{self.host}:{self.port}"
        # The first 3 requests go unauthenticated: they create the IAM user whose key the tests use.
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with code {self.process.returncode}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"moto_server not listening on port {self.port} after {timeout} s") from None
                time.sleep(0.05)
        self._create_user()
        return self

    def _create_user(self) -> None:
        iam = boto3.client(
            "iam", endpoint_url=self.endpoint_url, region_name=REGION,
            aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
        )  # fmt: skip
        iam.create_user(UserName="voices")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="voices", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="voices")["AccessKey"]
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def client(self) -> Any:
        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=REGION,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
        )  # fmt: skip

    def create_bucket(self) -> str:
        name = f"voices-{os.getpid()}-{next(self._names)}"
        self.client().create_bucket(Bucket=name)
        return name

    def aws_env(self) -> dict[str, str]:
        """The credential chain pointed at this server's user, and nothing from the host's files."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def env(self, bucket: str, prefix: str = "") -> dict[str, str]:
        return {
            **self.aws_env(),
            "VOICE_REFERENCE_STORAGE": "s3",
            "VOICE_REFERENCE_S3_BUCKET": bucket,
            "VOICE_REFERENCE_S3_PREFIX": prefix,
            "VOICE_REFERENCE_S3_ENDPOINT_URL": self.endpoint_url,
            "VOICE_REFERENCE_S3_REGION": REGION,
        }


@dataclass
class S3Bucket:
    name: str
    server: MotoS3

    def env(self, prefix: str = "") -> dict[str, str]:
        return self.server.env(self.name, prefix)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    server = MotoS3().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_s3.aws_env().items():
        monkeypatch.setenv(name, value)
    return S3Bucket(moto_s3.create_bucket(), moto_s3)


# Hugging Face Hub ---------------------------------------------------------------------------


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


LFS_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")  # stored through LFS on the real Hub, as audio is


@dataclass
class HubCommit:
    sha: str
    date: dt.datetime
    files: dict[str, bytes]


@dataclass
class HubRepo:
    repo_type: str
    repo_id: str
    token: str | None
    commits: list[HubCommit] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha

    def commit_for(self, revision: str) -> HubCommit | None:
        sha = self.branches.get(revision, revision)
        return next((commit for commit in self.commits if commit.sha == sha), None)


class LocalHub:
    """Hub routes for reading repos, on ``127.0.0.1:<port>``; ``requests`` logs (method, path)."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], HubRepo] = {}
        self.requests: list[tuple[str, str]] = []
        self.port = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # Test-side API.

    def create_repo(self, repo_id: str, *, repo_type: str = "dataset", token: str | None = None) -> HubRepo:
        with self._lock:
            repo = HubRepo(repo_type, repo_id, token)
            self.repos[(repo_type, repo_id)] = repo
            return repo

    def commit(self, repo_id: str, changes: dict[str, bytes | None], *, repo_type: str = "dataset") -> str:
        """Add, replace (bytes) or delete (None) files on ``main``; returns the new commit sha."""
        with self._lock:
            repo = self.repos[(repo_type, repo_id)]
            parent = repo.commit_for("main")
            files = dict(parent.files) if parent else {}
            for path, data in changes.items():
                if data is None:
                    files.pop(path, None)
                else:
                    files[path] = data
            sha = hashlib.sha1(f"{repo_id}:{len(repo.commits)}:{sorted(changes)}".encode()).hexdigest()
            repo.commits.append(HubCommit(sha, dt.datetime.now(dt.UTC), files))
            repo.branches["main"] = sha
            return sha

    def count(self, method: str, fragment: str) -> int:
        with self._lock:
            return sum(1 for m, path in self.requests if m == method and fragment in path)

    def env(self, repo_id: str, *, repo_type: str = "dataset", token: str | None = None) -> dict[str, str]:
        env = {
            "VOICE_REFERENCE_STORAGE": "huggingface",
            "VOICE_REFERENCE_HF_REPO": repo_id,
            "VOICE_REFERENCE_HF_REPO_TYPE": repo_type,
            "VOICE_REFERENCE_HF_ENDPOINT": self.endpoint,
            "VOICE_REFERENCE_HF_REFRESH_SECONDS": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
        if token:
            env["VOICE_REFERENCE_HF_TOKEN"] = token
        return env

    # Lifecycle: its own event loop on a thread, so sync code, async tests and child processes can all use it.

    def start(self) -> LocalHub:
        started = threading.Event()
        errors: list[Exception] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            runner = web.AppRunner(self._app(), access_log=None)
            try:
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, "127.0.0.1", 0)
                loop.run_until_complete(site.start())
                self.port = runner.addresses[0][1]
            except Exception as exc:  # noqa: BLE001 (re-raised by start(), on the starting thread)
                errors.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="local-hub", daemon=True)
        self._thread.start()
        started.wait(30)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self._loop = self._thread = None

    # The Hub routes.

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._log_request])
        for kind in ("models", "datasets"):
            app.router.add_get(f"/api/{kind}/{{ns}}/{{name}}", self._info)
            app.router.add_get(f"/api/{kind}/{{ns}}/{{name}}/revision/{{revision}}", self._info)
            app.router.add_get(f"/api/{kind}/{{ns}}/{{name}}/tree/{{revision}}", self._tree)
            app.router.add_get(f"/api/{kind}/{{ns}}/{{name}}/tree/{{revision}}/{{path:.+}}", self._tree)
        app.router.add_get("/datasets/{ns}/{name}/resolve/{revision}/{path:.+}", self._resolve)
        app.router.add_get("/{ns}/{name}/resolve/{revision}/{path:.+}", self._resolve)
        return app

    @web.middleware
    async def _log_request(self, request: web.Request, handler: Any) -> web.StreamResponse:
        with self._lock:
            self.requests.append((request.method, request.path))
        return await handler(request)

    def _repo_type(self, request: web.Request) -> str:
        path = request.path
        return "dataset" if path.startswith(("/api/datasets/", "/datasets/")) else "model"

    def _find(self, request: web.Request) -> tuple[HubRepo, HubCommit]:
        """The repo and commit a request names, or the Hub's error response for it."""
        repo_id = f"{request.match_info['ns']}/{request.match_info['name']}"
        with self._lock:
            repo = self.repos.get((self._repo_type(request), repo_id))
            if repo is None:
                raise _hub_error(404, "RepoNotFound", "Repository not found")
            if repo.token is not None:
                auth = request.headers.get("Authorization")
                if auth is None:
                    raise _hub_error(401, "RepoNotFound", "Repository not found")
                if auth != f"Bearer {repo.token}":
                    message = "Invalid credentials in Authorization header"  # what the Hub says to a bad token
                    raise web.HTTPUnauthorized(headers={"X-Error-Message": message})
            commit = repo.commit_for(request.match_info.get("revision", "main"))
            if commit is None:
                raise _hub_error(404, "RevisionNotFound", "Invalid rev id")
            return repo, commit

    async def _info(self, request: web.Request) -> web.Response:
        repo, commit = self._find(request)
        return web.json_response({
            "id": repo.repo_id,
            "sha": commit.sha,
            "lastModified": commit.date.isoformat().replace("+00:00", "Z"),
            "private": repo.token is not None,
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
        })  # fmt: skip

    async def _tree(self, request: web.Request) -> web.Response:
        _, commit = self._find(request)
        folder = request.match_info.get("path", "").strip("/")
        recursive = request.query.get("recursive", "false").lower() == "true"
        root = f"{folder}/" if folder else ""
        if folder and not any(path.startswith(root) for path in commit.files):
            raise _hub_error(404, "EntryNotFound", f"{folder} does not exist on main", commit=commit.sha)
        entries: dict[str, dict[str, Any]] = {}
        for path, data in sorted(commit.files.items()):
            if not path.startswith(root):
                continue
            parts = path[len(root) :].split("/")
            for depth in range(1, len(parts)):  # the folders on the way
                sub = root + "/".join(parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(sub, {"type": "directory", "oid": git_blob_id(sub.encode()), "path": sub})
            if recursive or len(parts) == 1:
                entries[path] = _file_entry(path, data)
        return web.json_response(list(entries.values()))

    async def _resolve(self, request: web.Request) -> web.Response:
        _, commit = self._find(request)
        path = request.match_info["path"]
        data = commit.files.get(path)
        if data is None:
            raise _hub_error(404, "EntryNotFound", f"{path} does not exist", commit=commit.sha)
        entry = _file_entry(path, data)
        etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{etag}"'}
        if "lfs" in entry:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        return web.Response(body=data, headers=headers, content_type="application/octet-stream")


def _file_entry(path: str, data: bytes) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "oid": git_blob_id(data), "size": len(data), "path": path}
    if path.lower().endswith(LFS_SUFFIXES):
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry


def _hub_error(status: int, code: str, message: str, *, commit: str | None = None) -> web.HTTPException:
    headers = {"X-Error-Code": code, "X-Error-Message": message}
    if commit:
        headers["X-Repo-Commit"] = commit
    kind = {401: web.HTTPUnauthorized, 404: web.HTTPNotFound}[status]
    return kind(headers=headers, text=json.dumps({"error": message}), content_type="application/json")


@pytest.fixture
def local_hub() -> Iterator[LocalHub]:
    hub = LocalHub().start()
    try:
        yield hub
    finally:
        hub.stop()
