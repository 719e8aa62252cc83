"""The package ships its CUDA sources (kernels/ as cugrad.kernels), editable and built."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
import json
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


@pytest.mark.slow
def test_wheel_contains_kernels_and_py_typed(tmp_path):
    _require_checkout()
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed, so no wheel can be built without isolation")
    if importlib.util.find_spec("pip") is None:
        pytest.skip("pip is not installed")
    # Build from a copy so the checkout gets no build/ or *.egg-info of ours.
    source = tmp_path / "src-copy"
    shutil.copytree(REPO_ROOT, source, ignore=_NOT_SOURCES)
    dist = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
         "-w", str(dist), "-q"],
        cwd=source, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if proc.returncode != 0 and "No module named" in proc.stderr and "wheel" in proc.stderr:
        pytest.skip(f"the wheel package is missing: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr
    (wheel,) = dist.glob("cugrad-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "cugrad/py.typed" in names
    shipped = {
        Path(n).name for n in names
        if n.startswith("cugrad/kernels/") and Path(n).suffix in CUDA_SUFFIXES
    }  # fmt: skip
    in_repo = _cuda_sources_in(REPO_KERNELS)
    assert in_repo, "kernels/ holds no .cu or .cuh file"
    assert shipped == in_repo
