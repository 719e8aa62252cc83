"""The CUDA kernel sources, unmodified, run on the CPU and compared bit for bit with numpy.gradient.

``tests/emulation/cuda_shim.h`` supplies the CUDA qualifiers, built-ins and intrinsics; the code
strings are exactly what the CuPy backend compiles; the kernel arguments come from the backend's
own planning functions (``cugrad._cupy_backend``: path choice, geometry, packing), called with
numpy arrays instead of CuPy arrays. What this proves: the arithmetic (every formula, every dtype
and promotion, the float16 and complex rules), the index arithmetic of both kernels, the tiling
and edge handling of the fast path, and the argument layout. What it cannot prove: the inline PTX
of the device build (the host build uses plain IEEE C arithmetic in its place), CuPy's launch
glue, and timing; tests/test_gpu.py covers those on a GPU.

Also here, without any compiler: the plain-Python planning helpers of the CuPy backend.
"""

from __future__ import annotations

import dataclasses
import mmap
import re
import sys
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import assert_same, stable_rng

from cugrad import _cupy_backend as cb
from cugrad import _kernels, _plan
from cugrad._plan import make_plan

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
C64, C128 = np.dtype(np.complex64), np.dtype(np.complex128)

# General-path kernels built into the emulation library (each test's variant must be here).
GENERAL_VARIANTS = _kernels.representative_general_variants() + [
    _kernels.GeneralVariant(np.dtype(np.int8), F64, F64, F64, F64, F64, 2),
]


@pytest.fixture(scope="session")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from emulation import harness

    if harness.find_compiler() is None:
        pytest.skip("no C++ compiler (g++, c++ or clang++, or $CXX) to build the emulated kernels")
    return harness.build(tmp_path_factory.mktemp("emulated_kernels"),
                         _kernels.all_fast_variants(), GENERAL_VARIANTS)


# ------------------------------------------------------------------------------------------------
# Running a plan through the emulated kernels exactly as cugrad._cupy_backend.execute does
# ------------------------------------------------------------------------------------------------


def emulate(emu: Any, plan: _plan.GradientPlan, f: np.ndarray, outs: list[np.ndarray]) -> tuple:
    infos = [cb.ArrayInfo.of(o) for o in outs]
    launches, general = cb.select_paths(plan, cb.ArrayInfo.of(f), infos)
    for launch in launches:
        params, keep = cb.fast_launch_params(plan, launch, f, outs, np)
        grid, _ = cb.launch_config(launch.ntiles, None)
        emu.run_fast(launch.variant, params, grid)
        del keep
    for i in general:
        ap = plan.axis_plans[i]
        run_rows(emu, plan, f, outs[i], ap, 0, ap.length, 0)
    return launches, general


def run_rows(emu, plan, f, out, ap, lo, hi, f_start) -> None:
    variant = cb.general_variant(f.dtype, plan.data_dtype, ap, out.dtype)
    assert variant in GENERAL_VARIANTS, f"add {variant} to GENERAL_VARIANTS"
    args = cb.general_args(f, out, ap, lo, hi, f_start, np)
    emu.run_general(variant, args, cb._bits(out))


def gradient(emu: Any, f: np.ndarray, *varargs: Any, axis: Any = None, edge_order: int = 1,
             stack: bool = False, plan: _plan.GradientPlan | None = None) -> tuple:
    """(result shaped like numpy.gradient's, fast launches, general axis indices)."""
    plan = plan or make_plan(f, varargs, axis, edge_order)
    count = len(plan.axes)
    # NaN-filled outputs: an element the kernels forget to write cannot pass for a result.
    if stack:
        stacked = np.full((count,) + f.shape, np.nan, plan.out_dtype)
        outs = [stacked[i] for i in range(count)]
    else:
        outs = [np.full(f.shape, np.nan, plan.out_dtype) for _ in range(count)]
    launches, general = emulate(emu, plan, f, outs)
    result = outs[0] if count == 1 else tuple(outs)
    return result, launches, general


def check(emu: Any, f: np.ndarray, *varargs: Any, fast: bool | None = None, **kwargs: Any):
    expected = np.gradient(f, *varargs, **kwargs)
    result, launches, general = gradient(emu, f, *varargs, **kwargs)
    assert_same(result, expected)
    if fast is True:
        assert not general and launches, "expected every axis on the fast path"
    if fast is False:
        assert not launches, "expected the general path"
    return launches, general


def data(shape, dtype, *key) -> np.ndarray:
    rng = stable_rng(shape, np.dtype(dtype).name, *key)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -1000), min(info.max, 1000), shape, dtype=dtype,
                            endpoint=True)
    values = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, shape)
    if np.dtype(dtype).kind == "c":
        values = values + 1j * rng.standard_normal(shape)
    return values.astype(dtype)


def coords(n: int, *key: Any, dtype: Any = np.float64) -> np.ndarray:
    return np.cumsum(0.25 + stable_rng(n, *key).random(n)).astype(dtype)


# ------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------


@pytest.mark.emulated
def test_parameter_block_layout_matches_the_kernel(emu):
    assert emu.lib.cg_emu_sizeof_params() == cb.FAST_PARAMS_DTYPE.itemsize
    assert emu.lib.cg_emu_sizeof_axis() == cb.FAST_AXIS_DTYPE.itemsize
    assert emu.lib.cg_emu_offsetof_f() == cb.FAST_PARAMS_DTYPE.fields["f"][1]


def test_python_mirrors_of_kernel_constants():
    source = _kernels.kernel_source(_kernels.FAST_FILE)
    for name, value in (("CG_FAST_ROWS", _kernels.FAST_ROWS),
                        ("CG_FAST_MAX_PLANE_AXES", _kernels.FAST_MAX_PLANE_AXES),
                        ("CG_FAST_BLOCK", _kernels.FAST_BLOCK),
                        ("CG_NSCALARS", _kernels.NSCALARS),
                        ("CG_S_EDGES", cb.S_EDGES), ("CG_S_UNIFORM_EDGES", cb.S_UNIFORM_EDGES)):
        assert re.search(rf"#define {name} {value}\b", source), name
    stencils = _kernels.kernel_source(_kernels.STENCILS_FILE)
    for name, value in (("CG_MODE_UNIFORM", cb.MODE_UNIFORM), ("CG_MODE_COORDS", cb.MODE_COORDS),
                        ("CG_MODE_DEVICE", cb.MODE_DEVICE)):
        assert re.search(rf"#define {name} {value}\b", stencils), name


@pytest.mark.emulated
def test_half_to_float_every_value(emu):
    bits = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    got = emu.convert("cg_emu_half_to_float", bits, np.float32)
    expected = bits.view(np.float16).astype(np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def _special_floats(dtype) -> np.ndarray:
    finfo = np.finfo(dtype)
    h = np.finfo(np.float16)
    base = [0.0, 65504.0, 65519.99, 65520.0, 65536.0, float(h.tiny), float(h.smallest_subnormal),
            2.0**-25, 2.0**-25 * 1.0000001, 2.0**-26, 1 + 2.0**-11, 1 + 3 * 2.0**-11, 1 + 2.0**-11
            + 2.0**-40, float(finfo.max), float(finfo.smallest_subnormal), np.inf, np.nan]
    values = np.array(base + [-v for v in base], dtype)
    # ties and near-ties around every float16 subnormal and the first normals
    grid = np.arange(1, 2100, dtype=np.float64) * 2.0**-25
    return np.concatenate([values, grid.astype(dtype), np.nextafter(grid, 0).astype(dtype),
                           np.nextafter(grid, 1).astype(dtype)])


@pytest.mark.emulated
@pytest.mark.parametrize("dtype,name", [(np.float32, "cg_emu_float_to_half"),
                                        (np.float64, "cg_emu_double_to_half")])
def test_to_half_rounds_like_numpy(emu, dtype, name):
    # Random bit patterns over the whole range plus the rounding boundaries; numpy rounds double
    # straight to half (no double rounding through float).
    width = np.uint32 if dtype == np.float32 else np.uint64
    rng = stable_rng("to-half", name)
    patterns = rng.integers(0, np.iinfo(width).max, 200_000, dtype=width, endpoint=True)
    values = np.concatenate([patterns.view(dtype), _special_floats(dtype)])
    got = emu.convert(name, values, np.uint16)
    expected = values.astype(np.float16).view(np.uint16)
    nan = np.isnan(values)
    np.testing.assert_array_equal(got[~nan], expected[~nan])
    assert np.isnan(got[nan].view(np.float16)).all()


# ------------------------------------------------------------------------------------------------
# The fast path (RawKernel cugrad_gradient_fast)
# ------------------------------------------------------------------------------------------------

FAST_SHAPES = [(37,), (13, 17), (12, 20), (3, 11, 12), (3, 4, 10, 8)]
FAST_DTYPES = [np.float32, np.float64, np.int16, np.uint8, np.int64]


@pytest.mark.emulated
@pytest.mark.parametrize("shape", FAST_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FAST_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("edge_order", [1, 2])
def test_fast_all_axes_unit_spacing(emu, shape, dtype, edge_order):
    check(emu, data(shape, dtype), edge_order=edge_order, fast=True)


@pytest.mark.emulated
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize(
    "spacing",
    ["python-float", "numpy-float64", "coordinates", "mixed"],
)
def test_fast_spacings(emu, dtype, edge_order, spacing):
    shape = (3, 11, 12)
    f = data(shape, dtype, spacing)
    varargs: tuple[Any, ...] = {
        "python-float": (0.3,),
        "numpy-float64": (np.float64(0.3),),
        "coordinates": tuple(coords(n, spacing, n) for n in shape),
        "mixed": (0.7, coords(11, "mixed"), np.float64(1.5)),
    }[spacing]
    check(emu, f, *varargs, edge_order=edge_order, fast=True)


@pytest.mark.emulated
@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, (0, 2), (3, 1), (1, 2)], ids=str)
def test_fast_axis_subsets_and_batch_dims(emu, axis):
    # Unrequested dimensions act as a batch: they merge into planes, rows or columns.
    f = data((3, 9, 10, 12), np.float32, axis)
    check(emu, f, 0.5, axis=axis, edge_order=2, fast=True)


@pytest.mark.emulated
@pytest.mark.parametrize("edge_order", [1, 2])
def test_fast_stacked_output(emu, edge_order):
    f = data((5, 9, 16), np.float64, "stack")
    x = coords(9, "stack")
    expected = np.stack(np.gradient(f, 1.0, x, 2.0, edge_order=edge_order))
    result, launches, general = gradient(emu, f, 1.0, x, 2.0, edge_order=edge_order, stack=True)
    assert not general
    assert_same(np.stack(result), expected)


@pytest.mark.emulated
def test_fast_six_dimensions_split_into_launches(emu):
    f = data((3, 3, 4, 3, 9, 8), np.float32, "6d")
    launches, _ = check(emu, f, edge_order=2, fast=True)
    assert len(launches) > 1  # more plane axes than one launch takes


@pytest.mark.emulated
def test_fast_narrow_or_misaligned_falls_back_to_scalar_access(emu):
    f = data((6, 7), np.float32, "narrow")  # 7 columns: no 4-wide access
    launches, _ = check(emu, f, fast=True)
    assert launches[0].variant.vec == 1
    buffer = data((6 * 8 + 1,), np.float32, "misaligned")
    shifted = buffer[1:].reshape(6, 8)  # C-contiguous, 4 bytes off 16-byte alignment
    launches, _ = check(emu, shifted, fast=True)
    assert launches[0].variant.vec == 1
    aligned = np.ascontiguousarray(shifted)
    launches, _ = check(emu, aligned, fast=True)
    assert launches[0].variant.vec in (1, 4)  # 4 when numpy's allocation is 16-byte aligned


@pytest.mark.emulated
def test_fast_mixed_compute_dtypes_launch_per_dtype(emu):
    f = data((10, 12), np.float32, "mixed-dtypes")
    # axis 0 computes in float32 (Python float), axis 1 in float64 (float64 coordinates)
    launches, _ = check(emu, f, 0.5, coords(12, "mixed-dtypes"), fast=True)
    dtypes = sorted(str(launch.variant.compute_dtype) for launch in launches)
    assert dtypes == ["float32", "float64"]


@pytest.mark.emulated
def test_fast_special_values(emu):
    f = data((9, 12), np.float32, "special")
    f[1, 2] = np.inf
    f[4, 5] = -np.inf
    f[6, 0] = np.nan
    f[7, 7:11] = np.float32(1e-45)  # subnormal differences must not flush to zero
    f[8, :] = -0.0
    check(emu, f, fast=True)
    check(emu, f, np.float64(1e-300), 1e38, fast=True)


def device_style_plan(f: np.ndarray, coordinates: list[np.ndarray], edge_order: int):
    """A plan whose axes carry both variants and numpy's flag, as for coordinates on a GPU.

    The host arrays stand in for device arrays: the kernels read the flag and the scalar table
    from memory, which is what they do on the device.
    """
    plan = make_plan(f, tuple(coordinates), None, edge_order)
    axis_plans = []
    for ap, x in zip(plan.axis_plans, coordinates, strict=True):
        diffs = x[1:] - x[:-1]
        axis_plans.append(_plan._device_coordinate_axis(
            ap.axis, ap.length, _plan._DeviceCoordinates(diffs), plan.data_dtype,
            plan.out_dtype, edge_order == 1))
    return dataclasses.replace(plan, axis_plans=tuple(axis_plans))


@pytest.mark.emulated
@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.complex64],
                         ids=lambda d: np.dtype(d).name)
def test_device_flag_chooses_numpy_shortcut(emu, edge_order, dtype):
    f = data((11, 12), dtype, "device-flag")
    even = np.arange(11) * 0.375  # evenly spaced: numpy takes its uniform shortcut
    uneven = coords(12, "device-flag")
    plan = device_style_plan(f, [even, uneven], edge_order)
    assert plan.axis_plans[0].uniform is None and bool(plan.axis_plans[0].uniform_flag)
    assert not bool(plan.axis_plans[1].uniform_flag)
    result, launches, general = gradient(emu, f, plan=plan)
    assert_same(result, np.gradient(f, even, uneven, edge_order=edge_order))
    if dtype in (np.float32, np.float64):
        assert not general, "device coordinate axes of float data take the fast path"


@pytest.mark.emulated
def test_index_beyond_2_31(emu):
    """The i64 variant: elements past 2**31, on lazily mapped memory (only the tail is touched)."""
    rows, cols = 2**21 + 1, 1024  # 2**31 + 1024 float32 elements
    nbytes = rows * cols * 4
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | (0x4000 if sys.platform == "linux" else 0)
    try:
        buffers = [mmap.mmap(-1, nbytes, flags=flags) for _ in range(3)]
    except (OSError, ValueError) as exc:
        pytest.skip(f"cannot map 3 x {nbytes} bytes lazily here: {exc}")
    # The arrays keep the mappings alive; they are unmapped when the test drops them.
    f, d0, d1 = (np.frombuffer(b, np.float32).reshape(rows, cols) for b in buffers)
    del buffers
    tail = 16
    f[-tail:] = data((tail, cols), np.float32, "tail")
    plan = make_plan(f, (0.5,), None, 2)
    (launch,), general = cb.select_paths(
        plan, cb.ArrayInfo.of(f), [cb.ArrayInfo.of(d0), cb.ArrayInfo.of(d1)])
    assert not general and launch.variant.index == "i64"
    params, _ = cb.fast_launch_params(plan, launch, f, [d0, d1], np)
    grid, block = cb.launch_config(launch.ntiles, None)
    nxc, _, _ = cb.tile_counts(launch.geometry, launch.variant.vec)
    first_row_tile = (rows - 8) // _kernels.FAST_ROWS  # the last 8 rows, and a little more
    first_block = first_row_tile * nxc // block
    emu.run_fast(launch.variant, params, grid, first_block, grid)
    first_row = first_block * block // nxc * _kernels.FAST_ROWS
    assert rows - first_row <= tail - 2  # the rows computed read only the filled tail
    assert first_row * cols < 2**31 < rows * cols  # and they straddle element 2**31
    expected = np.gradient(np.array(f[-tail:]), 0.5, edge_order=2)
    window = slice(first_row - (rows - tail), None)
    assert_same(np.array(d0[first_row:]), expected[0][window])
    assert_same(np.array(d1[first_row:]), expected[1][window])


# ------------------------------------------------------------------------------------------------
# The general path (ElementwiseKernel body cg_general_point)
# ------------------------------------------------------------------------------------------------

GENERAL_DTYPES = [np.float16, np.float32, np.float64, np.complex64, np.complex128, np.int64]


def layouts(f: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "fortran": np.asfortranarray(f),
        "reversed": f[::-1, :, ::-1],
        "strided-view": np.repeat(f, 2, axis=2)[:, :, ::2],
        "transposed": f.transpose(2, 0, 1),
    }


@pytest.mark.emulated
@pytest.mark.parametrize("layout", ["fortran", "reversed", "strided-view", "transposed"])
@pytest.mark.parametrize("dtype", GENERAL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("edge_order", [1, 2])
def test_general_layouts(emu, layout, dtype, edge_order):
    f = layouts(data((4, 9, 6), dtype, layout))[layout]
    check(emu, f, edge_order=edge_order, fast=False)


@pytest.mark.emulated
@pytest.mark.parametrize("dtype", [np.float16, np.complex64, np.complex128],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("edge_order", [1, 2])
def test_general_dtypes_and_promotions(emu, dtype, edge_order):
    f = data((7, 10), dtype, "promotions")
    check(emu, f, edge_order=edge_order, fast=False)  # Python floats: the data dtype
    check(emu, f, 0.3, coords(10, "p"), edge_order=edge_order, fast=False)  # float64 tables
    check(emu, f, np.float32(0.3), axis=0, edge_order=edge_order, fast=False)


@pytest.mark.emulated
def test_general_regions_with_different_compute_dtypes(emu):
    # numpy computes the interior in float64 (2.0 * np.int8) and the edges in float32
    f = data((6, 9), np.float32, "regions")
    plan = make_plan(f, (np.int8(3),), 1, 1)
    assert plan.axis_plans[0].interior.dtype != plan.axis_plans[0].left.dtype
    check(emu, f, np.int8(3), axis=1, fast=False)


@pytest.mark.emulated
@pytest.mark.parametrize("dtype", [np.float16, np.complex64, np.complex128],
                         ids=lambda d: np.dtype(d).name)
def test_general_special_values(emu, dtype):
    f = data((8, 9), dtype, "special")
    specials = [np.inf, -np.inf, np.nan, 0.0, -0.0]
    if np.dtype(dtype).kind == "c":
        specials += [complex(np.inf, 0), complex(0, np.inf), complex(np.nan, 1),
                     complex(-0.0, -0.0)]
    else:
        specials += [6e-8, -6e-8, 65504.0]  # float16 subnormals and max
    flat = f.reshape(-1)
    flat[: len(specials) * 3 : 3] = np.array(specials, dtype=dtype)
    check(emu, f, fast=False)
    check(emu, f, 0.5, coords(9, "s"), edge_order=2, fast=False)
    if np.dtype(dtype).kind == "c":
        check(emu, f, 0.0, axis=0)  # numpy's zero-divisor branch of Smith's division
        check(emu, f, -0.0, axis=1)


@pytest.mark.emulated
def test_general_bool_data_on_a_device(emu):
    # Device bool data reaches a kernel with coordinates and second-order edges: numpy multiplies
    # bool by float64 coefficients (True -> 1.0); its differences of bools would raise.
    f = stable_rng("bool").random((7, 9)) > 0.5
    x, y = coords(7, "bool-x"), coords(9, "bool-y")
    device_like = SimpleNamespace(shape=f.shape, ndim=f.ndim, dtype=f.dtype)
    plan = make_plan(device_like, (x, y), None, 2)
    result, launches, general = gradient(emu, f, plan=plan)
    assert not launches
    assert_same(result, np.gradient(f, x, y, edge_order=2))


@pytest.mark.emulated
def test_complex_spacing_uses_numpy_complex_multiply(emu):
    f = data((6, 7), np.complex128, "complex-spacing")
    check(emu, f, 0.5 + 0.25j, axis=0)
    check(emu, f, 0.5 + 0.25j, axis=1, edge_order=2)


@pytest.mark.emulated
def test_complex64_subnormal_divisor_is_not_flushed(emu):
    f = data((5, 6), np.complex64, "subnormal")
    check(emu, f, np.float32(1e-42), axis=1)


@pytest.mark.emulated
@pytest.mark.parametrize("lo,hi", [(0, 3), (2, 7), (5, 11), (0, 11), (10, 11)])
@pytest.mark.parametrize("edge_order", [1, 2])
def test_compute_rows_windows(emu, lo, hi, edge_order):
    """compute_rows: rows [lo, hi) from the smallest window of f that holds what they read."""
    f = data((11, 5, 4), np.float32, "rows")
    x = coords(11, "rows")
    plan = make_plan(f, (x,), 0, edge_order)
    ap = plan.axis_plans[0]
    start = max(0, lo - 1) if lo > 0 else 0
    stop = min(11, hi + 1)
    if edge_order == 2:
        if lo == 0:
            stop = max(stop, 3)
        if hi == 11:
            start = min(start, 8)
    window = np.asfortranarray(f[start:stop])  # any layout
    out = np.full((hi - lo, 5, 4), np.nan, np.float32)
    run_rows(emu, plan, window, out, ap, lo, hi, start)
    expected = np.gradient(f, x, axis=0, edge_order=edge_order)[lo:hi]
    assert_same(out, expected)


# ------------------------------------------------------------------------------------------------
# The CuPy glue itself, on a stand-in for CuPy whose kernels are the emulated ones
# ------------------------------------------------------------------------------------------------


class _HostArray(np.ndarray):
    """A numpy array posing as a device array."""


def fake_cupy(emu: Any) -> Any:
    """Just the CuPy surface that cugrad._cupy_backend and cugrad._kernels touch.

    RawModule and ElementwiseKernel check the code, options and parameters they are given and run
    the emulated kernels; everything else is numpy. The emulated kernels share the shim's
    built-in variables, so launches are serialised.
    """
    fast = {v.expression: v for v in _kernels.all_fast_variants()}
    general = {v.name: v for v in GENERAL_VARIANTS}
    lock = threading.Lock()
    log: dict[str, int] = {"modules": 0, "fast": 0, "general": 0}

    def wrap(a: Any) -> Any:
        return np.asarray(a).view(_HostArray)

    class Device:
        def __init__(self, device_id: int = 0) -> None:
            self.id = device_id
            self.attributes = {"MultiProcessorCount": 2}

    class RawModule:
        def __init__(self, code: str, options: tuple, name_expressions: list) -> None:
            assert code == _kernels.fast_module_code() and options == _kernels.COMPILE_OPTIONS
            self.names = list(name_expressions)
            log["modules"] += 1

        def get_function(self, expression: str) -> Any:
            assert expression in self.names
            variant = fast[expression]

            def launch(grid: tuple, block: tuple, args: tuple) -> None:
                (params,) = args
                assert block == (_kernels.FAST_BLOCK,) and params.dtype == cb.FAST_PARAMS_DTYPE
                with lock:
                    emu.run_fast(variant, params, grid[0])
                log["fast"] += 1

            return launch

    class ElementwiseKernel:
        def __init__(self, in_params, out_params, operation, name, preamble, options, no_return):
            self.variant = general[name]
            assert in_params == self.variant.in_params() and no_return
            assert operation == self.variant.operation() and preamble == _kernels.general_preamble()
            self.count = len(in_params.split(","))

        def __call__(self, *args: Any) -> None:
            *inputs, out = args
            assert len(inputs) == self.count
            with lock:
                emu.run_general(self.variant, tuple(inputs), out)
            log["general"] += 1

    stream = SimpleNamespace(ptr=7)
    return SimpleNamespace(
        ndarray=_HostArray, log=log, wrap=wrap, RawModule=RawModule,
        ElementwiseKernel=ElementwiseKernel,
        cuda=SimpleNamespace(Device=Device, get_current_stream=lambda: stream),
        asarray=lambda a, dtype=None: wrap(np.array(a, dtype=dtype)),
        zeros=lambda *a, **k: wrap(np.zeros(*a, **k)),
        empty=lambda *a, **k: wrap(np.empty(*a, **k)),
        concatenate=lambda parts: wrap(np.concatenate(parts)),
        ascontiguousarray=lambda a: wrap(np.ascontiguousarray(a)),
    )


@pytest.mark.emulated
def test_cupy_glue_with_emulated_kernels(emu, monkeypatch):
    cp = fake_cupy(emu)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setattr(_kernels, "_cache", {})
    monkeypatch.setattr(_kernels, "_first_calls", set())
    monkeypatch.setattr(cb, "_uploaded_tables", {})
    cb._sm_count.cache_clear()
    try:
        cases = [
            (data((40, 33, 16), np.float32, "glue"), (0.5, coords(33, "glue"), 2.0), 2),
            (data((300, 1000), np.float64, "glue"), (0.1,), 1),  # grid-stride: 2 SMs' worth
            (np.asfortranarray(data((9, 10), np.float32, "glue")), (), 2),
            (data((9, 10), np.float16, "glue"), (np.float32(0.5),), 1),
            (data((9, 10), np.complex64, "glue"), (), 2),
        ]
        for f, varargs, edge_order in cases:
            plan = make_plan(f, varargs, None, edge_order)
            outs = [cp.wrap(np.full(f.shape, np.nan, plan.out_dtype)) for _ in plan.axes]
            cb.execute(plan, cp.wrap(f), outs)
            expected = np.gradient(f, *varargs, edge_order=edge_order)
            assert_same(tuple(np.asarray(o) for o in outs), tuple(expected))
        assert cp.log["fast"] >= 2 and cp.log["general"] >= 3

        # compute_rows: a slabbed caller uploads an axis's tables once
        monkeypatch.setattr(cb, "_uploaded_tables", {})
        f = data((40, 6), np.float64, "slabs")
        x = coords(40, "slabs")
        plan = make_plan(f, (x,), 0, 2)
        expected = np.gradient(f, x, axis=0, edge_order=2)
        for lo in range(0, 40, 10):
            start, stop = max(0, lo - 1), min(40, lo + 11)
            out = cp.wrap(np.full((10, 6), np.nan))
            cb.compute_rows(cp.wrap(f[start:stop]), out, plan.axis_plans[0], plan.data_dtype,
                            lo, lo + 10, start)
            assert_same(np.asarray(out), expected[lo:lo + 10])
        assert len(cb._uploaded_tables) == 1

        # concurrent first calls build each kernel once
        monkeypatch.setattr(_kernels, "_cache", {})
        cp.log["modules"] = 0
        f = data((33, 40), np.float64, "threads")
        plan = make_plan(f, (0.25,), None, 1)
        errors: list[BaseException] = []
        barrier = threading.Barrier(6)

        def work() -> None:
            try:
                outs = [cp.wrap(np.empty(f.shape)) for _ in range(2)]
                barrier.wait()
                cb.execute(plan, cp.wrap(f), outs)
                assert_same(tuple(np.asarray(o) for o in outs), np.gradient(f, 0.25))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert cp.log["modules"] == 1
    finally:
        cb._sm_count.cache_clear()


# ------------------------------------------------------------------------------------------------
# Planning helpers of the CuPy backend (plain Python, no compiler)
# ------------------------------------------------------------------------------------------------


def test_collapse_merges_unrequested_dims_and_names_roles():
    g = cb.collapse((3, 1, 4, 5, 6), (0, 3))
    assert (g.W, g.H, g.P) == (6, 5, 12)
    assert g.roles[3] == cb.AxisRole("y", 5, 6, 0)
    assert g.roles[0] == cb.AxisRole("plane", 3, 120, 4)
    g = cb.collapse((7, 2), (1,))
    assert (g.W, g.H, g.P) == (2, 7, 1) and g.roles[1].role == "x"
    g = cb.collapse((9,), (0,))
    assert (g.W, g.H, g.P) == (9, 1, 1)
    g = cb.collapse((1, 1, 8, 1), (2,))
    assert (g.W, g.H, g.P) == (8, 1, 1)


def test_split_axes_respects_the_plane_limit():
    shape = (2, 3, 4, 5, 6, 7)
    groups = cb.split_axes(shape, list(range(6)))
    assert sorted(ax for g in groups for ax in g) == list(range(6))
    for g in groups:
        assert len(cb.collapse(shape, g).plane_axes) <= _kernels.FAST_MAX_PLANE_AXES
    assert cb.split_axes((4, 5, 6), [0, 1, 2]) == [[0, 1, 2]]


def test_launch_config_and_index_width():
    assert cb.launch_config(1, 132) == (1, 256)
    assert cb.launch_config(10**9, 132) == (132 * cb.BLOCKS_PER_SM, 256)
    assert cb.launch_config(10**6, None) == (-(-10**6 // 256), 256)
    assert cb.index_width(2**31 - 1) == "i32"
    assert cb.index_width(100, 2**31) == "i64"
    rows = -(-9 // _kernels.FAST_ROWS)
    assert cb.tile_counts(cb.FastGeometry(W=16, H=9, P=2, roles={}), 4) == (4, rows, 4 * rows * 2)


def test_choose_vec():
    assert cb.choose_vec(F32, 16, 256, [512, 1024], 4) == 4
    assert cb.choose_vec(F32, 18, 256, [512], 4) == 1  # 18 % 4
    assert cb.choose_vec(F32, 16, 260, [512], 4) == 1  # input off alignment
    assert cb.choose_vec(F64, 16, 256, [520], 8) == 1  # an output off alignment
    assert cb.choose_vec(F64, 16, 256, [512], 8) == 2
    assert cb.choose_vec(np.dtype(np.int32), 16, 256, [512], 8) == 1


def test_select_paths_decisions():
    f32 = np.zeros((4, 8), np.float32)
    plan = make_plan(f32, (), None, 1)

    def paths(f, plan, outs=None):
        outs = outs if outs is not None else [np.zeros(f.shape, plan.out_dtype) for _ in plan.axes]
        return cb.select_paths(plan, cb.ArrayInfo.of(f), [cb.ArrayInfo.of(o) for o in outs])

    launches, general = paths(f32, plan)
    assert len(launches) == 1 and not general and launches[0].indices == (0, 1)
    assert launches[0].variant.name.startswith("cugrad_gradient_fast_f32_calcf32")
    fortran = np.asfortranarray(f32)
    assert paths(fortran, make_plan(fortran, (), None, 1)) == ([], [0, 1])
    f16 = f32.astype(np.float16)
    assert paths(f16, make_plan(f16, (), None, 1)) == ([], [0, 1])
    # a Fortran-ordered output sends its axis to the general path only
    outs = [np.zeros((4, 8), np.float32), np.asfortranarray(np.zeros((4, 8), np.float32))]
    launches, general = paths(f32, plan, outs)
    assert general == [1] and launches[0].indices == (0,)
    i8 = f32.astype(np.int8)
    launches, general = paths(i8, make_plan(i8, (), None, 2))
    assert launches[0].variant.in_dtype == np.int8 and not general


def test_host_scalars_convert_like_numpy():
    assert cb.host_scalar(0.1, F32) == np.float32(0.1)
    assert cb.host_scalar(np.float32(0.1), F64) == np.float64(np.float32(0.1))
    assert cb.host_scalar(3, F16) == np.float16(3)
    assert cb.host_scalar(0.5, C128) == np.complex128(0.5)


def test_general_variant_names_spell_the_specialisation():
    v = _kernels.GeneralVariant(F16, F16, F32, F16, F16, F16, 2)
    assert v.name == "cugrad_gradient_general_f16_f32_f16_f16_of16_eo2"
    assert "raw uint16 f" in v.in_params() and v.out_params() == "uint16 out"
    fast = _kernels.FastVariant(F32, F64, 4, "i64")
    assert fast.name == "cugrad_gradient_fast_f32_calcf64_v4_i64"
    assert fast.expression == "cugrad_gradient_fast<float, double, 4, long long>"
