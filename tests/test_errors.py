"""Exception parity with numpy.gradient, and cugrad's own argument errors.

For every bad call numpy.gradient is run first; cugrad must raise the same public
exception type (AxisError, or the nearest builtin class of numpy's exception). Where
several things are wrong at once, numpy's checking order decides which error wins.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from conftest import assert_same, gpu_unavailable_reason, numpy_outcome, public_exception_type

import cugrad

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

F1 = np.array([1.0, 2.0, 4.0, 7.0, 11.0])
F2 = np.arange(20.0).reshape(4, 5) ** 2
F3 = np.arange(60.0).reshape(3, 4, 5) ** 1.5

# (id, f, varargs, kwargs): numpy.gradient raises on every one of these.
ERROR_CASES: list[tuple[str, Any, tuple[Any, ...], dict[str, Any]]] = [
    # axis
    ("axis_out_of_range", F2, (), {"axis": 2}),
    ("axis_negative_out_of_range", F2, (), {"axis": -3}),
    ("axis_tuple_out_of_range", F3, (), {"axis": (0, 3)}),
    ("axis_on_0d", np.array(1.0), (), {"axis": 0}),
    ("axis_repeated", F2, (), {"axis": (0, 0)}),
    ("axis_repeated_negative", F3, (), {"axis": (1, -2)}),
    ("axis_float", F2, (), {"axis": 1.0}),
    ("axis_float_in_tuple", F2, (), {"axis": (0, 1.0)}),
    ("axis_str", F2, (), {"axis": "0"}),
    # number of spacings
    ("two_spacings_1d", F1, (1.0, 2.0), {}),
    ("one_coord_2d", F2, (np.arange(4.0),), {}),
    ("three_spacings_2d", F2, (1.0, 1.0, 1.0), {}),
    ("two_spacings_one_axis", F2, (1.0, 1.0), {"axis": 1}),
    ("coords_with_empty_axis", F1, (np.arange(5.0),), {"axis": ()}),
    ("coords_on_0d", np.array(2.0), (np.arange(3.0),), {}),
    # coordinate arrays
    ("coords_2d", F1, (np.ones((5, 1)),), {}),
    ("coords_2d_second_axis", F2, (1.0, np.ones((5, 5))), {}),
    ("coords_wrong_length", F1, (np.arange(4.0),), {}),
    ("coords_wrong_length_list", F2, ([0.0, 1.0, 2.0, 3.0], [0.0, 1.0]), {}),
    ("coords_len1_on_len1_axis", np.array([3.0]), (np.array([1.0]),), {}),
    ("coords_len1_list_on_len1_axis", np.ones((1, 3)), ([2.0], 1.0), {}),
    ("coords_bool_nonuniform", F1, (np.array([0, 1, 1, 0, 1], dtype=bool),), {}),
    ("coords_datetime", F1, (np.arange(5).astype("M8[s]"),), {}),
    # edge_order
    ("edge_order_3", F1, (), {"edge_order": 3}),
    ("edge_order_2_5", F1, (), {"edge_order": 2.5}),
    ("edge_order_None", F1, (), {"edge_order": None}),
    ("edge_order_str", F1, (), {"edge_order": "1"}),
    ("edge_order_3_on_0d", np.array(1.0), (), {"edge_order": 3}),
    ("edge_order_None_on_0d", np.array(1.0), (), {"edge_order": None}),
    # too-short axes
    ("len1_edge_order_1", np.array([1.0]), (), {}),
    ("len2_edge_order_2", np.array([1.0, 2.0]), (), {"edge_order": 2}),
    ("short_second_axis", np.ones((5, 1)), (), {}),
    ("short_second_axis_eo2", np.ones((5, 2)), (), {"edge_order": 2}),
    ("short_selected_axis", np.ones((5, 2, 4)), (), {"axis": (2, 1), "edge_order": 2}),
    ("size0_axis", np.ones((0, 3)), (), {}),
    ("edge_order_0_len2", np.array([1.0, 2.0]), (), {"edge_order": 0}),
    ("edge_order_0_len1", np.array([1.0]), (), {"edge_order": 0}),
    ("edge_order_False_len2", np.array([1.0, 2.0]), (), {"edge_order": False}),
    ("edge_order_0_len2_coords", np.array([1.0, 2.0]), ([0.0, 0.5],), {"edge_order": 0}),
    # bad data
    ("bool_input", np.array([True, False, True]), (), {}),
    ("bool_input_2d", np.ones((3, 3), dtype=bool), (), {"axis": 1}),
    ("bool_input_empty_other_axis", np.ones((0, 3), dtype=bool), (), {"axis": 1}),
    ("bool_list", [True, False, True], (), {}),
    ("str_input", np.array(["a", "b", "c"]), (), {}),
    ("bytes_input", np.array([b"a", b"b", b"c"]), (), {}),
    ("str_list", ["1", "2", "3"], (), {}),
    ("ragged_list", [[1.0, 2.0], [3.0]], (), {}),
    ("ragged_nested", [[[1.0, 2.0]], [[3.0, 4.0], [5.0, 6.0]]], (), {}),
    ("void_input", np.zeros(3, dtype="V8"), (), {}),
    # bad spacing values
    ("spacing_str", F1, ("abc",), {}),
    ("spacing_bytes", F1, (b"ab",), {}),
    ("spacing_None", F1, (None,), {}),
    ("spacing_None_per_axis", F2, (1.0, None), {}),
    ("spacing_dict", F1, ({},), {}),
    ("spacing_str_coords", F1, (np.array(list("abcde")),), {}),
    # several errors at once: numpy's order decides
    ("count_before_edge_order", F1, (1.0, 2.0), {"edge_order": 3}),
    ("axis_before_count", F2, (1.0, 1.0, 1.0), {"axis": 5}),
    ("axis_before_edge_order", F2, (), {"axis": 5, "edge_order": 3}),
    ("ragged_before_axis", [[1.0, 2.0], [3.0]], (), {"axis": 4}),
    ("coords_shape_before_edge_order", F1, (np.ones((5, 2)),), {"edge_order": 3}),
    ("coords_len1_before_edge_order", np.array([3.0]), ([1.0],), {"edge_order": 3}),
    ("edge_order_before_bool", np.array([True, False, True]), (), {"edge_order": 3}),
    ("short_axis_before_bool", np.array([True]), (), {}),
    ("short_axis_before_str_spacing", np.array([1.0]), ("abc",), {}),
    ("edge_order_before_None_spacing", F1, (None,), {"edge_order": 3}),
    ("edge_order_None_before_short", np.array([1.0]), (), {"edge_order": None}),
    ("short_axis_before_str_data", np.array(["a"]), (), {}),
    # edge_order <= 0 reaches numpy's second-order edge code, which evaluates the spacing
    # (interior first, then the edge coefficients) before it indexes the missing third row.
    ("edge_order_0_len2_str_spacing", np.array([1.0, 2.0]), ("abc",), {"edge_order": 0}),
    ("edge_order_0_len2_None_spacing", np.array([1.0, 2.0]), (None,), {"edge_order": 0}),
    ("edge_order_0_len2_int_zero_spacing", np.array([1.0, 2.0]), (0,), {"edge_order": 0}),
    ("edge_order_-1_len2_float_zero", np.array([1.0, 2.0]), (0.0,), {"edge_order": -1}),
    ("edge_order_-1_len1_str_spacing", np.array([1.0]), ("abc",), {"edge_order": -1}),
    ("edge_order_0_second_axis_len2_zero", np.ones((4, 2)), (1.0, 0), {"edge_order": 0}),
    # Python-number spacings that Python itself cannot use
    ("spacing_int_zero_edge_order_2", F1, (0,), {"edge_order": 2}),
    ("spacing_float_zero_edge_order_2", F1, (0.0,), {"edge_order": 2}),
    ("spacing_False_edge_order_2", F1, (False,), {"edge_order": 2}),
    ("spacing_int_too_big_for_float", F1, (2**1100,), {}),
    ("spacing_decimal", F1, (Decimal("0.5"),), {}),
    ("first_axis_short_second_coords_bad", np.ones((1, 3)), (1.0, [0.0, 1.0]), {}),
]


@pytest.mark.parametrize(
    "f, varargs, kwargs", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_error_type_matches_numpy(xp_backend, f, varargs, kwargs):
    _, numpy_error = numpy_outcome(lambda: np.gradient(f, *varargs, **kwargs))
    assert numpy_error is not None, "numpy.gradient no longer raises here; update the case"
    expected_type = public_exception_type(numpy_error)
    with pytest.raises(expected_type):
        xp_backend.call(f, *varargs, **kwargs)


@pytest.mark.parametrize("backend", [None, "auto"])
@pytest.mark.parametrize(
    "f, varargs, kwargs", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_error_type_default_backend(f, varargs, kwargs, backend):
    _, numpy_error = numpy_outcome(lambda: np.gradient(f, *varargs, **kwargs))
    assert numpy_error is not None
    with pytest.raises(public_exception_type(numpy_error)):
        cugrad.gradient(f, *varargs, backend=backend, **kwargs)


# Calls that look wrong but on which numpy.gradient does NOT raise.
NON_ERRORS: list[tuple[str, Any, tuple[Any, ...], dict[str, Any]]] = [
    ("bool_0d", np.array(True), (), {}),
    ("bool_empty_axes", np.ones((3, 3), dtype=bool), (), {"axis": ()}),
    ("str_spacing_0d", np.array(1.0), ("abc",), {}),
    ("none_spacing_empty_axes", F2, (None,), {"axis": ()}),
    ("axis_true", F2, (), {"axis": True}),
    ("axis_0d_array", F2, (), {"axis": np.array(1)}),
    ("axis_array", F3, (), {"axis": np.array([2, 0])}),
    ("edge_order_0_len3", F1[:3], (), {"edge_order": 0}),
    ("edge_order_negative", F1, ([0.0, 1.0, 3.0, 4.0, 7.0],), {"edge_order": -5}),
    ("bool_coords_alternating", F1, (np.array([0, 1, 0, 1, 0], dtype=bool),), {}),
    ("object_coords", F1, (np.array([0, 1, 3, 4, 8], dtype=object),), {}),
    ("zero_spacing", F1, (0,), {}),
    ("len1_axis_not_differentiated", np.ones((1, 4)), (), {"axis": 1}),
]


@pytest.mark.parametrize(
    "f, varargs, kwargs", [c[1:] for c in NON_ERRORS], ids=[c[0] for c in NON_ERRORS]
)
def test_numpy_accepts_so_cugrad_accepts(xp_backend, f, varargs, kwargs):
    expected, numpy_error = numpy_outcome(lambda: np.gradient(f, *varargs, **kwargs))
    assert numpy_error is None, f"numpy.gradient now raises {numpy_error!r}; update the case"
    assert_same(xp_backend.call(f, *varargs, **kwargs), expected)


# ---------------------------------------------------------------------------
# cugrad's own arguments
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["bogus", "CUDA", "", 3], ids=repr)
def test_unknown_backend_is_value_error(backend):
    with pytest.raises((ValueError, TypeError)) as info:
        cugrad.gradient(F1, backend=backend)
    message = str(info.value)
    assert "numpy" in message and "cupy" in message, (
        f"the message should list the valid backends: {message!r}"
    )
    if isinstance(backend, str):
        assert info.type is ValueError


def test_bogus_backend_leaves_input_alone():
    f = F1.copy()
    with pytest.raises(ValueError):
        cugrad.gradient(f, backend="bogus")
    np.testing.assert_array_equal(f, F1)


def _check_missing_cupy_message(message: str) -> None:
    reason = gpu_unavailable_reason()
    assert "cupy" in message.lower(), f"the message should name CuPy: {message!r}"
    if reason is not None and "not importable" in reason:
        # CuPy is absent: the message must say how to get it (from a checkout: not on PyPI).
        assert 'pip install ".[cuda12]"' in message, (
            f"the message should say how to install CuPy: {message!r}"
        )


def test_backend_cupy_without_gpu_raises_helpfully():
    if gpu_unavailable_reason() is None:
        pytest.skip("CuPy and a GPU are available here; the missing-CuPy error cannot happen")
    with pytest.raises((ImportError, RuntimeError)) as info:
        cugrad.gradient(F1, backend="cupy")
    _check_missing_cupy_message(str(info.value))


def test_env_backend_numpy_is_honoured(monkeypatch):
    monkeypatch.setenv("CUGRAD_BACKEND", "numpy")
    result = cugrad.gradient(F2)
    assert_same(result, np.gradient(F2))
    assert_same(cugrad.gradient(F2, backend=None), np.gradient(F2))


def test_env_backend_auto_is_honoured(monkeypatch):
    monkeypatch.setenv("CUGRAD_BACKEND", "auto")
    assert_same(cugrad.gradient(F2), np.gradient(F2))


def test_env_backend_cupy_is_read_at_call_time(monkeypatch):
    # Seen from a CPU-only machine, the env var is honoured if it makes a plain call
    # ask for CuPy -- and an explicit backend= argument still wins over it.
    if gpu_unavailable_reason() is None:
        pytest.skip("CuPy and a GPU are available here")
    monkeypatch.setenv("CUGRAD_BACKEND", "cupy")
    with pytest.raises((ImportError, RuntimeError)) as info:
        cugrad.gradient(F1)
    _check_missing_cupy_message(str(info.value))
    assert_same(cugrad.gradient(F1, backend="numpy"), np.gradient(F1))


@pytest.mark.parametrize("value", ["bogus", "gpu", "nump"])
def test_env_backend_bogus_is_clear(monkeypatch, value):
    monkeypatch.setenv("CUGRAD_BACKEND", value)
    with pytest.raises(ValueError) as info:
        cugrad.gradient(F1)
    message = str(info.value)
    assert "CUGRAD_BACKEND" in message, f"the message should name the variable: {message!r}"
    assert value in message, f"the message should show the bad value: {message!r}"


def test_env_backend_bogus_explicit_argument_wins(monkeypatch):
    monkeypatch.setenv("CUGRAD_BACKEND", "bogus")
    assert_same(cugrad.gradient(F1, backend="numpy"), np.gradient(F1))
