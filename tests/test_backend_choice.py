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
