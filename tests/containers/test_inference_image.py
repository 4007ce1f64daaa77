"""The inference image as the operator's pods run it: uid 10001, read-only root, no
capabilities, emptyDirs at /tmp, /cache and /references, on a network with no route out.

It turns ready on /health/ready, serves both APIs (the mock engine, and the S1 Mini engine
on a tiny random-weight checkpoint that the image itself writes, mounted read-only), and
drains on SIGTERM as tests/drain_checks.py defines it. The image has no GPU here:
``VOICE_S1_DEVICE=auto`` picks the CPU.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from tests import audio_checks, drain_checks
from tests.containers import engine

# The pod's writable places, as voice_operator.builders.deployment mounts them (emptyDirs).
# An emptyDir allows executables (Triton loads the launchers it builds from /tmp); Docker's
# --tmpfs is noexec unless told, so /tmp says exec.
POD_VOLUMES = ("--tmpfs", "/tmp:exec,uid=10001,gid=10001", "--tmpfs", "/cache:uid=10001,gid=10001",
               "--tmpfs", "/references:uid=10001,gid=10001")  # fmt: skip

# A C extension built and loaded the way Triton builds its CUDA driver stub and each kernel's
# launcher when torch.compile first runs on a GPU (gcc, Python's headers, a cache under $HOME).
TRITON_BUILD_PROBE = """
from triton.runtime.build import compile_module_from_src
SOURCE = '''
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "probe", NULL, -1, methods};
PyMODINIT_FUNC PyInit_probe(void) { return PyModule_Create(&module); }
'''
print("answer", compile_module_from_src(SOURCE, "probe").answer())
"""

StartInference = Callable[..., engine.Container]


@pytest.fixture
def start_inference(
    docker: engine.Docker, inference_image: str, container_network: str
) -> Iterator[StartInference]:
    started: list[engine.Container] = []

    def start(env: dict[str, str], *options: str, ready_timeout: float = 120) -> engine.Container:
        container = engine.start(
            docker, inference_image, network=container_network, env=env,
            options=[*engine.LOCKED_DOWN, *POD_VOLUMES, *options],
        )  # fmt: skip
        started.append(container)
        container.wait_http(f"{container.url(8080)}/health/ready", timeout=ready_timeout)
        return container

    yield start
    for container in started:
        print(f"--- {container.id[:12]} log ---\n{container.logs()[-3000:]}")
        container.remove()


def test_mock_engine_serves_both_apis_locked_down(docker: engine.Docker, start_inference: StartInference) -> None:
    container = start_inference({"VOICE_TTS_PROVIDER": "mock"})
    url = container.url(8080)

    tts = httpx.post(f"{url}/v1/tts", json={"text": "Hello from the image.", "format": "wav"}, timeout=30)
    assert tts.status_code == 200 and tts.headers["content-type"].startswith("audio/wav")
    assert audio_checks.duration(tts.content, "wav") > 0.5

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    speech = client.audio.speech.create(model="s1-mini", voice="default", input="Hello from the image.", response_format="mp3")
    assert audio_checks.duration(speech.content, "mp3") > 0.5

    bad = httpx.post(f"{url}/v1/tts", json={"text": "x", "top_p": 7}, timeout=30)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "top_p"

    # The container's own view: the user, the read-only root, no capabilities.
    config = docker.inspect(container.id)
    assert config["Config"]["User"] == "10001:10001" and config["HostConfig"]["ReadonlyRootfs"]
    assert container.exec("id", "-u").stdout.strip() == "10001"
    assert "Read-only file system" in container.exec("touch", "/opt/venv/x").stderr
    status = container.exec("grep", "CapEff", "/proc/1/status").stdout.split()
    assert status[-1] == "0000000000000000", status


def test_triton_builds_its_gpu_launchers_in_the_locked_down_container(docker: engine.Docker, inference_image: str) -> None:
    # Without a C compiler in the image, VOICE_S1_COMPILE=true fails its warm-up on every GPU.
    built = docker.run("run", "--rm", "--network=none", *engine.LOCKED_DOWN, *POD_VOLUMES, "--entrypoint", "python",
                       inference_image, "-c", TRITON_BUILD_PROBE, timeout=120, check=False)  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    assert built.stdout.split() == ["answer", "42"]


def test_sigterm_drains_and_exits_zero(start_inference: StartInference) -> None:
    container = start_inference({"VOICE_TTS_PROVIDER": "mock", **drain_checks.SERVER_ENV})
    outcome = drain_checks.check_drain(
        container.url(8080), send_sigterm=lambda: container.signal("TERM"), wait_exit=container.wait_exit
    )
    drain_checks.assert_drained(outcome)
    assert "Traceback" not in container.logs()


@pytest.mark.s1
def test_s1_engine_on_a_tiny_checkpoint_mounted_read_only(
    docker: engine.Docker, inference_image: str, start_inference: StartInference, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "checkpoints"
    out.mkdir()
    out.chmod(0o777)
    made = docker.run("run", "--rm", "--network=none", *engine.LOCKED_DOWN, *POD_VOLUMES,
                      "--volume", f"{out}:/out", inference_image, "make-checkpoint", "/out/tiny", "--size", "tiny",
                      timeout=300, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert {p.name for p in (out / "tiny").iterdir()} >= {"model.pth", "codec.pth", "config.json"}

    container = start_inference(
        {"VOICE_S1_DEVICE": "auto", "VOICE_S1_CPU_THREADS": "2"},
        "--volume", f"{out / 'tiny'}:/checkpoints:ro",
        ready_timeout=300,
    )  # fmt: skip
    url = container.url(8080)
    assert httpx.get(f"{url}/health/ready", timeout=10).json()["engine"] == "s1_mini"
    tts = httpx.post(f"{url}/v1/tts", json={"text": "Hi.", "format": "wav", "max_new_tokens": 16, "seed": 1}, timeout=120)
    assert tts.status_code == 200, tts.text
    samples, rate, _ = audio_checks.decode(tts.content, "wav")
    assert rate > 0 and samples.size > 0
    speech = openai.OpenAI(base_url=f"{url}/v1", api_key="unused").audio.speech.create(
        model="s1-mini", voice="default", input="Hi.", response_format="wav"
    )
    assert audio_checks.decode(speech.content, "wav")[0].size > 0
