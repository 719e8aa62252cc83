"""Device inputs that numpy.gradient treats through special code, on a stand-in device array.

On the host, cugrad hands such calls to numpy.gradient itself; a device array has no numpy to go
to. Complex spacing on real data must give numpy's result (computed in complex, the real part
stored, a ComplexWarning); everything else must raise a TypeError that says what to do. Never an
internal exception (``cugrad._plan.Delegate``).

No GPU is needed: a numpy subclass poses as the device array type of a stand-in ``cupy`` module,
and the CuPy backend's ``execute`` is replaced by the NumPy backend's, which executes the same
plans (the GPU kernels' parity with it is what tests/test_gpu.py and the emulation tests check).
Being a numpy subclass, the stand-in cannot carry device coordinate arrays (make_plan would take it
for a host array); tests/test_gpu.py covers complex device coordinates on a GPU.
"""

from __future__ import annotations

import sys
import types
import warnings
from fractions import Fraction

import numpy as np
import pytest
from conftest import assert_same, random_field

import cugrad
from cugrad import _cupy_backend, _numpy_backend
from cugrad._plan import Delegate

ComplexWarning = np.exceptions.ComplexWarning


class _Device:
    id = 0

    def __enter__(self) -> _Device:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


DEVICE = _Device()


class DeviceArray(np.ndarray):
    """A host array posing as a device array of the stand-in CuPy."""

    @property
    def device(self) -> _Device:  # numpy 2's ndarray.device is the string "cpu"
        return DEVICE


def dev(a: np.ndarray) -> DeviceArray:
    return np.asarray(a).view(DeviceArray)


def host(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).view(np.ndarray)


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> list:
    """Install the stand-in CuPy; return the list of plans the backend executed."""
    fake = types.ModuleType("cupy")
    fake.ndarray = DeviceArray
    fake.empty = lambda shape, dtype=float: dev(np.empty(shape, dtype))
    fake.empty_like = lambda a, dtype=None: dev(np.empty_like(host(a), dtype=dtype))
    fake.may_share_memory = lambda a, b: np.may_share_memory(host(a), host(b))
    fake.__version__ = "14.2.0"
    fake.cuda = types.SimpleNamespace(Device=lambda *a: DEVICE)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    executed: list = []

    def execute(plan, f, outs):
        executed.append(plan)
        _numpy_backend.execute(plan, host(f), [host(o) for o in outs])

    monkeypatch.setattr(_cupy_backend, "execute", execute)
    return executed


def numpy_with_warnings(f, *varargs, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expected = np.gradient(f, *varargs, **kwargs)
    return expected, {w.category for w in caught}


def cugrad_on_device(f, *varargs, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cugrad.gradient(dev(f), *varargs, **kwargs)
    arrays = result if isinstance(result, tuple) else (result,)
    assert all(type(a) is DeviceArray for a in arrays), "the result left the device"
    host_result = tuple(host(a) for a in arrays) if isinstance(result, tuple) else host(result)
    return host_result, {w.category for w in caught}


COORDS = np.array([0.0, 0.5, 1.5, 1.75, 3.0, 4.5, 5.0])

COMPLEX_SPACINGS = {
    "python-complex": (0.5 + 0.25j,),
    "python-complex-imag-0": (2 + 0j,),
    "numpy-complex64": (np.complex64(0.3 - 1.5j),),
    "numpy-complex128": (np.complex128(-0.7 + 0.1j),),
    "0d-complex-array": (np.array(1.25 + 2j),),
    "complex-coordinates": (COORDS * (1 + 0.5j), COORDS[:6] + 0.1j),
    "real-then-complex": (0.3, np.complex128(0.6 + 0.2j)),
    "complex-then-real-coords": (1j * 0.3, COORDS[:6]),
}


@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.uint8])
@pytest.mark.parametrize("spacing", list(COMPLEX_SPACINGS))
def test_complex_spacing_on_real_device_data_gives_numpys_result(
    stand_in, spacing, dtype, edge_order
):
    f = random_field((7, 6), dtype, "complex-spacing")
    varargs = COMPLEX_SPACINGS[spacing]
    expected, numpy_warned = numpy_with_warnings(f, *varargs, edge_order=edge_order)
    assert ComplexWarning in numpy_warned  # the case is what this test means it to be
    result, warned = cugrad_on_device(f, *varargs, edge_order=edge_order)
    assert_same(result, expected)
    assert ComplexWarning in warned
    assert stand_in, "nothing ran on the device"


def test_one_axis_of_a_3d_array_and_float16_coordinates(stand_in):
    f = random_field((4, 7, 5), np.float32, "axis")
    expected, _ = numpy_with_warnings(f, COORDS * 1j, axis=1)
    result, warned = cugrad_on_device(f, COORDS * 1j, axis=1)
    assert_same(result, expected)
    # float16 computes exactly when the complex axes use coefficient products only
    h = random_field((7, 7), np.float16, "f16")
    expected, _ = numpy_with_warnings(h, COORDS * (1 + 1j), COORDS, edge_order=2)
    result, warned = cugrad_on_device(h, COORDS * (1 + 1j), COORDS, edge_order=2)
    assert_same(result, expected)
    assert ComplexWarning in warned


@pytest.mark.parametrize("stack", [False, True])
def test_complex_spacing_with_out_and_stack(stand_in, stack):
    f = random_field((7, 6), np.float32, "out")
    varargs = (0.25, np.complex64(1 - 1j))
    expected, _ = numpy_with_warnings(f, *varargs)
    if stack:
        out = dev(np.full((2, 7, 6), np.nan, np.float32))
        with pytest.warns(ComplexWarning):
            assert cugrad.gradient(dev(f), *varargs, stack=True, out=out) is out
        assert_same(tuple(host(out)), expected)
    else:
        outs = tuple(dev(np.full(f.shape, np.nan, np.float32)) for _ in range(2))
        with pytest.warns(ComplexWarning):
            result = cugrad.gradient(dev(f), *varargs, out=outs)
        assert all(r is o for r, o in zip(result, outs, strict=True))
        assert_same(tuple(host(o) for o in outs), expected)
    # out= of the complex dtype is not numpy's result dtype: refused, nothing written
    bad = dev(np.zeros((2, 7, 6), np.complex64))
    with pytest.raises(TypeError, match="dtype"):
        cugrad.gradient(dev(f), *varargs, stack=True, out=bad)


def test_warning_as_error_leaves_out_untouched(stand_in):
    f = random_field((7, 6), np.float64, "werror")
    out = dev(np.full((7, 6), 5.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ComplexWarning)
        with pytest.raises(ComplexWarning):
            cugrad.gradient(dev(f), 1j, axis=0, out=out)
    assert (host(out) == 5.0).all()


@pytest.mark.parametrize(
    ("dtype", "varargs", "kwargs"),
    [
        (np.float16, (0.5j,), {}),  # float16 differences, then a complex division
        (np.float16, (COORDS * 1j, COORDS[:6]), {"edge_order": 1}),  # first-order edges differ
        (np.bool_, (1j,), {"edge_order": 2}),  # numpy cannot subtract booleans
    ],
)
def test_complex_spacing_cugrad_cannot_mirror_is_a_clear_type_error(stand_in, dtype, varargs,
                                                                    kwargs):
    f = random_field((7, 6), np.float64, "refused") > 0 if dtype is np.bool_ else (
        random_field((7, 6), dtype, "refused"))
    with pytest.raises(TypeError, match="float32|bool") as info:
        cugrad.gradient(dev(f), *varargs, **kwargs)
    assert not isinstance(info.value, Delegate)
    if dtype is np.bool_:  # numpy's own exception for numpy's own reason
        with pytest.raises(TypeError):
            np.gradient(f, *varargs, **kwargs)


def test_bool_data_with_complex_coordinates_and_products_only(stand_in):
    f = random_field((7, 7), np.float64, "bool") > 0
    varargs = (COORDS * (1 + 2j), COORDS)
    expected, _ = numpy_with_warnings(f, *varargs, edge_order=2)
    result, warned = cugrad_on_device(f, *varargs, edge_order=2)
    assert_same(result, expected)


@pytest.mark.parametrize(
    ("varargs", "names"),
    [
        ((np.ma.masked_array(COORDS, mask=[0, 0, 1, 0, 0, 0, 0]), COORDS[:6]), "MaskedArray"),
        ((Fraction(1, 3),), "Fraction"),
        ((np.timedelta64(1, "s"),), "timedelta"),
        ((0.5, np.array([0, 1, 3, 4, 6, 9], dtype=object)), "spacing argument 1"),
    ],
)
def test_other_special_spacing_raises_a_type_error_saying_what_to_do(stand_in, varargs, names):
    f = random_field((7, 6), np.float64, "special")
    with pytest.raises(TypeError) as info:
        cugrad.gradient(dev(f), *varargs)
    message = str(info.value)
    assert not isinstance(info.value, Delegate)
    assert names in message and "GPU" in message and "numpy.gradient(f.get()" in message
    assert not stand_in, "nothing may run for a refused call"


def test_no_internal_exception_for_complex_data_spacing_mixes(stand_in):
    # complex data with complex or real spacing needs no special code: the ordinary device path
    f = random_field((7, 6), np.complex64, "complex-data")
    expected, _ = numpy_with_warnings(f, 0.5j, np.float32(2))
    result, warned = cugrad_on_device(f, 0.5j, np.float32(2))
    assert_same(result, expected)
    assert ComplexWarning not in warned


# ------------------------------------------------------------------------------------------------
# The first compile without the CUDA headers or NVRTC, and a CuPy too old for the kernel cache
# ------------------------------------------------------------------------------------------------


class CompileException(Exception):
    """Shaped like cupy.cuda.compiler.CompileException (its text holds NVRTC's log)."""


@pytest.mark.parametrize(
    "error",
    [
        CompileException('cugrad.cu(1): catastrophic error: cannot open source file "cuda_fp16.h"'),
        RuntimeError("CuPy failed to load libnvrtc.so.12: OSError: libnvrtc.so.12: cannot open "
                     "shared object file: No such file or directory"),
    ],
    ids=["no-headers", "no-nvrtc"],
)
def test_first_use_without_headers_or_nvrtc_names_the_fix(stand_in, monkeypatch, error):
    def execute(plan, f, outs):
        raise error

    monkeypatch.setattr(_cupy_backend, "execute", execute)
    with pytest.raises(RuntimeError) as info:
        cugrad.gradient(dev(np.ones((4, 5))))
    message = str(info.value)
    assert 'pip install ".[cuda12]"' in message and "cupy-cuda12x[ctk]" in message
    assert "cugrad info" in message and info.value.__cause__ is error


def test_other_backend_errors_pass_unchanged(stand_in, monkeypatch):
    error = MemoryError("out of memory allocating 1 bytes")

    def execute(plan, f, outs):
        raise error

    monkeypatch.setattr(_cupy_backend, "execute", execute)
    with pytest.raises(MemoryError) as info:
        cugrad.gradient(dev(np.ones((4, 5))))
    assert info.value is error


@pytest.mark.parametrize("version", ["13.6.0", "14.1.9", "14.0.0rc1", "12.3.0"])
def test_a_cupy_older_than_14_2_is_refused_with_the_reason(stand_in, monkeypatch, version):
    monkeypatch.setattr(sys.modules["cupy"], "__version__", version)
    with pytest.raises(RuntimeError, match=r"older than 14\.2.*recompiles"):
        cugrad.gradient(dev(np.ones((4, 5))))
    assert not stand_in


# ------------------------------------------------------------------------------------------------
# The same complex-spacing calls through the real kernel sources (the C++ emulation of the CUDA
# kernels from tests/test_kernels_emulated.py), instead of the NumPy backend
# ------------------------------------------------------------------------------------------------

try:
    from test_kernels_emulated import emu, emulate  # noqa: F401 - emu is a fixture
except ImportError as exc:  # the emulation's helpers moved: say so rather than fail to collect
    _EMULATION_MISSING: str | None = f"the kernel emulation helpers are not importable: {exc}"
else:
    _EMULATION_MISSING = None


@pytest.fixture
def emulated_device(request, stand_in, monkeypatch):
    if _EMULATION_MISSING:
        pytest.skip(_EMULATION_MISSING)
    emulator = request.getfixturevalue("emu")

    def execute(plan, f, outs, tuning=None):
        stand_in.append(plan)
        emulate(emulator, plan, host(f), [host(o) for o in outs])

    monkeypatch.setattr(_cupy_backend, "execute", execute)
    return stand_in


@pytest.mark.emulated
@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.uint8])
@pytest.mark.parametrize("spacing", list(COMPLEX_SPACINGS))
def test_complex_spacing_through_the_emulated_kernels(emulated_device, spacing, dtype,
                                                      edge_order):
    f = random_field((7, 6), dtype, "complex-spacing")
    varargs = COMPLEX_SPACINGS[spacing]
    expected, _ = numpy_with_warnings(f, *varargs, edge_order=edge_order)
    result, warned = cugrad_on_device(f, *varargs, edge_order=edge_order)
    assert_same(result, expected)
    assert ComplexWarning in warned and emulated_device
