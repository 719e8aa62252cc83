"""cugrad.gradient against numpy.gradient, one case per test, bit for bit.

Every expected value comes from ``np.gradient`` called on the same arguments.
Where numpy raises, cugrad must raise the same (public) exception type.
"""

from __future__ import annotations

import warnings
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from conftest import assert_same, assert_same_layout, stable_rng

import cugrad

pytestmark = pytest.mark.filterwarnings(
    "ignore::RuntimeWarning",
    "ignore::numpy.exceptions.ComplexWarning",
    "ignore:Warning. converting a masked element to nan:UserWarning",  # masked coordinates
)

DEVICE_DTYPES = [
    np.float16,
    np.float32,
    np.float64,
    np.complex64,
    np.complex128,
    np.int8,
    np.uint8,
    np.int64,
    np.uint64,
]
# longdouble exists only on the host; on the cupy paths these cases skip themselves.
ALL_DTYPES = [*DEVICE_DTYPES, np.longdouble, np.int16, np.uint32, np.clongdouble]


def make_data(shape: tuple[int, ...], dtype: Any, *key: Any) -> np.ndarray:
    """Deterministic data for ``dtype``; integers use the full range so differences wrap."""
    rng = stable_rng(shape, np.dtype(dtype).str, *key)
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    if dtype.kind == "c":
        parts = rng.standard_normal((2, *shape)) * 10
        return (parts[0] + 1j * parts[1]).astype(dtype)
    return (rng.standard_normal(shape) * 10).astype(dtype)


# ---------------------------------------------------------------------------
# dtypes x shapes x edge orders, no spacing
# ---------------------------------------------------------------------------

SHAPES = [(2,), (3,), (7,), (5, 6), (3, 4, 5), (2, 3, 4, 5), (3, 3, 3, 3), (2, 3, 2, 3, 4)]


@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_dtype_shape_edge_order(xp_backend, dtype, shape, edge_order):
    f = make_data(shape, dtype)
    xp_backend.check(f, edge_order=edge_order)


@pytest.mark.parametrize(
    "values, dtype",
    [
        ([0, 255, 3], np.uint8),
        ([255, 0, 255, 0], np.uint8),
        ([-128, 127, -128, 5], np.int8),
        ([0, 2**64 - 1, 7, 2**63], np.uint64),
        ([-(2**63), 2**63 - 1, 0, -(2**63)], np.int64),
        # beyond 2**53 the int64 -> float64 conversion rounds; numpy converts first
        ([2**53 + 1, 2**53 + 3, 2**60 + 1, 5], np.int64),
    ],
    ids=str,
)
@pytest.mark.parametrize("edge_order", [1, 2])
def test_integer_wraparound(xp_backend, values, dtype, edge_order):
    xp_backend.check(np.array(values, dtype=dtype), edge_order=edge_order)
    xp_backend.check(np.array(values, dtype=dtype), 0.5, edge_order=edge_order)


# ---------------------------------------------------------------------------
# Spacing: one scalar for every axis
# ---------------------------------------------------------------------------

SCALAR_SPACINGS = {
    "py_int": 2,
    "py_float": 0.3,
    "py_float_negative": -1.5,
    "py_float_zero": 0.0,
    "py_bool": True,
    "np_float16": np.float16(0.7),
    "np_float32": np.float32(0.3),
    "np_float64": np.float64(0.3),
    "np_int64": np.int64(3),
    "np_int8_negative": np.int8(-2),
    "np_uint8": np.uint8(3),
    "np_bool": np.bool_(True),
    "zero_d_float32": np.array(0.3, dtype=np.float32),
    "zero_d_float64": np.array(0.3),
    "zero_d_int64": np.array(3),
    "tiny": 1e-310,
    "huge": 1e300,
    "py_int_huge": 2**70,
    "py_int_beyond_float32": 2**200,
    "fraction": Fraction(1, 3),
}
SCALAR_DATA_DTYPES = [np.float16, np.float32, np.float64, np.complex64, np.int64, np.uint8]


@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("shape", [(6,), (4, 5)], ids=str)
@pytest.mark.parametrize("dtype", SCALAR_DATA_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("spacing", SCALAR_SPACINGS.values(), ids=SCALAR_SPACINGS.keys())
def test_scalar_spacing(xp_backend, spacing, dtype, shape, edge_order):
    f = make_data(shape, dtype)
    xp_backend.check(f, spacing, edge_order=edge_order)


@pytest.mark.parametrize(
    "spacing",
    [
        np.longdouble(0.3),
        np.array(0.3, dtype=np.longdouble),
        0.5 + 1j,
        np.complex64(1 - 2j),
        np.array(0.5, dtype=object),
        np.timedelta64(2, "s"),
        np.datetime64(2, "s"),
        (x for x in [1.0]),  # asanyarray makes a 0-d object array: "one scalar"
        np.array([0.5]),  # a length-1 "coordinate array" given for every axis at once
    ],
    ids=[
        "np_longdouble",
        "zero_d_longdouble",
        "py_complex",
        "np_complex64",
        "zero_d_object",
        "timedelta64",
        "datetime64",
        "generator",
        "len1_array",
    ],
)
@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.complex128, np.longdouble])
def test_unusual_scalar_spacing(xp_backend, spacing, dtype):
    # Complex spacing on real data: numpy casts the complex quotient into the real
    # result (dropping the imaginary part, with a ComplexWarning); cugrad must agree.
    xp_backend.check(make_data((5, 4), dtype), spacing)


def test_float16_weak_python_scalar():
    # NEP 50: a Python float is "weak", so float16 data stays in float16 arithmetic
    # (the quotient is rounded to float16 at every step, not computed in float64).
    f = np.array([0.1, 0.7, 3.3, 9.1, 20.5], dtype=np.float16)
    expected = np.gradient(f, 0.3)
    assert_same(cugrad.gradient(f, 0.3), expected)
    strong = ((f[2:].astype(np.float64) - f[:-2]) / 0.6).astype(np.float16)
    # Guard that this case really distinguishes the two arithmetics.
    assert not np.array_equal(expected[1:-1], strong)


def test_float32_with_np_float64_spacing():
    # np.float64 is not weak: float32 data is computed in float64 and rounded once.
    rng = stable_rng("f32-f64")
    f = rng.standard_normal(50).astype(np.float32)
    h = np.float64(0.1)
    expected = np.gradient(f, h)
    assert expected.dtype == np.float32
    assert_same(cugrad.gradient(f, h), expected)
    weak = np.gradient(f, np.float32(h))
    assert not np.array_equal(expected, weak)  # the case tells the two apart


def test_float16_uint8_spacing_mixed_precision():
    # 2.*np.uint8 is float64 (interior in float64) while f16/np.uint8 stays float16
    # at the edges: numpy mixes precisions within one call.
    f = np.array([0.1, 0.7, 3.3, 9.1, 20.5, 1.3], dtype=np.float16)
    assert_same(cugrad.gradient(f, np.uint8(3)), np.gradient(f, np.uint8(3)))
    assert_same(
        cugrad.gradient(f, np.uint8(3), edge_order=2),
        np.gradient(f, np.uint8(3), edge_order=2),
    )


# ---------------------------------------------------------------------------
# Spacing: coordinates
# ---------------------------------------------------------------------------


def coordinates(kind: str, n: int) -> Any:
    """Coordinate values of length ``n`` in one of the forms numpy accepts."""
    rng = stable_rng("coords", kind, n)
    sorted_random = np.cumsum(rng.uniform(0.1, 2.0, n)) - 3.0
    return {
        "arange_f64": np.arange(n, dtype=np.float64) * 0.5 + 1.0,
        "arange_f32": np.arange(n, dtype=np.float32) * np.float32(0.25),
        "arange_int64": np.arange(n, dtype=np.int64) * 3 - 7,
        "arange_descending": np.arange(n, dtype=np.float64)[::-1] * 0.5,
        "linspace": np.linspace(0.0, 1.0, n),
        "sorted_f64": sorted_random,
        "sorted_f32": sorted_random.astype(np.float32),
        "sorted_f16": sorted_random.astype(np.float16),
        "int64_nonuniform": np.cumsum(rng.integers(1, 5, n)).astype(np.int64),
        "uint8_nonuniform": np.cumsum(rng.integers(1, 40, n)).astype(np.uint8) % 250,
        "uint8_descending": np.arange(n, dtype=np.uint8)[::-1] * np.uint8(3),
        "unsorted": rng.uniform(-5, 5, n),
        "descending_nonuniform": sorted_random[::-1].copy(),
        "list_float": sorted_random.tolist(),
        "list_int": [int(v) for v in np.cumsum(rng.integers(1, 5, n))],
        "tuple_float": tuple(sorted_random.tolist()),
        "repeated_value": np.concatenate([[0.0, 1.0, 1.0], np.arange(2.0, n - 1.0)])[:n],
        "all_equal": np.full(n, 2.5),
        "bool": (np.arange(n) % 2).astype(bool),
        "object_float": np.array(sorted_random.tolist(), dtype=object),
        "with_nan": np.where(np.arange(n) == 1, np.nan, np.arange(n, dtype=float)),
        "with_inf": np.where(np.arange(n) == n - 1, np.inf, np.arange(n, dtype=float)),
        "noncontiguous": np.linspace(0.0, 3.0, 2 * n)[::2] ** 2,
        "range": range(3, 3 + 2 * n, 2),
        "masked": np.ma.array(sorted_random, mask=np.arange(n) == 1),
        "byteswapped": sorted_random.astype(">f8"),
        "zero_d_in_list": [np.float64(v) for v in sorted_random],
    }[kind]


COORD_KINDS = [
    "arange_f64",
    "arange_f32",
    "arange_int64",
    "arange_descending",
    "linspace",
    "sorted_f64",
    "sorted_f32",
    "sorted_f16",
    "int64_nonuniform",
    "uint8_nonuniform",
    "uint8_descending",
    "unsorted",
    "descending_nonuniform",
    "list_float",
    "list_int",
    "tuple_float",
    "repeated_value",
    "all_equal",
    "bool",
    "object_float",
    "with_nan",
    "with_inf",
    "noncontiguous",
    "range",
    "masked",
    "byteswapped",
    "zero_d_in_list",
]


@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("n", [2, 3, 4, 9])
@pytest.mark.parametrize(
    "dtype",
    [np.float16, np.float32, np.float64, np.complex64, np.int64],
    ids=lambda d: np.dtype(d).name,
)
@pytest.mark.parametrize("kind", COORD_KINDS)
def test_coordinates_1d(xp_backend, kind, dtype, n, edge_order):
    f = make_data((n,), dtype)
    xp_backend.check(f, coordinates(kind, n), edge_order=edge_order)


PER_AXIS_MIXES = [
    ("py_float", "sorted_f64"),
    ("sorted_f32", "np_float32"),
    ("arange_int64", "list_float"),
    ("tuple_float", "py_int"),
    ("uint8_nonuniform", "sorted_f16"),
    ("zero_d_float64", "unsorted"),
    ("repeated_value", "arange_descending"),
    ("linspace", "linspace"),
    ("np_float64", "np_float16"),
]


def _spacing(kind: str, n: int) -> Any:
    return SCALAR_SPACINGS[kind] if kind in SCALAR_SPACINGS else coordinates(kind, n)


@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize(
    "dtype",
    [np.float16, np.float32, np.float64, np.complex128, np.uint8],
    ids=lambda d: np.dtype(d).name,
)
@pytest.mark.parametrize("mix", PER_AXIS_MIXES, ids="+".join)
def test_per_axis_spacing_2d(xp_backend, mix, dtype, edge_order):
    shape = (5, 7)
    f = make_data(shape, dtype)
    spacings = [_spacing(kind, n) for kind, n in zip(mix, shape, strict=False)]
    xp_backend.check(f, *spacings, edge_order=edge_order)


@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize(
    "axis, kinds",
    [
        (None, ("sorted_f64", "py_float", "arange_f32")),
        ((2, 0), ("list_int", "sorted_f32")),
        ((0, 2), ("list_int", "sorted_f32")),
        (1, ("descending_nonuniform",)),
        ((-1,), ("np_int64",)),
        ([1, 2], ("arange_int64", "unsorted")),
    ],
    ids=str,
)
def test_per_axis_spacing_3d(xp_backend, axis, kinds, edge_order):
    shape = (3, 4, 5)
    f = make_data(shape, np.float64)
    axes = range(3) if axis is None else np.atleast_1d(axis) % 3
    spacings = [_spacing(kind, shape[ax]) for kind, ax in zip(kinds, axes, strict=False)]
    xp_backend.check(f, *spacings, axis=axis, edge_order=edge_order)


# ---------------------------------------------------------------------------
# axis forms
# ---------------------------------------------------------------------------

AXES = [
    None,
    0,
    1,
    -1,
    -3,
    np.int64(2),
    np.intp(-2),
    (0, 2),
    [0, 2],
    (2, 0),
    (-1, 0),
    (1,),
    [2],
    (),
    (0, 1, 2),
    (2, 1, 0),
    True,
    np.array(1),
]


@pytest.mark.parametrize("spacing", ["none", "scalar", "coords"])
@pytest.mark.parametrize("axis", AXES, ids=repr)
def test_axis_forms(xp_backend, axis, spacing):
    shape = (3, 4, 5)
    f = make_data(shape, np.float32)
    axes = range(3) if axis is None else [int(a) % 3 for a in np.atleast_1d(axis)]
    if spacing == "none":
        varargs: tuple[Any, ...] = ()
    elif spacing == "scalar":
        varargs = (0.7,)
    else:
        varargs = tuple(coordinates("sorted_f64", shape[ax]) for ax in axes)
    xp_backend.check(f, *varargs, axis=axis)


def test_single_axis_tuple_returns_array():
    f = make_data((3, 4), np.float64)
    result = cugrad.gradient(f, axis=(1,))
    assert isinstance(result, np.ndarray)
    assert_same(result, np.gradient(f, axis=(1,)))


def test_empty_axis_tuple_returns_empty_tuple():
    f = make_data((3, 4), np.float64)
    assert cugrad.gradient(f, axis=()) == ()
    assert cugrad.gradient(f, 2.0, axis=()) == ()


# ---------------------------------------------------------------------------
# edge_order quirks: numpy only rejects edge_order > 2
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", ["none", "scalar", "coords"])
@pytest.mark.parametrize("n", [1, 2, 3, 6])
@pytest.mark.parametrize(
    "edge_order",
    [
        0,
        -1,
        1.0,
        1.5,
        2.0,
        True,
        False,
        np.int64(2),
        np.float64(1.0),
        np.int8(1),
        2.5,
        3,
        np.array(1),
        np.array([2]),
        np.array([1, 2]),
        1 + 0j,
    ],  # fmt: skip
    ids=repr,
)
def test_edge_order_values(xp_backend, edge_order, n, spacing):
    f = make_data((n,), np.float64)
    varargs = {"none": (), "scalar": (0.5,), "coords": (coordinates("sorted_f64", n),)}[spacing]
    xp_backend.check(f, *varargs, edge_order=edge_order)


@pytest.mark.parametrize("edge_order", [0, 1.5, True])
def test_edge_order_quirks_2d(xp_backend, edge_order):
    f = make_data((4, 5), np.float32)
    xp_backend.check(f, 0.5, coordinates("sorted_f64", 5), edge_order=edge_order)


# ---------------------------------------------------------------------------
# memory layouts, and the layout of the result
# ---------------------------------------------------------------------------


def layout(kind: str, dtype: Any) -> np.ndarray:
    base = make_data((6, 10, 4), dtype, "layout")
    return {
        "C": base,
        "F": np.asfortranarray(base),
        "reversed": base[::-1],
        "reversed_all": base[::-1, ::-1, ::-1],
        "strided": base[:, ::2],
        "strided_odd": base[1::2, 1::3, ::-1],
        "transposed": base.T,
        "swapped": base.swapaxes(0, 2)[:, 1:],
        "broadcast": np.broadcast_to(base[:1], base.shape),
        "F_reversed": np.asfortranarray(base)[:, ::-1],
        "unaligned": _unaligned_copy(base),
        "byteswapped": base.astype(base.dtype.newbyteorder()),
    }[kind]


def _unaligned_copy(a: np.ndarray) -> np.ndarray:
    raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
    out = raw[1:].view(a.dtype).reshape(a.shape) if a.itemsize == 1 else None
    if out is None:
        out = np.ndarray(a.shape, a.dtype, buffer=raw, offset=1)
    out[...] = a
    return out


LAYOUTS = [
    "C",
    "F",
    "reversed",
    "reversed_all",
    "strided",
    "strided_odd",
    "transposed",
    "swapped",
    "broadcast",
    "F_reversed",
    "unaligned",
    "byteswapped",
]


@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize(
    "dtype",
    [np.float64, np.float32, np.float16, np.complex64, np.int64],
    ids=lambda d: np.dtype(d).name,
)
@pytest.mark.parametrize("kind", LAYOUTS)
def test_layouts(xp_backend, kind, dtype, edge_order):
    f = layout(kind, dtype)
    xp_backend.check(f, edge_order=edge_order)
    xp_backend.check(f, 0.5, coordinates("sorted_f64", f.shape[1]), 2, edge_order=edge_order)


@pytest.mark.parametrize("backend", [None, "numpy"])
@pytest.mark.parametrize(
    "dtype", [np.float64, np.float32, np.int64], ids=lambda d: np.dtype(d).name
)
@pytest.mark.parametrize("kind", LAYOUTS)
def test_result_layout_matches_empty_like(kind, dtype, backend):
    f = layout(kind, dtype)
    for kwargs in ({}, {"axis": 1}):
        expected = np.gradient(f, **kwargs)
        result = cugrad.gradient(f, backend=backend, **kwargs)
        assert_same(result, expected)
        assert_same_layout(result, expected)


# ---------------------------------------------------------------------------
# special values
# ---------------------------------------------------------------------------


def special_values(dtype: Any) -> np.ndarray:
    dtype = np.dtype(dtype)
    real = np.dtype(dtype.char.lower()) if dtype.kind == "c" else dtype
    finfo = np.finfo(real)
    values = [
        1.0, np.inf, 2.0, -np.inf, 3.0, np.nan, 4.0, -0.0, 0.0, -0.0, -0.0, 0.0,
        finfo.max, -finfo.max, finfo.max, finfo.smallest_subnormal, 0.0,
        -finfo.smallest_subnormal, finfo.smallest_normal, 5.0, np.inf, np.inf, 6.0,
        finfo.max / 2, finfo.max, finfo.smallest_subnormal * 3, 7.0,
    ]  # fmt: skip
    a = np.array(values, dtype=real)
    if dtype.kind == "c":
        return (a + 1j * np.roll(a, 5)).astype(dtype)
    return a


SPECIAL_SPACINGS = {
    "none": (),
    "py_float": (0.5,),
    "negative": (-2.0,),
    "tiny": (1e-30,),
    "np_float32": (np.float32(3.0),),
    "coords": (np.cumsum(np.linspace(0.5, 1.5, 27)),),
    "coords_f32": (np.cumsum(np.linspace(0.5, 1.5, 27)).astype(np.float32),),
}


@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("spacing", SPECIAL_SPACINGS.values(), ids=SPECIAL_SPACINGS.keys())
@pytest.mark.parametrize(
    "dtype",
    [np.float16, np.float32, np.float64, np.complex64, np.complex128],
    ids=lambda d: np.dtype(d).name,
)
def test_special_values(xp_backend, dtype, spacing, edge_order):
    xp_backend.check(special_values(dtype), *spacing, edge_order=edge_order)


@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_signed_zeros(xp_backend, dtype, edge_order):
    # Differences of equal values: 0.0 - 0.0 = +0.0, -0.0 - 0.0 = -0.0, and a negative
    # spacing flips the sign of zero; bit-identical means these signs match too.
    f = np.array([[0.0, -0.0, 0.0, -0.0], [-0.0, -0.0, 0.0, 0.0], [0.0, 0.0, -0.0, -0.0]], dtype)
    for varargs in [(), (-1.0,), (np.float32(-0.5),), ([0.0, -1.0, -2.0], [3.0, 2.0, 1.5, 0.0])]:
        xp_backend.check(f, *varargs, edge_order=edge_order)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
def test_subnormals_float32(xp_backend, dtype):
    # Flush-to-zero anywhere (a GPU default for float32) would turn these into zeros.
    tiny = np.finfo(dtype).smallest_subnormal
    f = (np.arange(12, dtype=np.float64) ** 2 % 7).astype(dtype) * tiny
    for varargs in [(), (0.5,), (np.float32(0.25),), (np.arange(12, dtype=np.float32) * 0.5,)]:
        xp_backend.check(f, *varargs)
        xp_backend.check(f, *varargs, edge_order=2)


def test_overflow_to_inf(xp_backend):
    big = np.finfo(np.float64).max
    f = np.array([-big, big, -big, big, 0.0])
    xp_backend.check(f)
    xp_backend.check(f, 0.25, edge_order=2)
    xp_backend.check(f.astype(np.float32) * np.float32(1e38), edge_order=2)


# ---------------------------------------------------------------------------
# degenerate inputs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "f",
    [np.array(3.0), np.float64(3.0), np.float32(2.0), np.array(7, dtype=np.int8), 5, 2.5, 1 + 2j],
    ids=repr,
)
@pytest.mark.parametrize("varargs", [(), (2.0,), (np.float32(0.5),)], ids=str)
def test_zero_dim_returns_empty_tuple(f, varargs):
    expected = np.gradient(f, *varargs)
    assert expected == ()
    result = cugrad.gradient(f, *varargs)
    assert type(result) is tuple and result == ()
    result = cugrad.gradient(f, *varargs, backend="numpy")
    assert type(result) is tuple and result == ()


def test_zero_dim_device(xp_backend):
    xp_backend.check(np.array(3.0))
    xp_backend.check(np.array(3.0), 2.0)


@pytest.mark.parametrize(
    "shape, axis",
    [
        ((0, 5), 1),
        ((0, 5), -1),
        ((3, 0, 4), (0, 2)),
        ((3, 0, 4), (2, 0)),
        ((4, 0), 0),
        ((0, 3), None),
        ((4, 0), None),
        ((0,), None),
    ],
    ids=str,
)
@pytest.mark.parametrize("edge_order", [1, 2])
def test_size_zero(xp_backend, shape, axis, edge_order):
    f = np.zeros(shape, dtype=np.float32)
    xp_backend.check(f, axis=axis, edge_order=edge_order)
    xp_backend.check(f, 0.5, axis=axis, edge_order=edge_order)


@pytest.mark.parametrize(
    "f",
    [
        [1, 2, 4, 7],
        [1.5, 2, 3.25],
        [[1, 2, 3], [4, 5, 7]],
        [[1.0, 2.5], [4.0, 5.0], [9.0, -1.0]],
        [1 + 1j, 2, 3 - 1j],
        [[[1, 2], [3, 4]], [[5, 6], [7, 9]]],
        (1, 2, 4),
        [np.float32(1), np.float32(2), np.float32(4)],
        [2**62, -(2**62), 2**62],
        [2**64 - 1, 0, 2**64 - 1],
    ],
    ids=repr,
)
@pytest.mark.parametrize("backend", [None, "numpy"])
def test_sequence_inputs(f, backend):
    for varargs in [(), (0.5,)]:
        expected = np.gradient(f, *varargs)
        assert_same(cugrad.gradient(f, *varargs, backend=backend), expected)


# ---------------------------------------------------------------------------
# big arrays: exercise any chunked or threaded path (slab edges at odd places)
# ---------------------------------------------------------------------------

BIG = [
    ((131, 67, 33), np.float64, "C"),
    ((131, 67, 33), np.float32, "C"),
    ((131, 67, 33), np.float32, "F"),
    ((131, 67, 33), np.float64, "reversed"),
    ((64, 65, 66), np.float32, "C"),
    ((64, 65, 66), np.float64, "C"),
    ((100003,), np.float64, "C"),
    ((513, 257), np.float16, "C"),
    ((513, 257), np.int16, "C"),
    ((513, 257), np.complex64, "C"),
    ((3, 40001), np.float32, "C"),
    ((40001, 3), np.float64, "C"),
    ((5, 13, 1031), np.float64, "strided"),
]


def big_array(shape: tuple[int, ...], dtype: Any, kind: str) -> np.ndarray:
    if kind == "strided":
        return make_data((*shape[:-1], 2 * shape[-1]), dtype, "big")[..., ::2]
    f = make_data(shape, dtype, "big")
    if kind == "F":
        return np.asfortranarray(f)
    if kind == "reversed":
        return f[::-1]
    return f


@pytest.mark.parametrize("spacing", ["none", "scalar", "coords"])
@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("shape, dtype, kind", BIG, ids=lambda v: getattr(v, "__name__", str(v)))
def test_big_arrays(xp_backend, shape, dtype, kind, edge_order, spacing):
    f = big_array(shape, dtype, kind)
    if spacing == "none":
        varargs: tuple[Any, ...] = ()
    elif spacing == "scalar":
        varargs = (0.37,)
    else:
        varargs = tuple(coordinates("sorted_f64", n) for n in f.shape)
    xp_backend.check(f, *varargs, edge_order=edge_order)


@pytest.mark.parametrize("axis", [0, 1, -1, (2, 0)], ids=str)
def test_big_single_axes(xp_backend, axis):
    f = big_array((131, 67, 33), np.float32, "C")
    xp_backend.check(f, axis=axis)
    n = f.shape[axis if isinstance(axis, int) else 2]
    xp_backend.check(f, coordinates("sorted_f32", n), axis=axis if isinstance(axis, int) else 2)


def test_big_result_layout():
    for kind in ["C", "F", "reversed"]:
        f = big_array((131, 67, 33), np.float64, kind)
        expected = np.gradient(f)
        result = cugrad.gradient(f, backend="numpy")
        assert_same(result, expected)
        assert_same_layout(result, expected)


# ---------------------------------------------------------------------------
# cases numpy.gradient handles through its generic code: cugrad must match exactly
# ---------------------------------------------------------------------------


class TaggedArray(np.ndarray):
    """A trivial ndarray subclass: numpy.gradient keeps the subclass (asanyarray)."""


def delegation_cases() -> dict[str, tuple[Any, tuple[Any, ...], dict[str, Any]]]:
    masked = np.ma.array([1.0, 2.0, 4.0, 8.0, 9.0], mask=[0, 1, 0, 0, 0])
    masked_2d = np.ma.array(
        np.arange(12.0).reshape(3, 4) ** 2, mask=np.arange(12).reshape(3, 4) % 5 == 0
    )
    return {
        "datetime64_D": (np.array(["2024-01-01", "2024-01-03", "2024-01-08"], "M8[D]"), (), {}),
        "datetime64_s_spacing": (np.array([0, 10, 40, 90], "M8[s]"), (2,), {}),
        "datetime64_eo2": (np.array([0, 10, 40, 90], "M8[ms]"), (), {"edge_order": 2}),
        "datetime64_nat": (np.array([0, 10, "NaT", 90], "M8[s]"), (), {}),
        "timedelta64": (np.array([1, 2, 4, 7], "m8[s]"), (), {}),
        "timedelta64_2d": (np.arange(12).reshape(3, 4).astype("m8[h]"), (), {}),
        "timedelta64_td_spacing": (np.array([1, 2, 4, 7], "m8[s]"), (np.timedelta64(2, "s"),), {}),
        "object_ints": (np.array([1, 2, 4, 7], dtype=object), (), {}),
        "object_floats_coords": (
            np.array([1.5, 2.0, 4.25, 7.0], dtype=object),
            ([0.0, 1.0, 3.0, 3.5],),
            {},
        ),
        "object_2d": (np.arange(6, dtype=object).reshape(2, 3) ** 2, (), {}),
        "masked": (masked, (), {}),
        "masked_spacing": (masked, (0.5,), {"edge_order": 2}),
        "masked_2d": (masked_2d, (), {}),
        "masked_nomask": (np.ma.array([1.0, 2.0, 4.0]), (), {}),
        "masked_int": (np.ma.array([1, 2, 4, 9], mask=[0, 0, 1, 0]), (), {}),
        "matrix": (np.matrix([[1.0, 2.0, 4.0], [2.0, 5.0, 9.0]]), (), {}),
        "matrix_axis1": (np.matrix([[1.0, 2.0, 4.0], [2.0, 5.0, 9.0]]), (), {"axis": 1}),
        "matrix_int": (np.matrix([[1, 2, 4], [2, 5, 9], [0, 0, 1]]), (2.0,), {}),
        "subclass": (np.arange(10.0).reshape(2, 5).view(TaggedArray) ** 2, (), {}),
    }


with warnings.catch_warnings():
    warnings.simplefilter("ignore", PendingDeprecationWarning)  # np.matrix
    DELEGATION = delegation_cases()


@pytest.mark.parametrize("backend", [None, "numpy"])
@pytest.mark.parametrize("case", DELEGATION.keys())
def test_numpy_delegation_cases(case, backend):
    f, varargs, kwargs = DELEGATION[case]
    expected = np.gradient(f, *varargs, **kwargs)
    result = cugrad.gradient(f, *varargs, backend=backend, **kwargs)
    assert_same(result, expected)


# ---------------------------------------------------------------------------
# floating-point error handling follows the caller's np.errstate (threads included)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["raise", "ignore"])
@pytest.mark.parametrize("n", [7, 70001])
def test_errstate_is_honoured(xp_backend, n, state):
    if xp_backend.name.startswith("cupy"):
        pytest.skip("np.errstate governs host arithmetic only")
    f = np.arange(float(n))
    f[n // 2] = f[n // 2 + 2] = np.inf  # inf - inf in the interior: invalid
    with np.errstate(all="raise"):
        with pytest.raises(FloatingPointError):
            np.gradient(f)  # the case really triggers an error
    with np.errstate(all=state):
        xp_backend.check(f)  # FloatingPointError under "raise", like numpy
        xp_backend.check(f, 0.0)  # division by zero
        xp_backend.check(f, np.r_[0.0, 0.0, np.arange(n - 2.0)], edge_order=2)


# ---------------------------------------------------------------------------
# non-native byte order: numpy keeps the byte order of float input in its result
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("dtype", [">f8", ">f4", ">f2", ">c16", ">i4", ">u2"])
def test_non_native_byte_order(xp_backend, dtype, edge_order):
    native = np.dtype(dtype).newbyteorder("=")
    f = make_data((5, 6), native, "byteorder").astype(dtype)
    xp_backend.check(f, edge_order=edge_order)
    xp_backend.check(f, 0.5, coordinates("sorted_f64", 6), edge_order=edge_order)
    xp_backend.check(f, np.float32(2), edge_order=edge_order)
