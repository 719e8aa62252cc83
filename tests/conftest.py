"""Shared test machinery: the GPU skip/fail policy, the backend paths, exact comparisons.

numpy.gradient is the oracle everywhere. Nothing here computes an expected value
from cugrad itself.
"""

from __future__ import annotations

import functools
import os
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import cugrad

# ---------------------------------------------------------------------------
# GPU policy
# ---------------------------------------------------------------------------

GPU_SKIP_PREFIX = "needs CuPy and a usable CUDA GPU"


@functools.cache
def gpu_unavailable_reason() -> str | None:
    """Why CuPy cannot run here, or None when it can.

    Only called when some collected test is marked ``gpu``, so a CPU-only run that
    selects no GPU test never imports CuPy.
    """
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising anything
        return f"CuPy is not importable ({type(exc).__name__}: {exc})"
    try:
        available = cupy.is_available()
    except Exception as exc:
        return f"cupy.is_available() raised {type(exc).__name__}: {exc}"
    if not available:
        return "cupy.is_available() is False (no usable CUDA device or driver)"
    return None


def _gpu_required() -> bool:
    return os.environ.get("REQUIRE_GPU") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items or _gpu_required():
        # With REQUIRE_GPU=1 a missing GPU must show as a failure, see pytest_runtest_setup.
        return
    reason = gpu_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"{GPU_SKIP_PREFIX}: {reason}")
    for item in gpu_items:
        item.add_marker(skip)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is None or not _gpu_required():
        return
    reason = gpu_unavailable_reason()
    if reason is not None:
        pytest.fail(f"REQUIRE_GPU=1 but this test {GPU_SKIP_PREFIX}: {reason}", pytrace=False)


# ---------------------------------------------------------------------------
# Exact comparison against numpy.gradient
# ---------------------------------------------------------------------------


def _host_view(a: Any) -> np.ndarray:
    """The plain ndarray behind a result (masked data, matrix) for value checks."""
    return np.asarray(np.ma.getdata(a))


def _assert_parts_equal(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    np.testing.assert_array_equal(actual, expected, strict=True, err_msg=what)
    if np.issubdtype(expected.dtype, np.floating):
        # assert_array_equal says -0.0 == 0.0; bit-identical results must not.
        # NaN payloads are allowed to differ (GPUs produce a canonical NaN).
        not_nan = ~np.isnan(expected)
        mismatched = np.signbit(actual) != np.signbit(expected)
        if np.any(mismatched & not_nan):
            where = np.argwhere(mismatched & not_nan)[:5].tolist()
            raise AssertionError(f"{what}: sign of zero differs at indices {where}")


def _assert_array_same(actual: Any, expected: Any, what: str) -> None:
    assert type(actual) is type(expected), (
        f"{what}: result type {type(actual).__name__}, numpy gives {type(expected).__name__}"
    )
    assert actual.dtype == expected.dtype, (
        f"{what}: dtype {actual.dtype}, numpy gives {expected.dtype}"
    )
    assert actual.shape == expected.shape, (
        f"{what}: shape {actual.shape}, numpy gives {expected.shape}"
    )
    a, e = _host_view(actual), _host_view(expected)
    if isinstance(expected, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(expected)
        np.testing.assert_array_equal(np.ma.getmaskarray(actual), mask, err_msg=f"{what}: mask")
        # numpy.gradient leaves masked slots of its result uninitialised (empty_like),
        # so only the unmasked values are defined.
        a, e = a[~mask], e[~mask]
    if np.issubdtype(e.dtype, np.complexfloating):
        _assert_parts_equal(a.real, e.real, f"{what} (real part)")
        _assert_parts_equal(a.imag, e.imag, f"{what} (imaginary part)")
    else:
        _assert_parts_equal(a, e, what)


def assert_same(result: Any, expected: Any) -> None:
    """Assert ``result`` is what numpy.gradient returned, bit for bit.

    Checks the container (ndarray vs tuple, tuple length), then per array the
    type (ndarray, MaskedArray, matrix...), dtype, shape and values; NaN equals NaN,
    but -0.0 does not equal 0.0.
    """
    if isinstance(expected, tuple):
        assert type(result) is tuple, f"numpy returns a tuple, got {type(result).__name__}"
        assert len(result) == len(expected), (
            f"tuple of {len(result)} arrays, numpy gives {len(expected)}"
        )
        for i, (r, e) in enumerate(zip(result, expected, strict=False)):
            _assert_array_same(r, e, f"result[{i}]")
    else:
        assert not isinstance(result, tuple), (
            f"numpy returns a single {type(expected).__name__}, got a tuple of {len(result)}"
        )
        _assert_array_same(result, expected, "result")


def assert_same_layout(result: Any, expected: Any) -> None:
    """Assert the arrays are laid out in memory as numpy's ``empty_like`` makes them."""
    pairs = (
        zip(result, expected, strict=False) if isinstance(expected, tuple) else [(result, expected)]
    )
    for r, e in pairs:
        assert r.strides == e.strides, f"strides {r.strides}, numpy gives {e.strides}"
        assert r.flags.c_contiguous == e.flags.c_contiguous
        assert r.flags.f_contiguous == e.flags.f_contiguous


# The type a caller would catch: AxisError, else the nearest builtin exception (numpy sometimes
# raises private subclasses such as ``_UFuncNoLoopError``; requiring those exact classes would be
# asking for numpy's internals, not its behaviour). The self-test compares the same way.
from cugrad._selftest import public_exception_type  # noqa: E402


def numpy_outcome(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """Run the oracle; return (result, None) or (None, the exception it raised)."""
    try:
        return fn(), None
    except Exception as exc:
        return None, exc


def stable_rng(*key: Any) -> np.random.Generator:
    """A generator seeded from a readable key, so each case has its own fixed data."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def random_field(shape: Any, dtype: Any = np.float64, *key: Any) -> np.ndarray:
    """Reproducible test data of any dtype: full-range integers, scaled normals, complex normals."""
    rng = stable_rng(shape, np.dtype(dtype).str, *key)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    values = rng.standard_normal(shape) * 10
    if np.dtype(dtype).kind == "c":
        values = values + 1j * rng.standard_normal(shape)
    return values.astype(dtype)


# ---------------------------------------------------------------------------
# Backend paths: the same parity tests run on every one of these
# ---------------------------------------------------------------------------

# dtypes CuPy can hold; longdouble, object, datetime, strings stay on the host paths.
_DEVICE_KINDS = "biufc"


class GradientPath:
    """One way of calling cugrad.gradient; returns host (numpy) results.

    ``call`` may skip the test when the inputs make no sense on that path.
    """

    name = "numpy"
    backend_kw: dict[str, Any] = {"backend": "numpy"}

    def _skip_unless_supported(self, f: Any, varargs: tuple[Any, ...]) -> None:
        pass

    def call(self, f: Any, *varargs: Any, **kwargs: Any) -> Any:
        self._skip_unless_supported(f, varargs)
        result = cugrad.gradient(f, *varargs, **self.backend_kw, **kwargs)
        _check_container_of(result, np.ndarray, self.name)
        return result

    def check(self, f: Any, *varargs: Any, **kwargs: Any) -> None:
        """Assert cugrad gives numpy's result, or raises numpy's exception type."""
        self._skip_unless_supported(f, varargs)
        expected, error = numpy_outcome(lambda: np.gradient(f, *varargs, **kwargs))
        if error is not None:
            with pytest.raises(public_exception_type(error)):
                self.call(f, *varargs, **kwargs)
            return
        assert_same(self.call(f, *varargs, **kwargs), expected)


class NumpyStackPath(GradientPath):
    """backend="numpy" with stack=True, unstacked again to compare with numpy.gradient.

    stack= (like out=) always runs cugrad's own plan and kernels; a plain call on a small
    array may be answered by numpy.gradient itself.
    """

    name = "numpy-stack"

    def call(self, f: Any, *varargs: Any, **kwargs: Any) -> Any:
        stacked = cugrad.gradient(f, *varargs, backend="numpy", stack=True, **kwargs)
        assert type(stacked) is np.ndarray, f"stack=True returned {type(stacked).__name__}"
        assert stacked.shape[1:] == np.shape(f)
        # numpy.gradient returns one array for one axis, () for none, else a tuple.
        if stacked.shape[0] == 1:
            return stacked[0]
        return tuple(stacked)


class NumpyOutPath(GradientPath):
    """backend="numpy" writing into sentinel-filled ``out=`` arrays (cugrad's own kernels).

    numpy.gradient is consulted only for the shapes and dtypes of the outputs; the values
    must all be written by cugrad. Calls that numpy rejects go through stack=True instead,
    since no valid ``out`` exists for them.
    """

    name = "numpy-out"

    def call(self, f: Any, *varargs: Any, **kwargs: Any) -> Any:
        template, error = numpy_outcome(lambda: np.gradient(f, *varargs, **kwargs))
        if error is not None or any(
            type(t) is not np.ndarray
            for t in (template if isinstance(template, tuple) else [template])
        ):
            return NumpyStackPath().call(f, *varargs, **kwargs)
        if isinstance(template, tuple):
            out: Any = tuple(_sentinel_like(t) for t in template)
        else:
            out = _sentinel_like(template)
        result = cugrad.gradient(f, *varargs, backend="numpy", out=out, **kwargs)
        if isinstance(out, tuple):
            assert type(result) is tuple and len(result) == len(out)
            assert all(r is o for r, o in zip(result, out, strict=True)), "out= not returned"
        else:
            assert result is out, "out= was not returned"
        return result


def _sentinel_like(a: np.ndarray) -> np.ndarray:
    # A value no gradient here produces, so an unwritten element cannot pass for a result.
    fill = 7 if a.dtype.kind == "m" else -12345.678
    return np.full(a.shape, fill, dtype=a.dtype)


def _check_container_of(result: Any, array_type: type, path: str) -> None:
    arrays = result if isinstance(result, tuple) else (result,)
    for a in arrays:
        assert isinstance(a, array_type), (
            f"{path} path returned {type(a).__module__}.{type(a).__name__}, "
            f"expected {array_type.__module__}.{array_type.__name__}"
        )


def _device_dtype_problem(dtype: np.dtype) -> str | None:
    if dtype.kind not in _DEVICE_KINDS or dtype in (np.longdouble, np.clongdouble):
        return f"dtype {dtype} does not exist on the device"
    if not dtype.isnative:
        return f"byte-swapped dtype {dtype.str} does not exist on the device"
    return None


def _is_device_friendly(f: Any, varargs: tuple[Any, ...]) -> str | None:
    if type(f) is not np.ndarray:
        return f"input of type {type(f).__name__} is a host-only case"
    problem = _device_dtype_problem(f.dtype)
    if problem:
        return problem
    for v in varargs:
        if isinstance(v, np.ndarray) and type(v) is not np.ndarray:
            return f"a {type(v).__name__} spacing is a host-only case"
        if isinstance(v, np.ndarray | np.generic):
            problem = _device_dtype_problem(np.asarray(v).dtype)
            if problem:
                return f"spacing: {problem}"
    return None


class CupyDevicePath(GradientPath):
    """CuPy arrays in, default backend, CuPy arrays out (brought back to compare)."""

    name = "cupy-device"
    backend_kw: dict[str, Any] = {}

    def _skip_unless_supported(self, f: Any, varargs: tuple[Any, ...]) -> None:
        reason = _is_device_friendly(f, varargs)
        if reason:
            pytest.skip(reason)

    def call(self, f: Any, *varargs: Any, **kwargs: Any) -> Any:
        import cupy

        self._skip_unless_supported(f, varargs)
        # Coordinate arrays travel with the data; scalars (and 0-d spacings) stay scalars.
        dev_varargs = [
            cupy.asarray(v) if isinstance(v, np.ndarray) and v.ndim >= 1 else v for v in varargs
        ]
        result = cugrad.gradient(cupy.asarray(f), *dev_varargs, **kwargs)
        _check_container_of(result, cupy.ndarray, self.name)
        if isinstance(result, tuple):
            return tuple(cupy.asnumpy(r) for r in result)
        return cupy.asnumpy(result)


class CupyBackendHostPath(GradientPath):
    """numpy arrays in, backend="cupy": the work runs on the GPU, numpy arrays come out."""

    name = "cupy-backend-host-io"
    backend_kw: dict[str, Any] = {"backend": "cupy"}

    def _skip_unless_supported(self, f: Any, varargs: tuple[Any, ...]) -> None:
        if isinstance(f, list | tuple | int | float | complex):
            return  # host sequences and scalars are fine: cugrad converts them itself
        reason = _is_device_friendly(f, varargs)
        if reason:
            pytest.skip(reason)


PATHS = {
    "numpy": GradientPath(),
    "numpy-stack": NumpyStackPath(),
    "numpy-out": NumpyOutPath(),
    "cupy-device": CupyDevicePath(),
    "cupy-backend-host-io": CupyBackendHostPath(),
}


@pytest.fixture(
    params=[
        "numpy",
        "numpy-stack",
        "numpy-out",
        pytest.param("cupy-device", marks=pytest.mark.gpu),
        pytest.param("cupy-backend-host-io", marks=pytest.mark.gpu),
    ]
)
def xp_backend(request: pytest.FixtureRequest) -> GradientPath:
    """Each way of running cugrad.gradient; the CuPy ones are marked ``gpu``."""
    return PATHS[request.param]


@pytest.fixture(autouse=True)
def _cugrad_own_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every test exercise cugrad's own NumPy path, whatever the array size.

    By default cugrad hands small host arrays (no out=/stack=) to numpy.gradient itself,
    because there call overhead dominates (see ``cugrad._api.NUMPY_GRADIENT_BELOW``). A
    parity test on a small array would then compare numpy with numpy and could not fail;
    with the threshold at 0 it compares cugrad's plan and backend with numpy.
    """
    monkeypatch.setattr("cugrad._api.NUMPY_GRADIENT_BELOW", 0)


# ---------------------------------------------------------------------------
# CPU engines: the parity, stencil and property suites run on both the NumPy backend and numba
# ---------------------------------------------------------------------------

ENGINE_MODULES = ("test_parity", "test_stencils", "test_properties", "test_operators")
NUMBA_MISSING = "numba is not installed (pip install numba, or '.[cpu]' in a checkout)"


@functools.cache
def numba_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__ in ENGINE_MODULES and "cpu_engine" in metafunc.fixturenames:
        metafunc.parametrize(
            "cpu_engine",
            [
                pytest.param("numpy", id="engine-numpy"),
                pytest.param("numba", id="engine-numba", marks=pytest.mark.skipif(
                    not numba_installed(), reason=NUMBA_MISSING)),
            ],
            indirect=True,
        )


@pytest.fixture(autouse=True)
def cpu_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """``CUGRAD_CPU_ENGINE`` for the test: both engines in ENGINE_MODULES, the default elsewhere.

    With ``numba`` the compiled engine computes every call it supports, whatever its size (the
    rest falls back to the NumPy backend, as for users), bit for bit against numpy.gradient.
    """
    engine = getattr(request, "param", None)
    if engine is not None:
        monkeypatch.setenv("CUGRAD_CPU_ENGINE", engine)
    return engine
