"""``out=`` and ``stack=``: cugrad's additions, checked against numpy.gradient's values.

The arrays given as ``out`` are returned as they are (identity, not copies); every
validation error leaves every user array byte-for-byte unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import assert_same, numpy_outcome, public_exception_type, stable_rng

import cugrad

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

SENTINEL = 1234.5


@pytest.fixture(autouse=True, params=["plan-path", "small-array-path"])
def size_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
              _cugrad_own_path: None) -> None:
    """Every out=/stack= test on both host paths.

    Arrays below ``cugrad._api.NUMPY_GRADIENT_BELOW`` elements go to numpy.gradient and are then
    copied into the validated outputs; larger ones through the plan and the backends (conftest
    sets the threshold to 0 for the second).
    """
    if request.param == "small-array-path":
        monkeypatch.setattr("cugrad._api.NUMPY_GRADIENT_BELOW", 1 << 62)


def data(shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
    rng = stable_rng("out", shape, np.dtype(dtype).str)
    values = rng.standard_normal(shape) * 10
    return values.astype(dtype) if np.dtype(dtype).kind != "c" else (values + 1j).astype(dtype)


def result_dtype(f: np.ndarray) -> np.dtype:
    """numpy.gradient's output dtype, derived from its documented rules (not from cugrad)."""
    if f.dtype.kind in "fc":
        return f.dtype
    return np.dtype(np.float64)


def sentinel_array(shape: tuple[int, ...], dtype: Any, order: str = "C") -> np.ndarray:
    return np.full(shape, SENTINEL, dtype=dtype, order=order)


def expected_stack(f: Any, *varargs: Any, **kwargs: Any) -> np.ndarray:
    computed = np.gradient(f, *varargs, **kwargs)
    arrays = computed if isinstance(computed, tuple) else (computed,)
    return np.stack(arrays) if arrays else np.empty((0, *np.shape(f)), result_dtype(np.asarray(f)))


# ---------------------------------------------------------------------------
# out= works and returns the given arrays
# ---------------------------------------------------------------------------

DTYPES = [np.float64, np.float32, np.float16, np.complex64, np.int64, np.uint8]


@pytest.mark.parametrize("backend", [None, "numpy"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_out_single_axis(dtype, backend):
    f = data((5, 6), dtype)
    out = sentinel_array(f.shape, result_dtype(f))
    result = cugrad.gradient(f, 0.5, axis=1, out=out, backend=backend)
    assert result is out
    assert_same(out, np.gradient(f, 0.5, axis=1))


@pytest.mark.parametrize("backend", [None, "numpy"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("edge_order", [1, 2])
def test_out_tuple_several_axes(dtype, edge_order, backend):
    f = data((4, 5, 6), dtype)
    coords = np.cumsum(stable_rng("c").uniform(0.5, 1.5, 6))
    outs = tuple(sentinel_array(f.shape, result_dtype(f)) for _ in range(2))
    kwargs = {"axis": (2, 0), "edge_order": edge_order}
    result = cugrad.gradient(f, coords, 0.25, out=outs, backend=backend, **kwargs)
    assert type(result) is tuple and len(result) == 2
    assert result[0] is outs[0] and result[1] is outs[1]
    assert_same(result, np.gradient(f, coords, 0.25, **kwargs))


def test_out_tuple_all_axes_default():
    f = data((3, 4, 5))
    outs = tuple(sentinel_array(f.shape, f.dtype) for _ in range(3))
    result = cugrad.gradient(f, out=outs)
    assert all(r is o for r, o in zip(result, outs, strict=True))
    assert_same(result, np.gradient(f))


def test_out_list_is_accepted_like_a_tuple():
    # The lead's choice: a list of arrays is read like a tuple; the call returns a tuple
    # holding the very same arrays.
    f = data((4, 5))
    outs = [sentinel_array(f.shape, f.dtype) for _ in range(2)]
    result = cugrad.gradient(f, out=outs)
    assert type(result) is tuple
    assert result[0] is outs[0] and result[1] is outs[1]
    assert_same(result, np.gradient(f))


@pytest.mark.parametrize(
    "make_out",
    [
        lambda shape, dt: np.full(shape, SENTINEL, dt, order="F"),
        lambda shape, dt: np.full((shape[0], 2 * shape[1], shape[2]), SENTINEL, dt)[:, ::2],
        lambda shape, dt: np.full(shape, SENTINEL, dt)[::-1, :, ::-1][::-1, :, ::-1],
        lambda shape, dt: np.full(shape[::-1], SENTINEL, dt).T,
        lambda shape, dt: np.full(shape, SENTINEL, dt)[::-1],
    ],
    ids=["fortran", "strided", "reversed_twice", "transposed", "reversed"],
)
@pytest.mark.parametrize("shape", [(4, 5, 6), (131, 67, 33)], ids=str)
def test_out_noncontiguous(make_out, shape):
    # The big shape takes the threaded, slab-by-slab path: it must honour the out strides.
    f = data(shape, np.float32)
    outs = tuple(make_out(shape, np.float32) for _ in range(3))
    result = cugrad.gradient(f, out=outs, edge_order=2)
    assert all(r is o for r, o in zip(result, outs, strict=True))
    assert_same(result, np.gradient(f, edge_order=2))


def test_out_big_int_input():
    f = stable_rng("big-int").integers(-(2**40), 2**40, size=(131, 67, 33))
    outs = tuple(sentinel_array(f.shape, np.float64) for _ in range(3))
    result = cugrad.gradient(f, 0.3, out=outs)
    assert all(r is o for r, o in zip(result, outs, strict=True))
    assert_same(result, np.gradient(f, 0.3))


# ---------------------------------------------------------------------------
# stack=True
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", [None, "numpy"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(
    "shape, axis", [((7,), None), ((4, 5), None), ((3, 4, 5), (2, 0)), ((3, 4, 5), -1)], ids=str
)
def test_stack(shape, axis, dtype, backend):
    f = data(shape, dtype)
    result = cugrad.gradient(f, axis=axis, stack=True, backend=backend)
    expected = expected_stack(f, axis=axis)
    assert_same(result, expected)


def test_stack_single_axis_shape():
    f = data((4, 5))
    result = cugrad.gradient(f, axis=1, stack=True)
    assert result.shape == (1, 4, 5)
    assert_same(result, np.gradient(f, axis=1)[np.newaxis])


@pytest.mark.parametrize(
    "f, kwargs",
    [
        (np.array(3.0), {}),
        (np.array(3, dtype=np.int8), {}),
        (np.array(3.0, dtype=np.float32), {"axis": ()}),
        (np.ones((3, 4), dtype=np.float32), {"axis": ()}),
        (np.ones((3, 4), dtype=np.int64), {"axis": ()}),
    ],
    ids=["0d_f64", "0d_int8", "0d_f32_axis_empty", "2d_axis_empty", "2d_int_axis_empty"],
)
def test_stack_no_axes(f, kwargs):
    # (len(axes),) + f.shape with len(axes) == 0: (0,) for a 0-d input.
    result = cugrad.gradient(f, stack=True, **kwargs)
    assert isinstance(result, np.ndarray)
    assert result.shape == (0, *f.shape)
    assert result.dtype == result_dtype(f)
    assert np.gradient(f, **kwargs) == ()


def test_stack_with_out_no_axes():
    out = np.empty((0,), dtype=np.float64)
    assert cugrad.gradient(np.array(2.0), stack=True, out=out) is out


@pytest.mark.parametrize("backend", [None, "numpy"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_stack_with_out(dtype, backend):
    f = data((3, 4, 5), dtype)
    out = sentinel_array((2, *f.shape), result_dtype(f))
    result = cugrad.gradient(
        f, 2.0, [0, 1, 3, 4, 8], axis=(0, 2), stack=True, out=out, backend=backend
    )
    assert result is out
    assert_same(out, expected_stack(f, 2.0, [0, 1, 3, 4, 8], axis=(0, 2)))


def test_stack_with_out_big_fortran():
    f = data((131, 67, 33), np.float64)
    out = sentinel_array((3, *f.shape), np.float64, order="F")
    assert cugrad.gradient(f, stack=True, out=out) is out
    assert_same(out, expected_stack(f))


@pytest.mark.parametrize(
    "f",
    [
        np.array([1, 5, 20], dtype="M8[D]"),
        np.array([[1, 2, 4], [2, 5, 9]], dtype="m8[s]"),
        np.array([1, 2, 4, 9], dtype=object),
    ],
    ids=["datetime64", "timedelta64", "object"],
)
def test_stack_and_out_on_numpy_handled_dtypes(f):
    expected = expected_stack(f)
    assert_same(cugrad.gradient(f, stack=True), expected)
    out = np.empty(expected.shape, expected.dtype)
    assert cugrad.gradient(f, stack=True, out=out) is out
    assert_same(out, expected)


@pytest.mark.parametrize("stack", ["yes", 2, None, np.ones(2)], ids=repr)
def test_stack_must_be_a_bool(stack):
    with pytest.raises((TypeError, ValueError), match="stack"):
        cugrad.gradient(data((4,)), stack=stack)


# ---------------------------------------------------------------------------
# validation: errors are raised before anything is written
# ---------------------------------------------------------------------------


def _snapshot(arrays: list[np.ndarray]) -> list[bytes]:
    return [a.tobytes() for a in arrays]


def _expect_untouched_failure(call, user_arrays, error_types, match: str | None = None):
    before = _snapshot(user_arrays)
    with pytest.raises(error_types, match=match) as info:
        call()
    assert _snapshot(user_arrays) == before, "a user array was written before the error"
    return info


F2 = data((4, 5))
F2_32 = data((4, 5), np.float32)
F2_INT = (data((4, 5)) * 10).astype(np.int64)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


# (id, f, out builder); each must fail with ValueError or TypeError.
OUT_ERRORS: list[tuple[str, Any, Any]] = [
    ("too_few_in_tuple", F2, lambda: (sentinel_array((4, 5), np.float64),)),
    ("too_many_in_tuple", F2, lambda: tuple(sentinel_array((4, 5), np.float64) for _ in range(3))),
    ("single_array_for_two_axes", F2, lambda: sentinel_array((4, 5), np.float64)),
    (
        "wrong_shape_second",
        F2,
        lambda: (sentinel_array((4, 5), np.float64), sentinel_array((5, 4), np.float64)),
    ),
    (
        "wrong_dtype_second",
        F2,
        lambda: (sentinel_array((4, 5), np.float64), sentinel_array((4, 5), np.float32)),
    ),
    (
        "float64_out_for_float32_input",
        F2_32,
        lambda: (sentinel_array((4, 5), np.float64), sentinel_array((4, 5), np.float64)),
    ),
    (
        "float32_out_for_int_input",
        F2_INT,
        lambda: (sentinel_array((4, 5), np.float32), sentinel_array((4, 5), np.float32)),
    ),
    (
        "int_out_for_int_input",
        F2_INT,
        lambda: (sentinel_array((4, 5), np.int64), sentinel_array((4, 5), np.int64)),
    ),
    (
        "complex_out_for_real_input",
        F2,
        lambda: (sentinel_array((4, 5), np.complex128), sentinel_array((4, 5), np.complex128)),
    ),
    (
        "readonly_second",
        F2,
        lambda: (sentinel_array((4, 5), np.float64), _readonly(sentinel_array((4, 5), np.float64))),
    ),
    (
        "second_is_a_list",
        F2,
        lambda: (sentinel_array((4, 5), np.float64), [[0.0] * 5] * 4),
    ),
    (
        "broadcast_shape",
        F2,
        lambda: (sentinel_array((4, 5), np.float64), sentinel_array((1, 5), np.float64)),
    ),
]


def _arrays_in(out: Any) -> list[np.ndarray]:
    items = out if isinstance(out, tuple | list) else [out]
    return [a for a in items if isinstance(a, np.ndarray)]


@pytest.mark.parametrize("backend", [None, "numpy"])
@pytest.mark.parametrize(
    "f, make_out", [(c[1], c[2]) for c in OUT_ERRORS], ids=[c[0] for c in OUT_ERRORS]
)
def test_bad_out_is_rejected_before_writing(f, make_out, backend):
    out = make_out()
    f_before = f.tobytes()
    info = _expect_untouched_failure(
        lambda: cugrad.gradient(f, out=out, backend=backend),
        _arrays_in(out),
        (ValueError, TypeError),
    )
    assert "out" in str(info.value), f"the message should say out= is the problem: {info.value}"
    assert f.tobytes() == f_before


@pytest.mark.parametrize("backend", [None, "numpy"])
def test_wrong_dtype_message_names_the_dtype(backend):
    out = sentinel_array((4, 5), np.float32)
    info = _expect_untouched_failure(
        lambda: cugrad.gradient(F2, axis=0, out=out, backend=backend),
        [out],
        (TypeError, ValueError),
    )
    assert "float64" in str(info.value), f"the message should name the needed dtype: {info.value}"


def test_wrong_shape_message_names_the_shape():
    out = sentinel_array((5, 4), np.float64)
    info = _expect_untouched_failure(
        lambda: cugrad.gradient(F2, axis=0, out=out), [out], (TypeError, ValueError)
    )
    assert "(4, 5)" in str(info.value), f"the message should give the needed shape: {info.value}"


def test_single_axis_out_not_an_array():
    with pytest.raises((TypeError, ValueError), match="out"):
        cugrad.gradient(F2, axis=0, out=[[0.0] * 5] * 4)


STACK_OUT_ERRORS = [
    ("missing_leading_axis", lambda: sentinel_array((4, 5), np.float64)),
    ("wrong_count", lambda: sentinel_array((3, 4, 5), np.float64)),
    ("wrong_dtype", lambda: sentinel_array((2, 4, 5), np.float32)),
    ("transposed_shape", lambda: sentinel_array((2, 5, 4), np.float64)),
    ("readonly", lambda: _readonly(sentinel_array((2, 4, 5), np.float64))),
    (
        "tuple_instead_of_array",
        lambda: (sentinel_array((4, 5), np.float64), sentinel_array((4, 5), np.float64)),
    ),
]


@pytest.mark.parametrize(
    "make_out", [c[1] for c in STACK_OUT_ERRORS], ids=[c[0] for c in STACK_OUT_ERRORS]
)
def test_bad_stack_out_is_rejected_before_writing(make_out):
    out = make_out()
    info = _expect_untouched_failure(
        lambda: cugrad.gradient(F2, stack=True, out=out), _arrays_in(out), (ValueError, TypeError)
    )
    assert "out" in str(info.value)


# numpy.gradient's own errors, raised while valid out arrays are given: numpy would have
# computed earlier axes before failing on a later one; cugrad must not write any of them.
NUMPY_ERRORS_WITH_OUT = [
    ("second_axis_too_short", np.ones((4, 1)), (), {}),
    ("second_axis_too_short_eo2", data((4, 2)), (), {"edge_order": 2}),
    ("edge_order_3", F2, (), {"edge_order": 3}),
    ("edge_order_0_second_axis_len2", data((4, 2)), (), {"edge_order": 0}),
    ("spacing_count", F2, (1.0, 2.0, 3.0), {}),
    ("second_coords_wrong_length", F2, (1.0, [0.0, 1.0, 2.0]), {}),
    ("second_coords_2d", F2, (1.0, np.ones((5, 2))), {}),
    ("second_spacing_str", F2, (1.0, "abc"), {}),
    ("second_spacing_zero_eo2", F2, (1.0, 0), {"edge_order": 2}),
    ("second_coords_len1", np.ones((4, 1)), (1.0, [3.0]), {}),
]


@pytest.mark.parametrize("stack", [False, True])
@pytest.mark.parametrize(
    "f, varargs, kwargs",
    [c[1:] for c in NUMPY_ERRORS_WITH_OUT],
    ids=[c[0] for c in NUMPY_ERRORS_WITH_OUT],
)
def test_numpy_errors_leave_out_untouched(f, varargs, kwargs, stack):
    _, numpy_error = numpy_outcome(lambda: np.gradient(f, *varargs, **kwargs))
    assert numpy_error is not None
    if stack:
        out: Any = sentinel_array((2, *f.shape), np.float64)
    else:
        out = (sentinel_array(f.shape, np.float64), sentinel_array(f.shape, np.float64))
    f_before = f.tobytes()
    _expect_untouched_failure(
        lambda: cugrad.gradient(f, *varargs, out=out, stack=stack, **kwargs),
        _arrays_in(out),
        public_exception_type(numpy_error),
    )
    assert f.tobytes() == f_before


# ---------------------------------------------------------------------------
# out overlapping f: the answer is still numpy's answer on the original data
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(9,), (131, 67, 33)], ids=str)
@pytest.mark.parametrize("edge_order", [1, 2])
def test_out_is_f_itself(shape, edge_order):
    f = data(shape)
    axis = 0
    expected = np.gradient(f.copy(), 0.5, axis=axis, edge_order=edge_order)
    result = cugrad.gradient(f, 0.5, axis=axis, edge_order=edge_order, out=f)
    assert result is f
    assert_same(result, expected)


def test_out_is_reversed_view_of_f():
    f = data((6, 7))
    expected = np.gradient(f.copy(), axis=1)
    out = f[:, ::-1]
    assert cugrad.gradient(f, axis=1, out=out) is out
    assert_same(out, expected)


@pytest.mark.parametrize("n", [11, 70001])
def test_out_shifted_by_one_element(n):
    buf = data((n + 1,))
    f, out = buf[:-1], buf[1:]
    expected = np.gradient(f.copy(), 0.25, edge_order=2)
    assert cugrad.gradient(f, 0.25, edge_order=2, out=out) is out
    assert_same(out, expected)


def test_out_tuple_contains_f():
    f = data((5, 6))
    original = f.copy()
    other = sentinel_array(f.shape, f.dtype)
    result = cugrad.gradient(f, out=(other, f))
    assert result[0] is other and result[1] is f
    assert_same(result, np.gradient(original))


def test_out_tuple_contains_transposed_f():
    f = data((6, 6))
    original = f.copy()
    other = sentinel_array(f.shape, f.dtype)
    result = cugrad.gradient(f, [0, 1, 2, 4, 8, 9], 0.5, out=(f.T, other))
    assert result[0] is not None
    assert_same(result, np.gradient(original, [0, 1, 2, 4, 8, 9], 0.5))


@pytest.mark.parametrize("shape", [(4, 5), (131, 67, 33)], ids=str)
def test_stack_out_contains_f(shape):
    # f is a slice of the stack buffer it is differentiated into.
    buf = np.empty((len(shape) + 1, *shape))
    buf[-1] = data(shape)
    f = buf[-1]
    original = f.copy()
    out = buf[: len(shape)] if len(shape) == 2 else buf[1:]
    assert cugrad.gradient(f, stack=True, out=out) is out
    assert_same(out, expected_stack(original))


# ---------------------------------------------------------------------------
# CuPy: out arrays live on the device
# ---------------------------------------------------------------------------


@pytest.mark.gpu
def test_out_and_stack_on_device():
    import cupy

    f = data((4, 5, 6), np.float32)
    f_dev = cupy.asarray(f)
    outs = tuple(cupy.full(f.shape, SENTINEL, np.float32) for _ in range(3))
    result = cugrad.gradient(f_dev, out=outs)
    assert all(r is o for r, o in zip(result, outs, strict=True))
    assert_same(tuple(cupy.asnumpy(o) for o in outs), np.gradient(f))

    stacked = cupy.full((3, *f.shape), SENTINEL, np.float32)
    assert cugrad.gradient(f_dev, stack=True, out=stacked) is stacked
    assert_same(cupy.asnumpy(stacked), expected_stack(f))

    host_out = sentinel_array(f.shape, np.float32)
    before = host_out.tobytes()
    with pytest.raises((TypeError, ValueError), match="out"):
        cugrad.gradient(f_dev, axis=0, out=host_out)
    assert host_out.tobytes() == before


@pytest.mark.gpu
def test_out_overlapping_f_on_device():
    import cupy

    f = data((5, 6))
    f_dev = cupy.asarray(f)
    assert cugrad.gradient(f_dev, axis=0, out=f_dev) is f_dev
    assert_same(cupy.asnumpy(f_dev), np.gradient(f, axis=0))


def test_outputs_sharing_memory_are_rejected_before_writing():
    f = data((6, 7))
    shared = sentinel_array((6, 7), np.float64)
    for out in ((shared, shared), (shared, shared.T.T)):
        with pytest.raises(ValueError, match=r"out\[0\] and out\[1\] share memory"):
            cugrad.gradient(f, out=out)
        assert (shared == SENTINEL).all()
