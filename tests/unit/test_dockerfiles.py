"""The two images, checked without a Docker engine (there is none on these machines).

Dockerfile.operator and Dockerfile.inference are parsed by a small parser here (line
continuations, comments, JSON and shell forms, ARG substitution in FROM), then checked for
what can go wrong without building: a COPY of a path that does not exist, an entrypoint
that is not a console script or does not import, a root user, a Python base that disagrees
with pyproject, a CUDA base image or a torch from anywhere but the [s1] extra's pin (torch's
wheels bring their CUDA libraries), a compiler left in the final stage (but the C compiler
Triton needs at run time in the inference image), health and ports that disagree with the
operator's contract and the Helm chart, and an operator image that lacks a package
voice_operator imports. `docker build` itself runs where Docker is (README).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import json
import pathlib
import re
import shlex
import subprocess
import sys
import tomllib
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from voice_operator import contract

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
DOCKERFILES = ("Dockerfile.operator", "Dockerfile.inference")

KNOWN_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}
COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|cmake|make|[\w.+-]+-dev|cuda-nvcc[\w-]*|nvidia-cuda-toolkit)\b")


# -- a small Dockerfile parser -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str  # everything after the keyword, continuations joined
    line: int

    @property
    def json_form(self) -> list[str] | None:
        """The arguments of the exec (JSON) form, or None for the shell form."""
        if not self.value.startswith("["):
            return None
        parsed = json.loads(self.value)
        assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), self
        return parsed

    def flags_and_args(self) -> tuple[dict[str, str], list[str]]:
        """`--flag=value` options, then the remaining words (COPY, FROM, HEALTHCHECK)."""
        words = shlex.split(self.value)
        flags: dict[str, str] = {}
        while words and words[0].startswith("--"):
            key, _, value = words.pop(0)[2:].partition("=")
            flags[key] = value
        return flags, words


@dataclasses.dataclass
class Stage:
    name: str | None
    base: str  # the image, ARGs substituted (for FROM <stage>, that stage's image)
    instructions: list[Instruction]
    parent: Stage | None = None  # the earlier stage it is built FROM, if any

    def lineage(self) -> list[Stage]:
        """This stage and the stages it is built on, nearest first."""
        return [self, *(self.parent.lineage() if self.parent else [])]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclasses.dataclass
class Dockerfile:
    path: pathlib.Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse_instructions(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        # Comments (also between continued lines, as Docker allows) and blank lines.
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(part for part in pending if part)
        pending = []
        keyword, _, value = joined.partition(" ")
        out.append(Instruction(keyword.upper(), value.strip(), start))
    assert not pending, "the file ends inside a line continuation"
    return out


def _substitute(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), value)


def parse(path: pathlib.Path) -> Dockerfile:
    instructions = parse_instructions(path.read_text())
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in instructions:
        assert ins.keyword in KNOWN_INSTRUCTIONS, f"{path.name}:{ins.line}: unknown instruction {ins.keyword}"
        if ins.keyword == "FROM":
            _, words = ins.flags_and_args()
            assert len(words) in (1, 3), f"{path.name}:{ins.line}: FROM image [AS name]"
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            base = _substitute(words[0], global_args)
            parent = next((stage for stage in stages if stage.name == base), None)
            stages.append(Stage(name, parent.base if parent else base, [], parent))
        elif not stages:
            assert ins.keyword == "ARG", f"{path.name}:{ins.line}: only ARG may come before the first FROM"
            key, _, default = ins.value.partition("=")
            global_args[key] = default.strip('"')
        else:
            stages[-1].instructions.append(ins)
    assert stages, f"{path.name} has no FROM"
    return Dockerfile(path, global_args, stages)


@pytest.fixture(scope="module", params=DOCKERFILES)
def dockerfile(request: pytest.FixtureRequest) -> Dockerfile:
    return parse(REPO_ROOT / request.param)


@pytest.fixture(scope="module")
def operator_image() -> Dockerfile:
    return parse(REPO_ROOT / "Dockerfile.operator")


@pytest.fixture(scope="module")
def inference_image() -> Dockerfile:
    return parse(REPO_ROOT / "Dockerfile.inference")


def test_parser_handles_continuations_and_forms() -> None:
    text = 'ARG B=x:1\nFROM ${B} AS one\n# note\nRUN a \\\n  # inner comment\n  && b\nCMD ["serve", "--x"]\n'
    parsed = parse_instructions(text)
    assert [(i.keyword, i.value, i.line) for i in parsed] == [
        ("ARG", "B=x:1", 1), ("FROM", "${B} AS one", 2), ("RUN", "a && b", 4), ("CMD", '["serve", "--x"]', 7),
    ]
    assert parsed[3].json_form == ["serve", "--x"]


# -- every file ------------------------------------------------------------------------------


def test_bases_are_pinned(dockerfile: Dockerfile) -> None:
    names = {s.name for s in dockerfile.stages if s.name}
    for stage in dockerfile.stages:
        if stage.base in names:
            continue
        assert "$" not in stage.base, f"{dockerfile.path.name}: unresolved ARG in FROM {stage.base}"
        repository, _, tag = stage.base.rpartition(":")
        assert repository and tag and tag != "latest", f"{dockerfile.path.name}: pin a tag, not {stage.base}"
        # A full patch version, so a rebuild next month gets the same base.
        assert re.search(r"\d+\.\d+\.\d+", tag), f"{dockerfile.path.name}: {stage.base} is not pinned to a patch release"


def test_copy_sources_exist(dockerfile: Dockerfile) -> None:
    names = {s.name for s in dockerfile.stages if s.name}
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    for stage in dockerfile.stages:
        for ins in stage.all("COPY") + stage.all("ADD"):
            flags, words = ins.flags_and_args()
            sources = ins.json_form[:-1] if ins.json_form else words[:-1]
            assert sources, f"{dockerfile.path.name}:{ins.line}: COPY needs a source and a destination"
            if "from" in flags:
                assert flags["from"] in names, f"{dockerfile.path.name}:{ins.line}: no stage named {flags['from']}"
                continue
            for source in sources:
                matches = list(REPO_ROOT.glob(source))
                assert matches, f"{dockerfile.path.name}:{ins.line}: COPY {source}: no such path in the repository"
                assert source.split("/")[0] not in ignored, f"{dockerfile.path.name}: {source} is excluded by .dockerignore"


def test_runs_as_non_root(dockerfile: Dockerfile) -> None:
    user = dockerfile.final.last("USER")
    assert user is not None, f"{dockerfile.path.name}: the final stage sets no USER (it would run as root)"
    uid, _, gid = user.value.partition(":")
    # Numeric, so the kubelet's runAsNonRoot check can verify it without /etc/passwd.
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0), user.value
    assert int(uid) == contract.RUN_AS_USER
    # The user exists in the image (useradd with that uid in the final stage).
    assert any(f"--uid {uid}" in run.value for run in dockerfile.final.all("RUN"))
    # Nothing after USER switches back.
    after = dockerfile.final.instructions[dockerfile.final.instructions.index(user) + 1 :]
    assert not [i for i in after if i.keyword == "RUN"], "RUN after USER: fine in principle, but keep installs above it"


# The one build tool a final stage may keep, and why: Triton compiles its CUDA launchers from C
# at run time, so torch.compile on a GPU needs gcc (tests/containers checks that it builds one).
RUN_TIME_TOOLCHAIN = {"Dockerfile.inference": {"gcc", "libc6-dev"}}


def test_no_compiler_in_the_final_stage(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    assert "devel" not in final.base, f"{dockerfile.path.name}: a -devel base carries nvcc and gcc"
    allowed = RUN_TIME_TOOLCHAIN.get(dockerfile.path.name, set())
    for run in final.all("RUN"):
        installs = re.findall(r"apt-get install ([^&;|]+)", run.value)
        for packages in installs:
            found = set(COMPILERS.findall(packages)) - allowed
            assert not found, f"{dockerfile.path.name}:{run.line}: the final stage installs {sorted(found)}"
    # Only the built environment comes over from the build stage, not the sources or caches.
    for ins in final.all("COPY"):
        flags, _ = ins.flags_and_args()
        assert flags.get("from"), f"{dockerfile.path.name}:{ins.line}: the final stage copies from the build stage only"


def test_python_matches_pyproject(dockerfile: Dockerfile) -> None:
    wanted = re.search(r">=(\d+\.\d+)", PYPROJECT["project"]["requires-python"])
    assert wanted is not None
    version = wanted.group(1)
    for stage in dockerfile.stages:
        text = stage.base + " " + " ".join(i.value for i in stage.all("RUN"))
        pythons = set(re.findall(r"python:?(\d+\.\d+)", text))
        assert pythons == {version}, f"{dockerfile.path.name}: stage {stage.name or 'final'} uses Python {pythons}, pyproject wants {version}"


def test_entrypoint_is_a_console_script_that_imports(dockerfile: Dockerfile) -> None:
    entrypoint = dockerfile.final.last("ENTRYPOINT")
    assert entrypoint is not None and entrypoint.json_form, "ENTRYPOINT in exec form (signals reach the process)"
    script = entrypoint.json_form[0]
    target = PYPROJECT["project"]["scripts"].get(script)
    assert target, f"{script} is not in pyproject's [project.scripts]"
    module_name, _, function = target.partition(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, function))
    # The default command is one the program accepts.
    cmd = dockerfile.final.last("CMD")
    assert cmd is not None and cmd.json_form
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; from {module_name} import {function} as m; sys.exit(m())", *cmd.json_form, "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr


def test_make_targets_run_in_the_build_exist(dockerfile: Dockerfile) -> None:
    # `make X` in a RUN must be a target of the Makefile (and mk/*.mk) the image copies;
    # `make -n` prints the recipe without running it, and fails on an unknown target.
    copied = " ".join(i.value for s in dockerfile.stages for i in s.all("COPY"))
    for stage in dockerfile.stages:
        for run in stage.all("RUN"):
            for call in re.findall(r"\bmake\s+([^&;|]+)", run.value):
                assert "Makefile" in copied and "mk" in copied.split(), f"{dockerfile.path.name}: make needs Makefile and mk/ copied"
                result = subprocess.run(
                    ["make", "-n", *shlex.split(call)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
                )
                assert result.returncode == 0, f"{dockerfile.path.name}:{run.line}: make {call}: {result.stderr.strip()}"


# -- the operator image ------------------------------------------------------------------------


def _distribution_closure(requirements: list[str]) -> set[str]:
    """Every distribution these requirements install, as installed here (names normalized)."""

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = norm(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(req.name) or []
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"{req.name} is not installed here: this check needs the [operator] extra")
        for extra in req.extras or {""}:
            for sub in requires:
                parsed = Requirement(sub)
                if parsed.marker is None or parsed.marker.evaluate({"extra": extra}):
                    todo.append(parsed)
    return seen


def _third_party_imports(package_dir: pathlib.Path) -> set[str]:
    modules: set[str] = set()
    for path in package_dir.rglob("*.py"):
        for match in re.finditer(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", path.read_text(), re.MULTILINE):
            modules.add(match.group(1))
    local = {package_dir.name, "voice_inference", "__future__"}
    return {m for m in modules - local if m not in sys.stdlib_module_names}


def test_operator_image_installs_what_voice_operator_imports(operator_image: Dockerfile) -> None:
    build = operator_image.stages[0]
    arg = next(i for i in build.all("ARG") if i.value.startswith("OPERATOR_BASE_DEPS="))
    wanted = set(arg.value.partition("=")[2].strip('"').split())
    base = [d for d in PYPROJECT["project"]["dependencies"] if Requirement(d).name in wanted]
    assert {Requirement(d).name for d in base} == wanted, f"OPERATOR_BASE_DEPS names {wanted - {Requirement(d).name for d in base}}, not in pyproject"
    installed = _distribution_closure(base + PYPROJECT["project"]["optional-dependencies"]["operator"])
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(_third_party_imports(REPO_ROOT / "operator" / "voice_operator")):
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(module, [])}
        if not dists & installed:
            missing[module] = dists
    assert not missing, f"Dockerfile.operator does not install what voice_operator imports: {missing}"
    # The server's audio and model stack stays out of the operator image (aiohttp does
    # come in: kopf is built on it).
    assert not {"torch", "numpy", "av", "soundfile", "ormsgpack"} & installed


def test_operator_image_ports_match_the_chart(operator_image: Dockerfile) -> None:
    values = yaml.safe_load((REPO_ROOT / "charts" / "voice-operator" / "values.yaml").read_text())
    exposed = {int(p) for i in operator_image.final.all("EXPOSE") for p in i.value.split()}
    assert exposed == {values["liveness"]["port"], values["metrics"]["port"]}
    chart_default = f"{values['image']['repository']}:{PYPROJECT['project']['version']}"
    assert chart_default in operator_image.path.read_text(), "the build command in the header names the chart's default image"


# -- the inference image -----------------------------------------------------------------------


def _s1_torch_pin() -> str:
    extras: dict[str, Any] = PYPROJECT["project"].get("optional-dependencies", {})
    assert "s1" in extras, "pyproject.toml has no [s1] extra, which Dockerfile.inference installs (.[s1])"
    torch = next((Requirement(d) for d in extras["s1"] if Requirement(d).name == "torch"), None)
    assert torch is not None, "the [s1] extra does not pin torch"
    pin = re.fullmatch(r"==(\d+\.\d+\.\d+)", str(torch.specifier))
    assert pin, f"torch must be pinned exactly (==X.Y.Z), not {torch.specifier}"
    return pin.group(1)


def test_inference_image_installs_pyprojects_torch_on_no_cuda_base(inference_image: Dockerfile) -> None:
    """torch's PyPI wheels carry their CUDA libraries, so no CUDA base image has to be kept in step
    with torch: the image's torch is the [s1] pin, installed from pyproject.toml's pins."""
    _s1_torch_pin()
    operator_bases = {stage.base for stage in parse(REPO_ROOT / "Dockerfile.operator").stages}
    for stage in inference_image.stages:
        assert "cuda" not in stage.base.lower(), f"{stage.base}: a CUDA base image, which torch's wheels make redundant"
        assert stage.base in operator_bases, f"{stage.base}: the same Python base as Dockerfile.operator"
    build = inference_image.stages[0]
    assert "pyproject.toml" in " ".join(i.value for i in build.all("COPY")).split()
    runs = " ".join(run.value for stage in inference_image.stages for run in stage.all("RUN"))
    env = " ".join(i.value for stage in inference_image.stages for i in stage.all("ENV") + stage.all("ARG"))
    # No second source of torch: no pin of its own, no other package index (pytorch.org's
    # indexes serve other CUDA builds than PyPI's wheels of the same version).
    assert not re.search(r"\btorch(audio)?\b", runs), "torch comes only through the [s1] extra"
    assert not re.search(r"index-url|find-links|PIP_INDEX|PIP_EXTRA_INDEX", runs + " " + env)
    # The [s1] pins, read from pyproject.toml by the same script as `make s1` uses.
    assert any(re.search(r"pinned_requirements\.py s1 \| \S+ -m pip install", run.value) for run in build.all("RUN")), "no RUN installs the [s1] pins"
    # Without a CUDA base image's settings, the NVIDIA runtime would mount no libcuda.
    capabilities = re.search(r"NVIDIA_DRIVER_CAPABILITIES=(\S+)", " ".join(i.value for i in inference_image.final.all("ENV")))
    assert capabilities and {"compute", "utility"} <= set(capabilities.group(1).split(",")), "NVIDIA_DRIVER_CAPABILITIES"


def test_inference_image_keeps_its_dependencies_in_a_layer_the_sources_do_not_touch(inference_image: Dockerfile) -> None:
    """The 6 GB of torch and its CUDA wheels sit in a layer that only pyproject.toml and the make
    recipes decide: a change to the code must not build (and store, and import) that layer anew.
    So the final stage takes the venv from a stage that installs the pins and copies no source,
    and installs the project over it from a wheel."""
    stages = {stage.name: stage for stage in inference_image.stages if stage.name}
    [venv] = [i for i in inference_image.final.all("COPY") if "/opt/venv" in i.value]
    lineage = stages[venv.flags_and_args()[0]["from"]].lineage()
    copied = {source for stage in lineage for i in stage.all("COPY") for source in i.flags_and_args()[1][:-1]}
    assert "pyproject.toml" in copied and not {"inference", "operator", "README.md", "."} & copied, copied
    assert any("pinned_requirements.py s1 |" in run.value for stage in lineage for run in stage.all("RUN"))
    [install] = [run for run in inference_image.final.all("RUN") if "pip install" in run.value]
    wheel_stage = re.search(r"--mount=type=bind,from=(\w+),source=/wheels", install.value)
    assert wheel_stage and any("pip wheel" in run.value for run in stages[wheel_stage.group(1)].all("RUN"))
    assert "--no-deps" in install.value and "--no-index" in install.value, "only the project's wheel, nothing fetched"


def test_pinned_requirements_are_the_pins_pip_would_install_for_the_extra() -> None:
    """scripts/pinned_requirements.py lists what `pip install '.[s1]'` asks for, each once, and
    apart from it what goes in with --no-deps."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "pinned_requirements.py"), "s1"], capture_output=True, text=True, timeout=60, check=True
    )
    listed = result.stdout.split()
    expected = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["project"]["optional-dependencies"]["s1"]]
    assert set(listed) == set(expected) and len(listed) == len(set(listed))
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[\w.]+", line) for line in listed), "each requirement pinned exactly"
    no_deps = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "pinned_requirements.py"), "--no-deps", "s1"], capture_output=True, text=True, timeout=60, check=True
    )
    assert no_deps.stdout.split() == PYPROJECT["tool"]["voice-service"]["no-deps"]["s1"]
    assert "fish-speech==0.1.0" in no_deps.stdout.split() and not set(no_deps.stdout.split()) & set(listed)
    unknown = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "pinned_requirements.py"), "no-such-extra"], capture_output=True, text=True, timeout=60, check=False
    )
    assert unknown.returncode == 2 and "no-such-extra" in unknown.stderr


def test_the_pinned_torch_is_a_cuda_build() -> None:
    """The image's GPU support is the pinned torch wheel's own CUDA libraries."""
    try:
        installed = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("torch is not installed here: this check needs the [s1] extra (`make s1`)")
    assert installed.split("+")[0] == _s1_torch_pin(), f"this venv has torch {installed}, not pyproject's pin: make s1"
    requires = importlib.metadata.requires("torch") or []
    assert any(r.startswith(("nvidia-", "cuda-toolkit")) for r in requires), "the pinned torch wheel brings no CUDA libraries"


def test_inference_image_serves_the_contract(inference_image: Dockerfile) -> None:
    final = inference_image.final
    assert {int(p) for i in final.all("EXPOSE") for p in i.value.split()} == {contract.PORT}
    health = final.last("HEALTHCHECK")
    assert health is not None
    assert f"http://127.0.0.1:{contract.PORT}{contract.LIVE_PATH}" in health.value
    # Long enough for a model load, like the operator's startup allowance.
    start = re.search(r"--start-period=(\d+)s", health.value)
    assert start and int(start.group(1)) >= 300
    env = " ".join(i.value for i in final.all("ENV"))
    assert f"VOICE_S1_CHECKPOINT_PATH={contract.CHECKPOINTS_MOUNT}" in env
    assert f"VOICE_PORT={contract.PORT}" in env
    # Checkpoints come as a mount, never in the image.
    copied = " ".join(i.value for s in inference_image.stages for i in s.all("COPY"))
    assert "checkpoint" not in copied.lower()
