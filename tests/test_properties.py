"""Property tests: random arrays, spacings, axes and edge orders against numpy.gradient.

Elements include inf, nan, signed zeros and subnormals; spacings are scalars of
several kinds or coordinate arrays (sorted and unique, or arbitrary with repeats).
Calls numpy rejects must be rejected by cugrad with the same exception type.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import GradientPath
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

pytestmark = pytest.mark.filterwarnings(
    "ignore::RuntimeWarning", "ignore::numpy.exceptions.ComplexWarning"
)

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

DATA_DTYPES = [
    np.float16, np.float32, np.float64, np.complex64, np.complex128,
    np.int8, np.uint8, np.int32, np.int64, np.uint64,
]  # fmt: skip
COORD_DTYPES = [np.float16, np.float32, np.float64, np.int64, np.uint8, np.int16]


def _elements(dtype: np.dtype) -> st.SearchStrategy[Any]:
    if dtype.kind in "iu":
        return hnp.from_dtype(dtype)
    # Full range, with nan/inf/subnormals; widths chosen by from_dtype.
    return hnp.from_dtype(dtype, allow_nan=True, allow_infinity=True, allow_subnormal=True)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DATA_DTYPES)))
    ndim = draw(st.integers(1, 4))
    max_side = {1: 40, 2: 9, 3: 6, 4: 4}[ndim]
    shape = tuple(draw(st.lists(st.integers(1, max_side), min_size=ndim, max_size=ndim)))
    a = draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))
    layout = draw(st.sampled_from(["C", "F", "reversed", "transposed"]))
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "reversed":
        a = a[::-1]
    elif layout == "transposed":
        a = a.T
    return a


def _coordinates(draw: st.DrawFn, n: int) -> Any:
    dtype = np.dtype(draw(st.sampled_from(COORD_DTYPES)))
    if dtype.kind in "iu":
        elements = hnp.from_dtype(dtype)
    else:
        # Finite coordinates mostly; occasionally anything at all.
        wild = draw(st.integers(0, 9)) == 0
        elements = hnp.from_dtype(
            dtype, allow_nan=wild, allow_infinity=wild, allow_subnormal=True,
            **({} if wild else {"min_value": -1e4, "max_value": 1e4}),
        )  # fmt: skip
    unique_sorted = draw(st.booleans())
    coords = draw(hnp.arrays(dtype, (n,), elements=elements, unique=unique_sorted))
    if unique_sorted:
        coords = np.sort(coords)
        if draw(st.booleans()):
            coords = coords[::-1]
    form = draw(st.sampled_from(["array", "array", "list", "uniform"]))
    if form == "list":
        return coords.tolist()
    if form == "uniform":
        step = draw(st.sampled_from([1, 0.5, -0.25, np.float32(0.1), 3]))
        return np.arange(n) * step
    return coords


def _scalar(draw: st.DrawFn) -> Any:
    value = draw(
        st.floats(allow_nan=False, allow_infinity=False, min_value=-1e3, max_value=1e3).filter(
            lambda v: v != 0
        )
    )
    kind = draw(
        st.sampled_from(["py_float", "py_int", "np_float16", "np_float32", "np_float64",
                         "np_int64", "zero_d_float32"])
    )  # fmt: skip
    return {
        "py_float": value,
        "py_int": int(value) or 1,
        "np_float16": np.float16(value),
        "np_float32": np.float32(value),
        "np_float64": np.float64(value),
        "np_int64": np.int64(int(value) or 1),
        "zero_d_float32": np.array(value, dtype=np.float32),
    }[kind]


@st.composite
def gradient_calls(draw: st.DrawFn) -> tuple[np.ndarray, tuple[Any, ...], dict[str, Any]]:
    f = draw(arrays())
    ndim = f.ndim
    if draw(st.booleans()):
        axis: Any = None
        axes: list[int] = list(range(ndim))
    else:
        axes = draw(st.permutations(range(ndim)))[: draw(st.integers(0, ndim))]
        negative = draw(st.booleans())
        signed = [a - ndim if negative else a for a in axes]
        axis = signed[0] if len(signed) == 1 and draw(st.booleans()) else tuple(signed)
    spacing = draw(st.sampled_from(["none", "one_scalar", "per_axis"]))
    if spacing == "none":
        varargs: tuple[Any, ...] = ()
    elif spacing == "one_scalar":
        varargs = (_scalar(draw),)
    else:
        varargs = tuple(
            _coordinates(draw, f.shape[ax]) if draw(st.booleans()) else _scalar(draw) for ax in axes
        )
    edge_order = draw(st.sampled_from([1, 2, 1, 2, 0]))
    return f, varargs, {"axis": axis, "edge_order": edge_order}


@SETTINGS
@given(call=gradient_calls())
def test_matches_numpy(xp_backend: GradientPath, call):
    f, varargs, kwargs = call
    xp_backend.check(f, *varargs, **kwargs)


class _DefaultBackendPath(GradientPath):
    name = "default-backend"
    backend_kw: dict[str, Any] = {}


@settings(max_examples=30, deadline=None)
@given(
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=90),
    dtype=st.sampled_from([np.float32, np.float64, np.int32]),
    seed=st.integers(0, 2**32 - 1),
    edge_order=st.sampled_from([1, 2]),
    spacing=st.sampled_from([(), (0.5,), (np.float32(0.3),)]),
)
def test_larger_arrays_default_backend(shape, dtype, seed, edge_order, spacing):
    # Sizes up to ~700k elements reach the threaded, slab-by-slab path; the values come
    # from a seeded generator because hypothesis draws big arrays slowly.
    rng = np.random.default_rng(seed)
    f = (rng.standard_normal(shape) * 100).astype(dtype)
    _DefaultBackendPath().check(f, *spacing, edge_order=edge_order)
