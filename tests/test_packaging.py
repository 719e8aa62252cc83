"""Packaging: the CUDA sources ship (editable and built), licence and metadata, one version."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_KERNELS = REPO_ROOT / "kernels"
CUDA_SUFFIXES = {".cu", ".cuh"}


def _cuda_sources_in(directory) -> set[str]:
    return {p.name for p in directory.iterdir() if Path(p.name).suffix in CUDA_SUFFIXES}


def _require_checkout() -> None:
    if not (REPO_ROOT / "pyproject.toml").is_file() or not REPO_KERNELS.is_dir():
        pytest.skip("not running from a source checkout (no pyproject.toml and kernels/)")


def test_installed_package_ships_every_kernel_source():
    _require_checkout()
    shipped = _cuda_sources_in(importlib.resources.files("cugrad.kernels"))
    in_repo = _cuda_sources_in(REPO_KERNELS)
    assert in_repo, "kernels/ holds no .cu or .cuh file"
    assert any(name.endswith(".cuh") for name in in_repo), "kernels/ holds no .cuh header"
    assert shipped == in_repo


def _is_editable_install() -> bool:
    try:
        text = importlib.metadata.distribution("cugrad").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return False
    if not text:
        return False
    return bool(json.loads(text).get("dir_info", {}).get("editable", False))


def test_editable_install_reads_kernels_from_the_checkout():
    _require_checkout()
    if not _is_editable_install():
        pytest.skip("cugrad is not installed in editable mode here")
    resource = importlib.resources.files("cugrad.kernels")
    assert isinstance(resource, Path), f"cugrad.kernels resolves to {resource!r}, not a folder"
    # Same folder, so edits to a .cu file are seen without reinstalling.
    assert resource.resolve() == REPO_KERNELS.resolve()


_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis",
    ".pytest_cache", ".whl", ".gl", "*.so",
)  # fmt: skip


def _pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pip vendors the same parser
        from pip._vendor import tomli as tomllib
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_version_is_written_once():
    _require_checkout()
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    attr = _pyproject()["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "cugrad.__version__"
    sources = (REPO_ROOT / "src" / "cugrad").glob("*.py")
    assignments = [p.name for p in sources if re.search(r"^__version__\s*=", p.read_text(), re.M)]
    assert assignments == ["__init__.py"]
    import cugrad

    if _installed_from_this_checkout():
        assert importlib.metadata.version("cugrad") == cugrad.__version__


def _installed_from_this_checkout() -> bool:
    try:
        text = importlib.metadata.distribution("cugrad").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return False
    url = json.loads(text or "{}").get("url", "")
    return url.startswith("file://") and Path(url[len("file://") :]).resolve() == REPO_ROOT


def test_license_is_spdx_with_its_file_and_the_metadata_is_complete():
    _require_checkout()
    config = _pyproject()
    project = config["project"]
    assert project["license"] == "BSD-3-Clause"  # an SPDX expression, not the deprecated table
    assert project["license-files"] == ["LICENSE"]
    assert (REPO_ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")
    # PEP 639 metadata needs setuptools 77; bdist_wheel is part of setuptools (no `wheel`).
    assert config["build-system"]["requires"] == ["setuptools>=77"]
    classifiers = set(project["classifiers"])
    assert not any(c.startswith("License ::") for c in classifiers)  # setuptools refuses both
    assert {"Typing :: Typed", "Development Status :: 3 - Alpha"} <= classifiers
    minimum = int(project["requires-python"].removeprefix(">=3."))
    versions = {int(c.rsplit(".", 1)[1]) for c in classifiers
                if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}  # fmt: skip
    assert versions == set(range(minimum, 14))
    assert "mypy>=1.10" in project["optional-dependencies"]["test"]
    urls = project["urls"]
    assert urls and all(u.startswith("https://") for u in urls.values())
    assert not any(re.search(r"example|OWNER|your-|<|TODO", u) for u in urls.values())
    for kernel in REPO_KERNELS.iterdir():
        if kernel.suffix in CUDA_SUFFIXES:  # each source names the same licence
            assert "SPDX-License-Identifier: BSD-3-Clause" in kernel.read_text().splitlines()[0]


def test_readme_reads_right_on_a_package_index_page():
    _require_checkout()
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    # A package index shows the README without the repository: relative links would be dead, and
    # it gives headings no anchors to jump to. Files are named in the text instead.
    relative = re.findall(r"\]\((?!https?://)([^)]*)\)", readme)
    assert relative == []


INSTALL_FROM_INDEX = re.compile(r"pip install\s+(\\?[\"']?)cugrad\b")


def test_every_install_hint_installs_from_a_checkout():
    # cugrad is not on PyPI: `pip install cugrad` and `pip install "cugrad[...]"` fail. Every
    # hint says pip install "." or ".[extra]" (from a checkout), until it is published.
    _require_checkout()
    files = [REPO_ROOT / "README.md", REPO_ROOT / "Dockerfile",
             *sorted((REPO_ROOT / "src" / "cugrad").glob("*.py")),
             *sorted((REPO_ROOT / "benchmarks").glob("*.py"))]  # fmt: skip
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{n}: {line.strip()}"
        for path in files if path.is_file()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if INSTALL_FROM_INDEX.search(line)
    ]  # fmt: skip
    assert offenders == [], (
        'cugrad is not on PyPI: write pip install ".[extra]" (in a cugrad checkout), not '
        'pip install "cugrad[extra]"'
    )


@pytest.mark.slow
def test_wheel_built_as_users_build_it_ships_kernels_license_and_metadata(tmp_path):
    # `pip wheel` with build isolation, as `pip install .` does: the build requirements come
    # from pyproject.toml (setuptools>=77), not from whatever this environment holds, so a fresh
    # virtualenv on any supported Python builds the same wheel.
    _require_checkout()
    if importlib.util.find_spec("pip") is None:
        pytest.skip("pip is not installed")
    # Build from a copy so the checkout gets no build/ or *.egg-info of ours.
    source = tmp_path / "src-copy"
    shutil.copytree(REPO_ROOT, source, ignore=_NOT_SOURCES)
    dist = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-w", str(dist), "-v"],
        cwd=source, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "SetuptoolsDeprecationWarning" not in output, output[-3000:]
    (wheel,) = dist.glob("cugrad-*.whl")
    import cugrad

    assert wheel.name.startswith(f"cugrad-{cugrad.__version__}-py3-none-any")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = f"cugrad-{cugrad.__version__}.dist-info"
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        license_text = archive.read(f"{dist_info}/licenses/LICENSE").decode()
    assert "cugrad/py.typed" in names
    assert license_text == (REPO_ROOT / "LICENSE").read_text()
    assert "License-Expression: BSD-3-Clause" in metadata
    assert "Classifier: Typing :: Typed" in metadata
    assert "Project-URL: " in metadata
    shipped = {
        Path(n).name for n in names
        if n.startswith("cugrad/kernels/") and Path(n).suffix in CUDA_SUFFIXES
    }  # fmt: skip
    in_repo = _cuda_sources_in(REPO_KERNELS)
    assert in_repo, "kernels/ holds no .cu or .cuh file"
    assert shipped == in_repo
