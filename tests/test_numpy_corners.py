"""Corners of numpy.gradient's behaviour an independent conformance review found (issue 10, 13-16).

numpy.gradient is the oracle in every test.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import random_field

import cugrad


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
        a.view(np.uint8), b.view(np.uint8))


# -- 13: a 0-d spacing that is a view into out= is read at call time, as numpy reads it ---------------


@pytest.mark.parametrize("edge_order", [1, 2])
def test_zero_d_spacing_viewing_out_is_read_before_anything_is_written(edge_order):
    f = random_field((200, 30), np.float64, "0-d view")
    out = np.empty_like(f)
    out[0, 0] = 0.75
    spacing = out[0, 0:1].reshape(())  # a 0-d view of the element the edge row overwrites
    expected = np.gradient(f, np.float64(0.75), axis=0, edge_order=edge_order)
    result = cugrad.gradient(f, spacing, axis=0, edge_order=edge_order, out=out)
    assert result is out
    assert same_bits(result, expected)


def test_zero_d_spacing_viewing_the_stack_buffer():
    f = random_field((40, 50), np.float32, "0-d stack")
    buffer = np.empty((2,) + f.shape, np.float32)
    buffer[1, 0, 0] = 2.0
    spacing = buffer[1, 0, 0:1].reshape(())
    expected = np.gradient(f, np.float32(2.0))
    result = cugrad.gradient(f, spacing, out=buffer, stack=True)
    assert same_bits(result[0], expected[0]) and same_bits(result[1], expected[1])


# -- 14: 1-D edges are numpy-scalar arithmetic -----------------------------------------------------


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("spacing", [0.3 + 0.7j, np.complex128(1.5 - 0.25j), 0.5])
@pytest.mark.parametrize("edge_order", [1, 2])
def test_one_d_complex_edges_match_numpy(dtype, spacing, edge_order):
    rng = np.random.default_rng(14)
    for n in (3, 7, 100):
        f = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dtype)
        expected = np.gradient(f, spacing, edge_order=edge_order)
        assert same_bits(cugrad.gradient(f, spacing, edge_order=edge_order), expected)
        da = pytest.importorskip("dask.array")
        lazy = cugrad.gradient(da.from_array(f, chunks=2), spacing, edge_order=edge_order)
        assert same_bits(lazy.compute(), expected)


# -- 15: under errstate(raise) or warnings as errors, numpy's exception ----------------------------


def numpy_raises(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the oracle's exception, whatever it is
        return type(exc), str(exc)
    return None


CASES = {
    # spacing 0.0 with edge_order 2: the interior division meets 0 before the edge coefficient does
    "zero spacing": (lambda g: g(random_field((30, 4), np.float64, "z"), 0.0, edge_order=2)),
    # inf - inf on axis 0 before the too-short axis 1 is reported
    "inf before short axis": (
        lambda g: g(np.array([[np.inf], [np.inf], [np.inf], [1.0]]), axis=None)),
    # axis 0 meets an invalid subtraction before axis 1 meets a division by zero
    "axis order": (lambda g: g(np.array([[np.inf, 1.0, 2.0]] * 4), 1.0, 0.0)),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("setting", ["errstate", "warnings"])
def test_floating_point_events_raise_what_numpy_raises(case, setting):
    call = CASES[case]

    def run(g):
        if setting == "errstate":
            with np.errstate(all="raise"):
                return g_call(g)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return g_call(g)

    def g_call(g):
        return call(g)

    expected = numpy_raises(lambda: run(np.gradient))
    assert expected is not None
    got = numpy_raises(lambda: run(cugrad.gradient))
    assert got == expected


def test_large_arrays_raise_numpys_first_event_too():
    # Big enough for slabs and threads, which are not used when events raise.
    f = random_field((300, 400), np.float64, "big")
    f[200, 5] = np.inf
    f[202, 5] = np.inf
    with np.errstate(all="raise"):
        expected = numpy_raises(lambda: np.gradient(f, 1.0, 0.0))
        got = numpy_raises(lambda: cugrad.gradient(f, 1.0, 0.0))
    assert expected is not None and got == expected


# -- 16: dask arrays of datetime64 and timedelta64 -------------------------------------------------


@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("chunks", [(1, 1), (4, 3), (12, 7)])
@pytest.mark.parametrize("unit", ["s", "ms", "D"])
def test_dask_datetimes_give_numpys_timedeltas(edge_order, chunks, unit):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(16)
    steps = rng.integers(1, 1000, (12, 7)).astype(f"m8[{unit}]")
    t = np.datetime64("2020-01-01", unit) + np.cumsum(steps, axis=0)
    x = np.cumsum(rng.random(7))
    for spacing in [(), (0.5,), (2.0, x)]:
        expected = np.gradient(t, *spacing, edge_order=edge_order)
        result = cugrad.gradient(da.from_array(t, chunks=chunks), *spacing, edge_order=edge_order)
        for r, e in zip(da.compute(*result), expected, strict=True):
            assert same_bits(r, e)
        deltas = cugrad.gradient(da.from_array(steps, chunks=chunks), *spacing,
                                 edge_order=edge_order)
        for r, e in zip(da.compute(*deltas),
                        np.gradient(steps, *spacing, edge_order=edge_order), strict=True):
            assert same_bits(r, e)


def test_thread_count_zero_is_rejected(monkeypatch):
    from cugrad import _numpy_backend

    for bad in ("0", "-2", "many"):
        monkeypatch.setenv("CUGRAD_NUM_THREADS", bad)
        with pytest.raises(ValueError, match="CUGRAD_NUM_THREADS must be a positive integer"):
            _numpy_backend.thread_count()
    monkeypatch.setenv("CUGRAD_NUM_THREADS", "3")
    assert _numpy_backend.thread_count() == 3
