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
import math
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

def _general_variants() -> list[_kernels.GeneralVariant]:
    """General-path kernels built into the emulation library (each test's variant must be here):
    every data dtype with the compute dtypes numpy's promotions and cugrad's weights give it."""
    GV = _kernels.GeneralVariant
    slots = {
        F16: [(F16,), (F32,), (F64,), (F64, F16), (F64, F16, F32)],
        F32: [(F32,), (F64,), (F64, F32), (F32, F64)],
        F64: [(F64,)],
        C64: [(C64,), (C128,), (C128, C64)],
        C128: [(C128,)],
    }
    variants = [GV(d, d, s, d) for d, options in slots.items() for s in options]
    for int_dtype in (np.int8, np.int16, np.int64, np.uint8, np.bool_):
        variants.append(GV(np.dtype(int_dtype), F64, (F64,), F64))
    variants += _kernels.representative_general_variants()
    return list(dict.fromkeys(variants))


GENERAL_VARIANTS = _general_variants()


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


def emulate(emu: Any, plan: _plan.GradientPlan, f: np.ndarray, outs: list[np.ndarray],
            tuning: _kernels.FastTuning = _kernels.DEFAULT_TUNING) -> tuple:
    infos = [cb.ArrayInfo.of(o) for o in outs]
    launches, general = cb.select_paths(plan, cb.ArrayInfo.of(f), infos, tuning)
    for launch in launches:
        params, keep = cb.fast_launch_params(plan, launch, f, outs, np)
        grid, _ = cb.launch_config(launch.work.nitems, None, tuning)
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
             stack: bool = False, plan: _plan.GradientPlan | None = None,
             tuning: _kernels.FastTuning = _kernels.DEFAULT_TUNING, **options: Any) -> tuple:
    """(result shaped like numpy.gradient's, fast launches, general axis indices)."""
    plan = plan or make_plan(f, varargs, axis, edge_order, **options)
    count = len(plan.axes)
    # NaN-filled outputs: an element the kernels forget to write cannot pass for a result.
    if stack:
        stacked = np.full((count,) + f.shape, np.nan, plan.out_dtype)
        outs = [stacked[i] for i in range(count)]
    else:
        outs = [np.full(f.shape, np.nan, plan.out_dtype) for _ in range(count)]
    launches, general = emulate(emu, plan, f, outs, tuning)
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
    assert emu.lib.cg_emu_sizeof_rec() == cb.FAST_REC_DTYPE.itemsize
    assert emu.lib.cg_emu_offsetof_rec_w() == cb.FAST_REC_DTYPE.fields["w"][1]


def test_python_mirrors_of_kernel_constants():
    source = _kernels.kernel_source(_kernels.FAST_FILE)
    tuning = _kernels.DEFAULT_TUNING
    for name, value in (("CG_FAST_ROWS", tuning.rows_per_thread),
                        ("CG_FAST_MIN_BLOCKS", tuning.min_blocks_per_sm),
                        ("CG_FAST_BLOCK", tuning.block),
                        ("CG_FAST_MAX_PLANE_AXES", _kernels.FAST_MAX_PLANE_AXES),
                        ("CG_FAST_RMAX", _kernels.FAST_RMAX),
                        ("CG_FAST_MAX_EDGE", _kernels.FAST_MAX_EDGE),
                        ("CG_FORM_DIFF", _kernels.FORM_DIFF),
                        ("CG_FORM_COMB3", _kernels.FORM_COMB3),
                        ("CG_FORM_DSYM", _kernels.FORM_DSYM),
                        ("CG_FORM_DCOORD", _kernels.FORM_DCOORD)):
        assert re.search(rf"#define {name} {value}\b", source), name
    stencils = _kernels.kernel_source(_kernels.STENCILS_FILE)
    for name, value in (("CG_KIND_DIFF", _kernels.KIND_CODES["diff"]),
                        ("CG_KIND_COMB", _kernels.KIND_CODES["comb"]),
                        ("CG_KIND_DSUM", _kernels.KIND_CODES["dsum"]),
                        ("CG_MAX_TERMS", _kernels.MAX_TERMS),
                        ("CG_MAX_OFFSETS", _kernels.MAX_OFFSETS)):
        assert re.search(rf"#define {name} {value}\b", stencils), name
    general = _kernels.kernel_source(_kernels.GENERAL_FILE)
    for k, field in enumerate(cb.GREC_FIELDS):
        assert re.search(rf"#define CG_GREC_{field.upper()} {k}\b", general), field
    assert re.search(rf"#define CG_GREC_OFF {len(cb.GREC_FIELDS)}\b", general)


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


def aligned_empty(shape: tuple[int, ...], dtype: Any, offset_elements: int = 0) -> np.ndarray:
    """An uninitialised C-contiguous array whose first element sits ``offset_elements`` past a
    64-byte boundary (as a CuPy array view would)."""
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    raw = np.empty((count + offset_elements) * dtype.itemsize + 64, np.uint8)
    start = (-raw.ctypes.data) % 64 + offset_elements * dtype.itemsize
    return raw[start:start + count * dtype.itemsize].view(dtype).reshape(shape)


@pytest.mark.emulated
@pytest.mark.parametrize("W", [7, 13, 18, 33])
@pytest.mark.parametrize("offset", [0, 1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_fast_vector_body_with_any_width_and_alignment(emu, W, offset, dtype):
    """Issue 9, item 9: W % V != 0 and misaligned arrays keep 16-byte chunks for every aligned
    part of every row; only the head and tail of a row take the one-element items."""
    f = aligned_empty((3, 5, W), dtype, offset % (16 // np.dtype(dtype).itemsize))
    f[...] = data((3, 5, W), dtype, "align", W, offset)
    outs = [aligned_empty(f.shape, dtype, offset % (16 // np.dtype(dtype).itemsize))
            for _ in range(3)]
    for o in outs:
        o.fill(np.nan)
    plan = make_plan(f, (0.5,), None, 2)
    launches, general = emulate(emu, plan, f, outs)
    assert not general and len(launches) == 1
    (launch,) = launches
    vec = 16 // np.dtype(dtype).itemsize
    assert launch.variant.vec == vec
    assert launch.phase == offset % vec
    work = launch.work
    rows = 15
    assert work.nvec > 0
    # one-element items: at most V - 1 unaligned columns plus x's edge column at each end of a row
    assert work.nsl <= 1 + vec - 1 and work.nsr <= 1 + vec - 1
    assert work.nscalar == (work.nsl + work.nsr) * rows
    assert_same(tuple(outs), tuple(np.gradient(np.array(f), 0.5, edge_order=2)))


def test_fast_work_covers_every_element_once():
    """The kernel's item decode, replayed in Python: every element of every row is computed by
    exactly one vector lane or one-element item, for any W, phase, body range and V."""
    for vec in (1, 2, 4):
        for W in (1, 2, 3, 5, 8, 9, 16, 17):
            for phase in range(vec):
                for xlo, xhi in ((0, W), (min(1, W), max(W - 1, 0)), (min(4, W), max(W - 4, 0))):
                    if xhi < xlo:
                        continue
                    geom = cb.FastGeometry(W=W, H=3, P=2, roles={})
                    work = cb.fast_work(geom, vec, phase, xlo, xhi, 2)
                    seen = np.zeros((6, W), int)
                    for g in range(6):
                        hs = cb.chunk_start(g, W, phase, xlo, vec)
                        nc = (xhi - hs) // vec if xhi > hs else 0
                        assert nc <= work.nxc
                        te = hs + nc * vec
                        for xc in range(nc):
                            c0 = hs + xc * vec
                            assert (phase + g * W + c0) % vec == 0  # aligned chunk
                            assert xlo <= c0 and c0 + vec <= xhi  # x body only
                            seen[g, c0:c0 + vec] += 1
                        for slot in range(work.nsl + work.nsr):
                            if slot < work.nsl:
                                if slot < min(hs, W):
                                    seen[g, slot] += 1
                            elif te + slot - work.nsl < W:
                                seen[g, te + slot - work.nsl] += 1
                    assert (seen == 1).all(), (vec, W, phase, xlo, xhi, seen)


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
    else:  # the general path reads numpy's flag and both region lists on the device
        assert general == [0, 1] and not launches


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
    params, keep = cb.fast_launch_params(plan, launch, f, [d0, d1], np)
    work = launch.work
    grid, block = cb.launch_config(work.nitems, None)
    nxc = work.nxc
    first_row_tile = (rows - 8) // _kernels.FAST_ROWS  # the last 8 rows, and a little more
    first_block = first_row_tile * nxc // block
    # the vector tiles of the last rows, then the one-element items (x's edge columns)
    emu.run_fast(launch.variant, params, grid, first_block, -(-work.nvec // block))
    # the first row group whose tiles all lie in the blocks run
    first_row = -(-first_block * block // nxc) * _kernels.FAST_ROWS
    first_item = first_row * (work.nsl + work.nsr)
    emu.run_fast(launch.variant, params, grid, (work.nvec + first_item) // block, grid)
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
    assert len({r.dtype for r in plan.axis_plans[0].regions}) == 2
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
    tunings = {_kernels.fast_module_code(): _kernels.DEFAULT_TUNING}
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
            assert code in tunings and options == _kernels.COMPILE_OPTIONS
            self.names = list(name_expressions)
            log["modules"] += 1

        def get_function(self, expression: str) -> Any:
            assert expression in self.names
            variant = fast[expression]

            def launch(grid: tuple, block: tuple, args: tuple) -> None:
                (params,) = args
                assert block == (_kernels.FAST_BLOCK,) and params.dtype == cb.FAST_PARAMS_DTYPE
                assert len(grid) == 1 and grid[0] <= 2 * cb.THREADS_PER_SM // block[0]
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

    class Stream:
        # every thread's default stream has the same pointer (CUPY_CUDA_PER_THREAD_DEFAULT_STREAM)
        ptr = 7

        def record(self) -> Any:
            log["events"] += 1
            return SimpleNamespace(thread=threading.get_ident())

        def wait_event(self, event: Any) -> None:
            log["waits"] += 1

    stream = Stream()
    log.update(events=0, waits=0)
    return SimpleNamespace(
        ndarray=_HostArray, log=log, wrap=wrap, RawModule=RawModule,
        ElementwiseKernel=ElementwiseKernel,
        cuda=SimpleNamespace(Device=Device, get_current_stream=lambda: stream),
        asarray=lambda a, dtype=None: wrap(np.array(a, dtype=dtype)),
        zeros=lambda *a, **k: wrap(np.zeros(*a, **k)),
        full=lambda *a, **k: wrap(np.full(*a, **k)),
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
        cp.log.update(events=0, waits=0)
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
        # every reuse made its stream wait for the upload's event
        assert cp.log["events"] == 1 and cp.log["waits"] == 3

        # Issue 9, item 5: another thread whose default stream has the same pointer uploads its
        # own copy instead of reading one another stream may still be copying.
        def other_thread() -> None:
            out = cp.wrap(np.full((10, 6), np.nan))
            cb.compute_rows(cp.wrap(f[:11]), out, plan.axis_plans[0], plan.data_dtype, 0, 10, 0)
            assert_same(np.asarray(out), expected[:10])

        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        assert len(cb._uploaded_tables) == 2 and cp.log["events"] == 2

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
    assert cb.launch_config(10**9, 132) == (132 * (2048 // 256), 256)
    assert cb.launch_config(10**9, 132, TUNED) == (132 * (2048 // 64), 64)
    assert cb.launch_config(10**6, None) == (-(-10**6 // 256), 256)
    assert cb.index_width(2**31 - 1) == "i32"
    assert cb.index_width(100, 2**31) == "i64"


def test_choose_vec():
    assert cb.choose_vec(F32, 256, [512, 1024], 4) == 4
    assert cb.choose_vec(F32, 260, [516], 4) == 4  # misaligned alike: chunks start later
    assert cb.choose_vec(F32, 260, [512], 4) == 1  # f and an output at different phases
    assert cb.choose_vec(F64, 256, [520], 8) == 1
    assert cb.choose_vec(F64, 256, [512], 8) == 2
    assert cb.choose_vec(F64, 258, [514], 8) == 1  # not even element-aligned
    assert cb.choose_vec(np.dtype(np.int32), 256, [512], 8) == 1


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
    v = _kernels.GeneralVariant(F16, F16, (F64, F16), F16)
    assert v.name == "cugrad_gradient_general_f16_df16_cf64_f16_of16"
    assert "raw uint16 f" in v.in_params() and v.out_params() == "uint16 out"
    assert "raw float64 w0, raw uint16 w1, raw float64 w2" in v.in_params()
    assert v.template_args == "cg_half, 2, double, cg_half, double, cg_half"
    fast = _kernels.FastVariant(F32, F64, 4, "i64")
    assert fast.name == "cugrad_gradient_fast_f32_calcf64_v4_i64_r2_m2_b256"
    assert fast.expression == "cugrad_gradient_fast<float, double, 4, long long>"


# ------------------------------------------------------------------------------------------------
# Issue 9, item 5: the keying of uploaded tables
# ------------------------------------------------------------------------------------------------


def test_upload_key_names_plan_device_stream_and_thread():
    f = data((6, 5), np.float64, "keys")
    ap = make_plan(f, (coords(6, "keys"),), 0, 1).axis_plans[0]
    here = cb.upload_key(ap, 0, 7)
    assert here == (id(ap), 0, 7, threading.get_ident())
    assert cb.upload_key(ap, 1, 7) != here and cb.upload_key(ap, 0, 8) != here
    keys: list[Any] = []
    worker = threading.Thread(target=lambda: keys.append(cb.upload_key(ap, 0, 7)))
    worker.start()
    worker.join()
    assert keys[0] != here  # same plan, device and stream pointer, another thread


# ------------------------------------------------------------------------------------------------
# Issue 9, item 8: the tuning knobs
# ------------------------------------------------------------------------------------------------

TUNED = _kernels.FastTuning(rows_per_thread=3, min_blocks_per_sm=1, block=64)


def test_fast_tuning_is_a_frozen_dataclass_with_the_defaults():
    t = _kernels.FastTuning()
    assert (t.rows_per_thread, t.min_blocks_per_sm, t.block) == (2, 2, 256)
    assert _kernels.DEFAULT_TUNING == t
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.block = 128  # type: ignore[misc]
    # min_blocks 4 x block 512 would cap registers at 32: ptxas spills 40-960 bytes there
    for bad in (dict(block=100), dict(block=2048), dict(rows_per_thread=0),
                dict(min_blocks_per_sm=4, block=512), dict(block=True)):
        with pytest.raises(ValueError):
            _kernels.FastTuning(**bad)
    v = _kernels.FastVariant(F32, F64, 4, "i32", TUNED)
    assert v.name == "cugrad_gradient_fast_f32_calcf64_v4_i32_r3_m1_b64"
    code = _kernels.fast_module_code(TUNED)
    assert code != _kernels.fast_module_code()  # CuPy's cache key differs per tuning
    for line in ("#define CG_FAST_ROWS 3", "#define CG_FAST_MIN_BLOCKS 1",
                 "#define CG_FAST_BLOCK 64"):
        assert line in code and code.index(line) < code.index("cugrad_gradient_fast")


def test_execute_compiles_and_launches_the_requested_tuning(monkeypatch):
    """execute(plan, f, outs, tuning=...) on a stand-in CuPy that records what it is asked."""
    built: list[tuple[str, list]] = []
    launched: list[tuple] = []

    class RawModule:
        def __init__(self, code: str, options: tuple, name_expressions: list) -> None:
            built.append((code, list(name_expressions)))

        def get_function(self, expression: str) -> Any:
            return lambda grid, block, args: launched.append((grid, block, args[0]))

    cp = SimpleNamespace(
        RawModule=RawModule, asarray=lambda a: np.array(a),
        cuda=SimpleNamespace(Device=lambda i=0: SimpleNamespace(
            id=0, attributes={"MultiProcessorCount": 4})),
    )
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setattr(_kernels, "_cache", {})
    cb._sm_count.cache_clear()
    try:
        f = data((8, 16), np.float32, "tuned")
        plan = make_plan(f, (), None, 1)
        outs = [np.empty_like(f) for _ in plan.axes]
        monkeypatch.setattr(cb, "pointer", lambda a: 4096)  # aligned "device" pointers
        cb.execute(plan, f, outs, tuning=TUNED)
        cb.execute(plan, f, outs)
    finally:
        cb._sm_count.cache_clear()
    assert [code for code, _ in built] == [_kernels.fast_module_code(TUNED),
                                          _kernels.fast_module_code()]
    (grid, block, params), (grid2, block2, _) = launched
    assert block == (64,) and block2 == (256,)
    assert grid[0] <= 4 * 2048 // 64
    assert params["nyt"][0] == -(-8 // 3)  # three rows per tile


@pytest.fixture(scope="session")
def emu_tuned(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from emulation import harness

    if harness.find_compiler() is None:
        pytest.skip("no C++ compiler (g++, c++ or clang++, or $CXX) to build the emulated kernels")
    fast = [v for v in _kernels.all_fast_variants(TUNED) if v.in_dtype in (F32, F64)]
    return harness.build(tmp_path_factory.mktemp("emulated_tuned"), fast, [])


@pytest.mark.emulated
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_fast_path_with_another_tuning(emu_tuned, dtype):
    # R = 3 rows per tile (a partial last tile with H = 10), 64-thread blocks
    f = data((4, 10, 21), dtype, "tuned")
    result, launches, general = gradient(emu_tuned, f, 0.5, coords(10, "t"), 2.0, edge_order=2,
                                         tuning=TUNED)
    assert not general and all(launch.variant.tuning == TUNED for launch in launches)
    assert_same(result, np.gradient(f, 0.5, coords(10, "t"), 2.0, edge_order=2))
    result, _, _ = gradient(emu_tuned, f, axis=(1, 2), accuracy=8, boundary="periodic",
                            tuning=TUNED)
    assert_same(result, numpy_backend_result(f, axis=(1, 2), accuracy=8, boundary="periodic"))


# ------------------------------------------------------------------------------------------------
# Issue 11: accuracy orders 4, 6, 8 and periodic boundaries, against the NumPy backend
# ------------------------------------------------------------------------------------------------


def numpy_backend_result(f: np.ndarray, *varargs: Any, axis: Any = None, **options: Any) -> Any:
    """cugrad's NumPy backend executing the same plan: the reference for cugrad's own modes."""
    from cugrad import _numpy_backend

    plan = make_plan(f, varargs, axis, 1, **options)
    outs = [np.full(f.shape, np.nan, plan.out_dtype) for _ in plan.axes]
    _numpy_backend.execute(plan, np.asarray(f), outs)
    return outs[0] if len(outs) == 1 else tuple(outs)


def spacing_args(kind: str, shape: tuple[int, ...], key: Any, boundary: str) -> tuple[tuple, dict]:
    """(varargs, options) for a spacing form: scalar, numpy scalar, coordinates (float64 or
    float32), or a mix; periodic coordinate axes get a period beyond their span."""
    if kind == "scalar":
        return (0.3,), {}
    if kind == "numpy-scalar":
        return (np.float64(0.3),), {}
    dtype = np.float32 if kind == "coords-f32" else np.float64
    xs = [coords(n, key, kind, n, dtype=dtype) for n in shape]
    if kind == "mixed":
        xs = [0.7 if k % 2 else x for k, x in enumerate(xs)]
    options = {}
    if boundary == "periodic":
        options["period"] = [None if np.ndim(x) == 0 else float(x[-1] - x[0]) + 0.6 for x in xs]
    return tuple(xs), options


ACCURACIES = [2, 4, 6, 8]


@pytest.mark.emulated
@pytest.mark.parametrize("spacing", ["scalar", "numpy-scalar", "coords", "coords-f32", "mixed"])
@pytest.mark.parametrize("boundary", ["edge", "periodic"])
@pytest.mark.parametrize("accuracy", ACCURACIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint8],
                         ids=lambda d: np.dtype(d).name)
def test_regions_on_the_fast_path(emu, dtype, accuracy, boundary, spacing):
    """Every axis of a 3-D array in one launch: edge rows (up to 4 per side), wrapped rows and the
    body, bit for bit the NumPy backend's."""
    shape = (9, 10, 13)
    f = data(shape, dtype, "fast-regions", accuracy, boundary, spacing)
    varargs, options = spacing_args(spacing, shape, "fast-regions", boundary)
    options.update(accuracy=accuracy, boundary=boundary)
    result, launches, general = gradient(emu, f, *varargs, **options)
    assert launches and not general, "expected every axis on the fast path"
    assert_same(result, numpy_backend_result(f, *varargs, **options))


@pytest.mark.emulated
@pytest.mark.parametrize("spacing", ["scalar", "coords", "coords-f32"])
@pytest.mark.parametrize("boundary", ["edge", "periodic"])
@pytest.mark.parametrize("accuracy", ACCURACIES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.complex64,
                                   np.complex128, np.int64], ids=lambda d: np.dtype(d).name)
def test_regions_on_the_general_path(emu, dtype, accuracy, boundary, spacing):
    shape = (9, 10, 11)
    f = np.asfortranarray(data(shape, dtype, "general-regions", accuracy, boundary, spacing))
    varargs, options = spacing_args(spacing, shape, "general-regions", boundary)
    options.update(accuracy=accuracy, boundary=boundary)
    result, launches, general = gradient(emu, f, *varargs, **options)
    assert not launches
    assert_same(result, numpy_backend_result(f, *varargs, **options))


@pytest.mark.emulated
@pytest.mark.parametrize("layout", ["fortran", "reversed", "strided-view", "transposed"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.complex128],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("options", [dict(accuracy=4), dict(accuracy=6, boundary="periodic"),
                                     dict(accuracy=8)], ids=str)
def test_regions_in_every_layout(emu, layout, dtype, options):
    base = data((10, 9, 12), dtype, "layout-regions", layout)
    f = layouts(base)[layout]
    result, launches, general = gradient(emu, f, **options)
    assert not launches
    assert_same(result, numpy_backend_result(f, **options))
    # the same bits as the contiguous copy, which takes the fast path where it can
    contiguous, _, _ = gradient(emu, np.ascontiguousarray(f), **options)
    assert_same(result, contiguous)


@pytest.mark.emulated
def test_regions_agree_with_numpy_gradient_at_accuracy_2(emu):
    """accuracy=2, boundary="edge" spelled out is numpy.gradient, bit for bit."""
    f = data((9, 12), np.float32, "acc2")
    x = coords(12, "acc2")
    for edge_order in (1, 2):
        result, _, _ = gradient(emu, f, 0.5, x, edge_order=edge_order, accuracy=2,
                                boundary="edge")
        assert_same(result, np.gradient(f, 0.5, x, edge_order=edge_order))


@pytest.mark.emulated
@pytest.mark.parametrize("accuracy", ACCURACIES)
def test_periodic_rows_wrap_bit_for_bit(emu, accuracy):
    """Shift equivariance on the emulated kernels: rolling the input rolls the output exactly."""
    f = data((12, 16), np.float64, "roll", accuracy)
    result, _, _ = gradient(emu, f, 0.25, accuracy=accuracy, boundary="periodic")
    rolled, _, _ = gradient(emu, np.roll(f, (5, 3), axis=(0, 1)), 0.25, accuracy=accuracy,
                            boundary="periodic")
    for a, b in zip(result, rolled, strict=True):
        assert_same(np.roll(a, (5, 3), axis=(0, 1)), b)


@pytest.mark.emulated
@pytest.mark.parametrize("accuracy", [4, 8])
@pytest.mark.parametrize("boundary", ["edge", "periodic"])
@pytest.mark.parametrize("lo,hi", [(0, 3), (2, 7), (6, 13), (0, 13), (12, 13)])
def test_compute_rows_windows_of_regions(emu, accuracy, boundary, lo, hi):
    """compute_rows on windows: the rows a slab reads (ap.window), cut from the periodic extension
    of the axis, with f_start the window's first row (negative before row 0)."""
    from cugrad import _numpy_backend

    n = 13
    f = data((n, 5, 4), np.float32, "rows-regions", accuracy, boundary)
    x = coords(n, "rows-regions")
    options = dict(accuracy=accuracy, boundary=boundary)
    if boundary == "periodic":
        options["period"] = float(x[-1] - x[0]) + 0.6
    plan = make_plan(f, (x,), 0, 1, **options)
    ap = plan.axis_plans[0]
    w0, w1 = ap.window(lo, hi)
    window = np.asfortranarray(np.take(f, np.arange(w0, w1) % n, axis=0))  # any layout
    out = np.full((hi - lo, 5, 4), np.nan, np.float32)
    run_rows(emu, plan, window, out, ap, lo, hi, w0)
    expected = np.full((hi - lo, 5, 4), np.nan, np.float32)
    _numpy_backend.compute_rows(np.ascontiguousarray(window), expected, ap, plan.data_dtype, lo,
                                hi, w0)
    assert_same(out, expected)
    assert_same(out, numpy_backend_result(f, x, axis=0, **options)[lo:hi])
    # the whole axis as the window: wrapped rows are taken modulo the length
    whole = np.full((hi - lo, 5, 4), np.nan, np.float32)
    run_rows(emu, plan, f, whole, ap, lo, hi, 0)
    assert_same(whole, out)


def test_fast_lowering_of_regions():
    """Bodies in canonical form, one record per other row, wraps resolved on the host."""
    f = np.zeros((20, 30), np.float32)
    plan = make_plan(f, (), None, 1, accuracy=8)
    fa = cb.lower_fast_axis(plan.axis_plans[1], plan.data_dtype)
    assert (fa.b_lo, fa.b_hi, fa.form, fa.m) == (4, 26, _kernels.FORM_DSYM, 4)
    assert len(fa.records) == 8 + 1 and fa.table is None
    assert list(fa.records[0]["off"][:8]) == [1, 0, 2, 0, 3, 0, 4, 0]  # row 0 reads rows 0..8
    assert fa.records[-1]["nterms"] == 4  # the body's record comes last
    plan = make_plan(f, (), None, 1, accuracy=6, boundary="periodic")
    fa = cb.lower_fast_axis(plan.axis_plans[0], plan.data_dtype)
    assert (fa.b_lo, fa.b_hi) == (3, 17) and len(fa.records) == 6 + 1
    # row 0 of a periodic axis reads rows 1, 19, 2, 18, 3, 17
    assert list(fa.records[0]["off"][:6]) == [1, 19, 2, 18, 3, 17]
    x = coords(30, "lower")
    plan = make_plan(f, (x,), 1, 1, accuracy=4)
    fa = cb.lower_fast_axis(plan.axis_plans[0], plan.data_dtype)
    assert fa.form == _kernels.FORM_DCOORD and fa.table.shape == (4, 26)
    # a region the kernel has no canonical form for goes to the general path
    ap = plan.axis_plans[0]
    odd = dataclasses.replace(ap.regions[0], offsets=(2, 0, -1, 0, 1, 0, -2, 0))
    assert cb.lower_fast_axis(dataclasses.replace(ap, regions=(odd, *ap.regions[1:])),
                              plan.data_dtype) is None


@pytest.mark.emulated
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8], ids=lambda d: np.dtype(d).name)
def test_regions_with_two_plane_axes_and_mixed_boundaries(emu, dtype):
    """Two plane axes, y and x in one launch; periodic and one-sided axes side by side; a stacked
    output; and a six-dimensional array that needs two launches."""
    shape = (9, 9, 10, 12)
    f = data(shape, dtype, "4d-regions")
    x = coords(10, "4d-regions")
    options = dict(accuracy=6, boundary=("periodic", "edge", "periodic", "edge"),
                   period=[None, None, float(x[-1] - x[0]) + 0.5, None])
    result, launches, general = gradient(emu, f, 0.5, np.float32(0.25), x, 2.0, stack=True,
                                         **options)
    # float32 data computes axis 2 (float64 coordinates) in float64: a launch per compute dtype
    assert len(launches) == (2 if dtype == np.float32 else 1) and not general
    assert launches[0].geometry.plane_axes == [0, 1]
    assert_same(result, numpy_backend_result(f, 0.5, np.float32(0.25), x, 2.0, **options))
    f6 = data((9, 9, 9, 2, 9, 10), dtype, "6d-regions")
    result, launches, general = gradient(emu, f6, axis=(0, 1, 2, 4, 5), accuracy=8)
    assert len(launches) == 2 and not general  # three plane axes: more than one launch takes
    assert_same(result, numpy_backend_result(f6, axis=(0, 1, 2, 4, 5), accuracy=8))


def second_derivative_plan(f: np.ndarray, accuracy: int, boundary: str,
                           x: np.ndarray | None = None) -> _plan.GradientPlan:
    """A plan of second derivatives along every axis, as the Laplacian's terms build them."""
    from cugrad import _stencils

    plan = make_plan(f, (), None, 1)
    axis_plans = []
    for ax, n in enumerate(f.shape):
        period = None
        if x is not None and boundary == "periodic":
            period = float(x[-1] - x[0]) + 0.5
        option = _stencils.AxisOption(accuracy, boundary, period, False)
        spacing = np.diff(x) if x is not None else 0.5
        axis_plans.append(_stencils.extended_axis_plan(ax, n, spacing, x, option,
                                                       plan.data_dtype, plan.out_dtype, deriv=2))
    return dataclasses.replace(plan, axis_plans=tuple(axis_plans))


@pytest.mark.emulated
@pytest.mark.parametrize("boundary", ["edge", "periodic"])
@pytest.mark.parametrize("accuracy", ACCURACIES)
@pytest.mark.parametrize("coordinates", [False, True])
@pytest.mark.parametrize("layout", ["C", "F"])
def test_second_derivative_regions(emu, accuracy, boundary, coordinates, layout):
    """The Laplacian's terms: one-sided rows of p+2 points (9 pairs reaching 9 rows at accuracy 8)
    on both paths, bit for bit the NumPy backend's."""
    from cugrad import _numpy_backend

    f = data((11, 12, 13), np.float64, "d2", accuracy, boundary)
    f = np.asfortranarray(f) if layout == "F" else f
    x = coords(11, "d2") if coordinates else None
    if coordinates:  # a cube, with the same coordinates along every axis
        f = f[:, :11, :11].copy(order=layout)
    plan = second_derivative_plan(f, accuracy, boundary, x)
    outs = [np.full(f.shape, np.nan) for _ in plan.axes]
    launches, general = emulate(emu, plan, f, outs)
    assert bool(launches) == (layout == "C")
    expected = [np.full(f.shape, np.nan) for _ in plan.axes]
    _numpy_backend.execute(plan, f, expected)
    assert_same(tuple(outs), tuple(expected))


@pytest.mark.emulated
def test_warm_up_operands_are_a_valid_launch(emu):
    """cugrad compile's warm-up launches (general_dummy_tables) read only inside their operands."""
    for variant in _kernels.representative_general_variants():
        if variant not in GENERAL_VARIANTS:
            continue
        for ndim in (1, 2, 3):
            f = np.ones((3,) * ndim, variant.in_dtype)
            out = np.full((3,) * ndim, np.nan, variant.out_dtype)
            args = (cb._bits(f), *cb.general_dummy_tables(variant, np), 3, 1, 3, 0, 3, 0)
            emu.run_general(variant, args, cb._bits(out))
            assert (out == 0).all(), variant.name  # weight 0 times the data


class _Dev:
    """A stand-in for a CuPy array: not a numpy array, so cugrad treats its values as living on
    the device and converts them with array methods and ``xp`` (never on the host), backed by host
    memory that the emulated kernels read through its pointer."""

    def __init__(self, a: Any) -> None:
        self.a = np.asarray(a)

    ndim = property(lambda self: self.a.ndim)
    shape = property(lambda self: self.a.shape)
    dtype = property(lambda self: self.a.dtype)
    nbytes = property(lambda self: self.a.nbytes)
    flags = property(lambda self: self.a.flags)
    data = property(lambda self: SimpleNamespace(ptr=self.a.ctypes.data))

    def astype(self, dtype: Any, copy: bool = True) -> _Dev:
        return _Dev(self.a.astype(dtype))

    def reshape(self, *shape: Any) -> _Dev:
        return _Dev(self.a.reshape(*shape))

    def view(self, dtype: Any) -> _Dev:
        return _Dev(self.a.view(dtype))

    def __getitem__(self, key: Any) -> _Dev:
        return _Dev(self.a[key])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.a


XP_DEV = SimpleNamespace(
    asarray=lambda a, dtype=None: _Dev(np.array(a, dtype=dtype)),
    zeros=lambda *a, **k: _Dev(np.zeros(*a, **k)),
    concatenate=lambda parts: _Dev(np.concatenate([np.asarray(p) for p in parts])),
)


def on_device(plan: _plan.GradientPlan) -> _plan.GradientPlan:
    """The plan with every array weight and flag of its device-coordinate axes made a _Dev."""

    def regions(rs: tuple) -> tuple:
        return tuple(dataclasses.replace(r, weights=tuple(
            _Dev(w) if isinstance(w, np.ndarray) else w for w in r.weights)) for r in rs)

    axis_plans = []
    for ap in plan.axis_plans:
        u = dataclasses.replace(ap.uniform_variant, regions=regions(ap.uniform_variant.regions))
        axis_plans.append(dataclasses.replace(ap, regions=regions(ap.regions), uniform_variant=u,
                                              uniform_flag=_Dev(ap.uniform_flag)))
    return dataclasses.replace(plan, axis_plans=tuple(axis_plans))


@pytest.mark.emulated
@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.complex64],
                         ids=lambda d: np.dtype(d).name)
def test_device_weights_are_assembled_on_the_device(emu, edge_order, dtype):
    """Device coordinates whose weights are device arrays: the fast path writes them into its
    records and tables with device operations, the general path into its weight tables; both
    read numpy's flag on the device. Bits as numpy.gradient's."""
    f = data((11, 12), dtype, "device-weights")
    even = np.arange(11) * 0.375
    uneven = coords(12, "device-weights")
    plan = on_device(device_style_plan(f, [even, uneven], edge_order))
    assert isinstance(plan.axis_plans[1].regions[0].weights[0], _Dev)
    outs = [np.full(f.shape, np.nan, plan.out_dtype) for _ in plan.axes]
    launches, general = cb.select_paths(plan, cb.ArrayInfo.of(f),
                                        [cb.ArrayInfo.of(o) for o in outs])
    for launch in launches:
        assert all(fa.main.device_weights is not None for fa in launch.axes)
        params, keep = cb.fast_launch_params(plan, launch, f, outs, XP_DEV)
        grid, _ = cb.launch_config(launch.work.nitems, None)
        emu.run_fast(launch.variant, params, grid)
        del keep
    for i in general:
        ap = plan.axis_plans[i]
        variant = cb.general_variant(f.dtype, plan.data_dtype, ap, outs[i].dtype)
        args = cb.general_args(f, outs[i], ap, 0, ap.length, 0, XP_DEV)
        assert isinstance(args[1], _Dev) and isinstance(args[2], _Dev)
        emu.run_general(variant, tuple(np.asarray(a) if isinstance(a, _Dev) else a
                                       for a in args), cb._bits(outs[i]))
    assert bool(launches) == (dtype in (np.float32, np.float64))
    assert_same(tuple(outs), tuple(np.gradient(f, even, uneven, edge_order=edge_order)))
