"""How a backend is chosen: auto follows the input, and CPU work never imports CuPy."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import assert_same

import cugrad

F = np.arange(30.0).reshape(5, 6) ** 2


@pytest.mark.parametrize("backend", [None, "auto", "numpy"])
def test_numpy_input_gives_numpy_output(monkeypatch, backend):
    monkeypatch.delenv("CUGRAD_BACKEND", raising=False)
    result = cugrad.gradient(F, backend=backend)
    assert all(type(r) is np.ndarray for r in result)
    assert_same(result, np.gradient(F))
    one = cugrad.gradient(F, axis=0, backend=backend)
    assert type(one) is np.ndarray
    assert_same(one, np.gradient(F, axis=0))


def _run_fresh_interpreter(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CUGRAD_BACKEND"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_numpy_input_does_not_import_cupy():
    # A fresh interpreter: this test process may have imported CuPy for the gpu checks.
    proc = _run_fresh_interpreter(
        """
        import sys
        import numpy
        import cugrad
        assert "cupy" not in sys.modules, "import cugrad imported cupy"
        cugrad.gradient(numpy.ones(5))
        cugrad.gradient(numpy.ones((4, 5), dtype=numpy.float32), 0.5, stack=True)
        cugrad.gradient(numpy.arange(12).reshape(3, 4), [0, 1, 3], 2.0)
        cugrad.gradient(numpy.ones(70000), backend="numpy")
        cugrad.gradient(numpy.array([1, 2, 4], dtype="M8[D]"))
        leaked = sorted(m for m in ("cupy", "cupyx", "torch", "dask") if m in sys.modules)
        assert not leaked, f"numpy input imported {leaked}"
        print("CLEAN")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "CLEAN" in proc.stdout


@pytest.mark.gpu
def test_auto_follows_device_input():
    import cupy

    f = cupy.asarray(F)
    result = cugrad.gradient(f)
    assert all(isinstance(r, cupy.ndarray) for r in result)
    assert_same(tuple(cupy.asnumpy(r) for r in result), np.gradient(F))


@pytest.mark.gpu
def test_device_array_is_never_moved_to_host_silently(monkeypatch):
    import cupy

    f = cupy.asarray(F)
    with pytest.raises(TypeError):
        cugrad.gradient(f, backend="numpy")
    monkeypatch.setenv("CUGRAD_BACKEND", "numpy")
    with pytest.raises(TypeError):
        cugrad.gradient(f)


@pytest.mark.gpu
def test_backend_cupy_with_numpy_input_returns_numpy():
    result = cugrad.gradient(F, backend="cupy")
    assert all(type(r) is np.ndarray for r in result)
    assert_same(result, np.gradient(F))


# --- backend="auto" on host arrays: offload to a GPU is opt-in (CUGRAD_OFFLOAD_MIN_BYTES) ------


@pytest.fixture
def usable_gpu_and_recorded_offload(monkeypatch):
    """Pretend a usable GPU takes every plan; record what would have been offloaded."""
    from cugrad import _backend, _offload

    offloaded = []
    monkeypatch.setattr(_backend, "gpu_status", lambda: (True, "a pretend GPU"))
    monkeypatch.setattr(_backend, "require_gpu", lambda: None)
    monkeypatch.setattr(_offload, "supports", lambda plan, f: True, raising=False)

    def offload_gradient(plan, f, outs, *args, **kwargs):
        offloaded.append(f.nbytes)
        for o in outs:
            o[...] = 0

    monkeypatch.setattr(_offload, "offload_gradient", offload_gradient)
    return offloaded


def test_auto_keeps_host_arrays_on_the_cpu_unless_the_user_opts_in(
    monkeypatch, usable_gpu_and_recorded_offload
):
    monkeypatch.delenv("CUGRAD_BACKEND", raising=False)
    monkeypatch.delenv("CUGRAD_OFFLOAD_MIN_BYTES", raising=False)
    big = np.broadcast_to(np.float64(1.0), (2**26,))  # reports 512 MiB, allocates 8 bytes
    plan = cugrad._api.make_plan(big, (), None, 1)
    assert not cugrad._api._offload_wanted(plan, big)
    assert_same(cugrad.gradient(F), np.gradient(F))
    assert usable_gpu_and_recorded_offload == []

    monkeypatch.setenv("CUGRAD_OFFLOAD_MIN_BYTES", "")  # empty: unset
    assert not cugrad._api._offload_wanted(plan, big)

    monkeypatch.setenv("CUGRAD_OFFLOAD_MIN_BYTES", str(F.nbytes))
    assert cugrad._api._offload_wanted(plan, big)
    cugrad.gradient(F)
    assert usable_gpu_and_recorded_offload == [F.nbytes]
    small = F[:2]
    assert_same(cugrad.gradient(small), np.gradient(small))  # below the user's threshold
    assert usable_gpu_and_recorded_offload == [F.nbytes]


def test_backend_cupy_offloads_host_arrays_without_the_variable(
    monkeypatch, usable_gpu_and_recorded_offload
):
    monkeypatch.delenv("CUGRAD_OFFLOAD_MIN_BYTES", raising=False)
    cugrad.gradient(F, backend="cupy")
    assert usable_gpu_and_recorded_offload == [F.nbytes]


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), ("0", 0),
                                                  ("1048576", 2**20)])
def test_offload_threshold_reads_the_variable(monkeypatch, value, expected):
    from cugrad import _backend

    if value is None:
        monkeypatch.delenv("CUGRAD_OFFLOAD_MIN_BYTES", raising=False)
    else:
        monkeypatch.setenv("CUGRAD_OFFLOAD_MIN_BYTES", value)
    assert _backend.offload_threshold_bytes() == expected


@pytest.mark.parametrize("value", ["256MiB", "-1", "1.5"])
def test_a_bad_offload_threshold_says_what_to_write(monkeypatch, value):
    from cugrad import _backend

    monkeypatch.setenv("CUGRAD_OFFLOAD_MIN_BYTES", value)
    with pytest.raises(ValueError, match="CUGRAD_OFFLOAD_MIN_BYTES must be a whole"):
        _backend.offload_threshold_bytes()


def test_a_large_host_array_under_auto_does_not_import_cupy():
    # Before offload became opt-in, any host array of 256 MiB or more asked CuPy for a GPU.
    proc = _run_fresh_interpreter(
        """
        import os, sys
        import numpy
        import cugrad
        from cugrad import _api
        os.environ.pop("CUGRAD_OFFLOAD_MIN_BYTES", None)
        big = numpy.broadcast_to(numpy.float32(1.0), (2**27,))  # 512 MiB as numpy counts it
        plan = _api.make_plan(big, (), None, 1)
        assert not _api._offload_wanted(plan, big)
        assert "cupy" not in sys.modules, "a host array under auto imported cupy"
        print("CLEAN")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "CLEAN" in proc.stdout


# --- CuPy's version: 14.2 or newer (its kernel cache reloads the fast path's kernels) ----------


@pytest.mark.parametrize(
    ("version", "ok"),
    [("14.2.0", True), ("14.2.1", True), ("15.0.0a1", True), ("14.10.0", True),
     ("14.1.0", False), ("14.2.0rc1", True), ("13.6.0", False), ("", False), ("nonsense", False)],
)
def test_cupy_version_floor(version, ok):
    from cugrad import _backend

    problem = _backend.cupy_version_problem(version)
    assert (problem is None) is ok
    if not ok:
        assert "14.2" in problem and 'pip install ".[cuda12]"' in problem


def test_gpu_status_refuses_an_old_cupy(monkeypatch):
    import types

    from cugrad import _backend

    fake = types.ModuleType("cupy")
    fake.__version__ = "13.6.0"
    fake.is_available = lambda: True
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(_backend.importlib.util, "find_spec", lambda name: object())
    _backend.gpu_status.cache_clear()
    try:
        usable, reason = _backend.gpu_status()
        assert not usable and "older than 14.2" in reason
        fake.__version__ = "14.2.0"
        _backend.gpu_status.cache_clear()
        assert _backend.gpu_status() == (True, "CuPy sees a usable CUDA device")
    finally:
        _backend.gpu_status.cache_clear()


def test_the_cuda_extras_bring_the_toolkit_at_the_cupy_floor():
    # The extras and the runtime check agree on the floor, and pull NVRTC and the CUDA headers
    # ([ctk]) that CuPy 14 needs at its first compile.
    import re
    from pathlib import Path

    from cugrad import _backend

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    floor = ".".join(map(str, _backend.MIN_CUPY_VERSION))
    for extra, package in (("cuda12", "cupy-cuda12x"), ("cuda13", "cupy-cuda13x")):
        line = re.search(rf"^{extra} = \[(.*)\]$", text, re.M)
        assert line, f"no {extra} extra"
        assert line.group(1) == f'"{package}[ctk]>={floor}"'
