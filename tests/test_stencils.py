"""Accuracy orders 4, 6, 8 and periodic boundaries, against oracles that are not cugrad.

* Polynomials: every row (edges included) differentiates polynomials of degree <= p exactly, up to
  rounding, on uniform and on random coordinate grids.
* Convergence: the measured order of the error on a smooth function is p, in the interior and at
  the edges.
* findiff: same values (to rounding) for its central and periodic stencils, uniform and coordinates.
* The written-down operation order: a reference written here from the README's definition and the
  literature's weight tables (not from cugrad's weights) gives the same bits.
* numpy.gradient: the defaults, spelled out, are numpy's bits; periodic accuracy 2 keeps numpy's
  interior bits.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from conftest import random_field, stable_rng

import cugrad

ACCURACIES = (2, 4, 6, 8)

# Central first-derivative weights c_k of f[i+k] - f[i-k] (Fornberg 1988, table 1).
CENTRAL = {
    2: [Fraction(1, 2)],
    4: [Fraction(2, 3), Fraction(-1, 12)],
    6: [Fraction(3, 4), Fraction(-3, 20), Fraction(1, 60)],
    8: [Fraction(4, 5), Fraction(-1, 5), Fraction(4, 105), Fraction(-1, 280)],
}
# Forward weights at row 0 over points 0..p (Fornberg 1988, table 3).
FORWARD = {
    4: [Fraction(-25, 12), 4, -3, Fraction(4, 3), Fraction(-1, 4)],
    6: [Fraction(-49, 20), 6, Fraction(-15, 2), Fraction(20, 3), Fraction(-15, 4), Fraction(6, 5),
        Fraction(-1, 6)],
}


def bits(a):
    a = np.asarray(a)
    return a.view(f"u{a.dtype.itemsize}") if a.dtype.kind == "f" else a


def assert_bits(actual, expected):
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(bits(actual), bits(expected))


# --------------------------------------------------------------------------------------------------
# numpy's behaviour is the default
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.complex64])
def test_spelled_out_defaults_are_numpy(edge_order, dtype):
    f = random_field((9, 12), dtype, "defaults")
    x = np.cumsum(stable_rng("x").random(12)) + 1
    expected = np.gradient(f, 0.5, x, edge_order=edge_order)
    result = cugrad.gradient(f, 0.5, x, edge_order=edge_order, accuracy=2, boundary="edge",
                             period=None)
    for r, e in zip(result, expected, strict=True):
        assert_bits(r, e)


def test_periodic_accuracy_2_keeps_numpys_interior_bits():
    f = random_field((20, 30), np.float32, "periodic interior")
    x = np.cumsum(stable_rng("px").random(30)) + 2
    expected = np.gradient(f, 0.3, x)
    result = cugrad.gradient(f, 0.3, x, boundary="periodic", period=(None, 100.0))
    for r, e in zip(result, expected, strict=True):
        assert r.dtype == e.dtype
    assert_bits(result[0][1:-1], expected[0][1:-1])
    assert_bits(result[1][:, 1:-1], expected[1][:, 1:-1])


# --------------------------------------------------------------------------------------------------
# Exact for polynomials of degree <= p; measured order p
# --------------------------------------------------------------------------------------------------


def polynomial(x, degree):
    coef = np.arange(1, degree + 2, dtype=np.float64) / (degree + 1)
    return np.polynomial.polynomial.polyval(x, coef), np.polynomial.polynomial.polyval(
        x, np.polynomial.polynomial.polyder(coef))


@pytest.mark.parametrize("acc", [4, 6, 8])
@pytest.mark.parametrize("grid", ["uniform", "coordinates"])
def test_polynomials_of_degree_p_are_exact_on_every_row(acc, grid):
    n = 2 * acc + 3
    if grid == "uniform":
        x = np.linspace(-1.0, 1.5, n)
        spacing = x[1] - x[0]
    else:
        x = np.sort(stable_rng("poly", acc).uniform(-1.0, 1.5, n))
        spacing = x
    for degree in range(acc + 1):
        f, df = polynomial(x, degree)
        g = cugrad.gradient(f, spacing, accuracy=acc)
        np.testing.assert_allclose(g, df, rtol=1e-9, atol=1e-9, err_msg=f"degree {degree}")
    # and not of degree p + 1: the test can fail
    f, df = polynomial(x, acc + 1)
    assert np.abs(cugrad.gradient(f, spacing, accuracy=acc) - df).max() > 1e-8


@pytest.mark.parametrize("acc", ACCURACIES)
def test_periodic_stencils_are_exact_for_trigonometric_modes_to_order_p(acc):
    # On a periodic grid a central stencil of order p differentiates sin(k x) with error O(h^p);
    # halving h divides the error by 2^p.
    errors = []
    for n in (32, 64):
        x = np.arange(n) * (2 * np.pi / n)
        g = cugrad.gradient(np.sin(3 * x), 2 * np.pi / n, accuracy=acc, boundary="periodic")
        errors.append(np.abs(g - 3 * np.cos(3 * x)).max())
    order = np.log2(errors[0] / errors[1])
    assert abs(order - acc) < 0.3, order


@pytest.mark.parametrize("acc", ACCURACIES[1:])
@pytest.mark.parametrize("grid", ["uniform", "coordinates"])
def test_measured_order_is_p_in_the_interior_and_at_the_edges(acc, grid):
    m = acc // 2
    errors_interior, errors_edge = [], []
    for n in (41, 81):
        t = np.linspace(0.0, 1.0, n)
        # a smooth stretched grid keeps the order of the coordinate formulas
        x = t if grid == "uniform" else t + 0.1 * np.sin(np.pi * t)
        spacing = t[1] - t[0] if grid == "uniform" else x
        g = cugrad.gradient(np.exp(np.sin(2 * x)), spacing, accuracy=acc)
        err = np.abs(g - 2 * np.cos(2 * x) * np.exp(np.sin(2 * x)))
        errors_interior.append(err[m:-m].max())
        errors_edge.append(max(err[:m].max(), err[-m:].max()))
    for errors in (errors_interior, errors_edge):
        order = np.log2(errors[0] / errors[1])
        assert order > acc - 0.6, (errors, order)


# --------------------------------------------------------------------------------------------------
# findiff, an independent implementation
# --------------------------------------------------------------------------------------------------

findiff = pytest.importorskip("findiff")


@pytest.mark.parametrize("acc", ACCURACIES)
@pytest.mark.parametrize("periodic", [False, True])
def test_agrees_with_findiff_on_uniform_grids(acc, periodic):
    f = random_field((24, 30), np.float64, "findiff")
    boundary = "periodic" if periodic else "edge"
    g0, g1 = cugrad.gradient(f, 0.5, 2.0, accuracy=acc, boundary=boundary)
    d0 = findiff.Diff(0, 0.5, acc=acc, periodic=periodic)(f)
    d1 = findiff.Diff(1, 2.0, acc=acc, periodic=periodic)(f)
    # findiff's edges are forward/backward stencils from each row; cugrad's are off-centre on the
    # nearest points (both order p), so the edges are compared with the polynomial tests instead.
    m = 0 if periodic else acc // 2
    inner = slice(m, -m or None)
    # findiff solves for its weights in floating point (1e-13 off at accuracy 8): compare to 1e-12
    # of the largest derivative.
    np.testing.assert_allclose(g0[inner], d0[inner], rtol=0, atol=1e-12 * np.abs(d0).max())
    np.testing.assert_allclose(g1[:, inner], d1[:, inner], rtol=0, atol=1e-12 * np.abs(d1).max())


@pytest.mark.parametrize("acc", [2, 4, 6])
def test_agrees_with_findiff_on_coordinate_grids(acc):
    x = np.sort(stable_rng("fd coords").uniform(0, 3, 40))
    f = np.sin(x)[:, None] * np.ones(5)
    g = cugrad.gradient(f, x, axis=0, accuracy=acc)
    d = findiff.Diff(0, x, acc=acc)(f)
    m = max(acc // 2, 1)
    np.testing.assert_allclose(g[m:-m], d[m:-m], rtol=1e-9, atol=1e-11)


# --------------------------------------------------------------------------------------------------
# The operation order, bit for bit, against a reference written from its definition
# --------------------------------------------------------------------------------------------------


def reference_uniform(f, h, acc, periodic):
    """1-D float64 reference from README's definition and the literature's weight tables."""
    n, m = len(f), acc // 2
    out = np.empty(n)
    central = [float(c / Fraction(h)) for c in CENTRAL[acc]]
    for i in range(n):
        if periodic and acc == 2:
            out[i] = (f[(i + 1) % n] - f[(i - 1) % n]) / (2.0 * h)
        elif periodic or m <= i < n - m:
            total = None
            for k, w in enumerate(central, start=1):
                term = w * (f[(i + k) % n] - f[(i - k) % n])
                total = term if total is None else total + term
            out[i] = total
        else:
            continue
    return out


@pytest.mark.parametrize("acc", ACCURACIES)
@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("h", [1.0, 0.3, 7.0])
def test_uniform_operation_order_bit_for_bit(acc, periodic, h):
    if acc == 2 and not periodic:
        pytest.skip("numpy's own formulas; covered by the parity suite")
    f = random_field((50,), np.float64, "order", acc)
    expected = reference_uniform(f, h, acc, periodic)
    result = cugrad.gradient(f, h, accuracy=acc, boundary="periodic" if periodic else "edge")
    rows = slice(None) if periodic else slice(acc // 2, -(acc // 2))
    assert_bits(result[rows], expected[rows])


@pytest.mark.parametrize("acc", [4, 6])
def test_first_row_uses_the_forward_weights_of_the_literature(acc):
    f = random_field((30,), np.float64, "forward", acc)
    h = 0.25
    w = [float(Fraction(c) / Fraction(h)) for c in FORWARD[acc]]
    # row 0: sum over the other points o of w_o * (f[o] - f[0]), o ascending
    total = None
    for o in range(1, acc + 1):
        term = w[o] * (f[o] - f[0])
        total = term if total is None else total + term
    result = cugrad.gradient(f, h, accuracy=acc)
    assert_bits(result[:1], np.array([total]))
    # the last row mirrors it
    g = cugrad.gradient(f[::-1].copy(), h, accuracy=acc)
    total = None
    for o in range(acc, 0, -1):  # offsets -p .. -1, ascending
        term = -w[o] * (f[o] - f[0])
        total = term if total is None else total + term
    assert_bits(g[-1:], np.array([total]))


def test_constant_fields_have_exactly_zero_derivative():
    # accuracy >= 4 sums weighted differences; numpy's accuracy-2 coordinate formula (a weighted
    # sum of values) is kept as numpy's and gives rounding-size values instead.
    x = np.sort(stable_rng("const").uniform(0, 5, 30))
    f = np.full((30, 10), 3.7)
    for acc in ACCURACIES[1:]:
        for boundary, period in (("edge", None), ("periodic", 9.0)):
            g = cugrad.gradient(f, x, 0.1, accuracy=acc, boundary=boundary, period=period)
            assert all(np.array_equal(a, np.zeros_like(a)) for a in g)


# --------------------------------------------------------------------------------------------------
# Periodic semantics
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("acc", ACCURACIES)
@pytest.mark.parametrize("shift", [1, 5, -3])
def test_periodic_results_shift_with_the_data(acc, shift):
    f = random_field((16, 21), np.float32, "shift", acc)
    g = cugrad.gradient(f, 0.5, axis=1, accuracy=acc, boundary="periodic")
    rolled = cugrad.gradient(np.roll(f, shift, axis=1), 0.5, axis=1, accuracy=acc,
                             boundary="periodic")
    assert_bits(rolled, np.roll(g, shift, axis=1))


def test_longitude_coordinates_with_their_period_are_scalar_spacing():
    lon = np.arange(0.0, 360.0, 2.5)
    f = random_field((7, lon.size), np.float64, "lon")
    for acc in ACCURACIES:
        by_coords = cugrad.gradient(f, lon, axis=1, accuracy=acc, boundary="periodic", period=360)
        by_spacing = cugrad.gradient(f, 2.5, axis=1, accuracy=acc, boundary="periodic")
        assert_bits(by_coords, by_spacing)


def test_periodic_coordinates_wrap_by_the_period():
    # x = 0, 1, 3 with period 5: the point after 3 is 5 (= 0 + 5), so the wrap distance is 2.
    x = np.array([0.0, 1.0, 3.0])
    f = np.sin(2 * np.pi * x / 5)
    g = cugrad.gradient(f, x, boundary="periodic", period=5)
    # numpy's three-point coordinate formula with dx1, dx2 = (2, 1), (1, 2), (2, 2)
    def three_point(fm, f0, fp, dx1, dx2):
        return (-(dx2) / (dx1 * (dx1 + dx2)) * fm + (dx2 - dx1) / (dx1 * dx2) * f0
                + dx1 / (dx2 * (dx1 + dx2)) * fp)
    expected = [three_point(f[2], f[0], f[1], 2.0, 1.0), three_point(f[0], f[1], f[2], 1.0, 2.0),
                three_point(f[1], f[2], f[0], 2.0, 2.0)]
    assert_bits(g, np.array(expected))
    # descending coordinates wrap the other way
    gd = cugrad.gradient(f[::-1].copy(), x[::-1].copy(), boundary="periodic", period=5)
    np.testing.assert_allclose(gd, g[::-1], rtol=1e-14)


# --------------------------------------------------------------------------------------------------
# dtypes, layouts, return forms, out=/stack=, dask
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.complex64, np.complex128,
                                   np.int32, np.uint8])
def test_dtypes_follow_numpy(dtype):
    f = random_field((12, 10), dtype, "dtypes")
    g = cugrad.gradient(f, 0.5, accuracy=4)
    expected_dtype = np.gradient(f, 0.5)[0].dtype
    assert all(a.dtype == expected_dtype for a in g)
    # integers compute in float64 without wrapping around: the same as float64 data
    if np.dtype(dtype).kind in "iu":
        for a, b in zip(g, cugrad.gradient(f.astype(np.float64), 0.5, accuracy=4), strict=True):
            assert_bits(a, b)


def test_python_float_keeps_float32_and_numpy_float64_computes_in_float64():
    f = random_field((40,), np.float32, "nep50")
    weak = cugrad.gradient(f, 0.1, accuracy=4)
    strong = cugrad.gradient(f, np.float64(0.1), accuracy=4)
    assert weak.dtype == strong.dtype == np.float32
    # float64 arithmetic rounded once: the float64 computation of the float64 data, rounded
    wide = cugrad.gradient(f.astype(np.float64), np.float64(0.1), accuracy=4)
    # differences of float32 values are exact in float64 only when computed in float64; cugrad
    # subtracts in the data dtype, so compare the values, and the dtypes above
    np.testing.assert_allclose(strong, wide.astype(np.float32), rtol=1e-6)
    assert not np.array_equal(bits(weak), bits(strong))


@pytest.mark.parametrize("acc", [4, 8])
@pytest.mark.parametrize("boundary", ["edge", "periodic"])
def test_layouts_and_threads_give_the_same_bits(acc, boundary, monkeypatch):
    from cugrad import _numpy_backend

    f = random_field((64, 48, 40), np.float64, "layouts")
    expected = cugrad.gradient(f, 0.5, 1.5, 2.0, accuracy=acc, boundary=boundary)
    monkeypatch.setattr(_numpy_backend, "PARALLEL_MIN_ELEMENTS", 1)
    monkeypatch.setattr(_numpy_backend, "SLAB_BYTES", 4096)
    for view in (np.asfortranarray(f), f[::-1, :, ::-1][::-1, :, ::-1], f.copy()):
        result = cugrad.gradient(view, 0.5, 1.5, 2.0, accuracy=acc, boundary=boundary)
        for r, e in zip(result, expected, strict=True):
            assert_bits(r, e)


def test_out_and_stack_with_options():
    f = random_field((20, 25), np.float32, "out")
    expected = cugrad.gradient(f, accuracy=6, boundary=("periodic", "edge"))
    out = (np.empty_like(f), np.empty_like(f))
    result = cugrad.gradient(f, accuracy=6, boundary=("periodic", "edge"), out=out)
    assert result[0] is out[0] and result[1] is out[1]
    stacked = cugrad.gradient(f, accuracy=6, boundary=("periodic", "edge"), stack=True)
    for k in range(2):
        assert_bits(out[k], expected[k])
        assert_bits(stacked[k], expected[k])
    one = cugrad.gradient(f, axis=1, accuracy=4)
    assert isinstance(one, np.ndarray) and one.shape == f.shape


@pytest.mark.parametrize("chunks", [(1, 1), (3, 4), (20, 25), (7, 2)])
@pytest.mark.parametrize(
    "options",
    [dict(accuracy=4), dict(accuracy=8, boundary="periodic", period=(None, 60.0)),
     dict(accuracy=2, boundary="periodic", period=(None, 60.0)),
     dict(accuracy=6, boundary=("edge", "periodic"), period=(None, 60.0))],
)
def test_dask_is_bit_identical_for_any_chunking(chunks, options):
    da = pytest.importorskip("dask.array")
    f = random_field((20, 25), np.float64, "dask")
    x = np.cumsum(stable_rng("dask x").random(25)) + 1
    expected = cugrad.gradient(f, 0.5, x, **options)
    result = da.compute(*cugrad.gradient(da.from_array(f, chunks=chunks), 0.5, x, **options))
    for r, e in zip(result, expected, strict=True):
        assert_bits(r, e)


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(accuracy=3), "accuracy must be 2, 4, 6 or 8"),
        (dict(accuracy=10), "accuracy must be 2, 4, 6 or 8"),
        (dict(accuracy=4.0), "accuracy must be 2, 4, 6 or 8"),
        (dict(accuracy=True), "accuracy must be 2, 4, 6 or 8"),
        (dict(boundary="wrap"), "unknown boundary 'wrap'"),
        (dict(boundary=("edge",)), "boundary has 1 entries for 2 differentiated axes"),
        (dict(boundary="periodic", period=(1.0,)), "period has 1 entries for 2"),
        (dict(period=10.0), "period is only used with boundary='periodic'"),
        (dict(boundary=("edge", "periodic"), period=(5.0, None)), "period is given for axis 0"),
        (dict(boundary="periodic", period=-1.0), "positive finite number"),
        (dict(accuracy=4, edge_order=2), "leave edge_order at its default"),
        (dict(accuracy=8, axis=0), "axis 0 has 6 points, but accuracy=8 .* needs at least 9"),
    ],
)
def test_bad_options_raise_value_error_saying_what_to_pass(kwargs, match):
    f = np.zeros((6, 12))
    with pytest.raises(ValueError, match=match):
        cugrad.gradient(f, **kwargs)


def test_periodic_coordinates_need_a_period_longer_than_their_span():
    x = np.linspace(0, 10, 12)
    f = np.zeros(12)
    with pytest.raises(ValueError, match="pass period="):
        cugrad.gradient(f, x, boundary="periodic")
    with pytest.raises(ValueError, match="must exceed the coordinate span"):
        cugrad.gradient(f, x, boundary="periodic", period=10.0)
    with pytest.raises(ValueError, match="which has scalar spacing"):
        cugrad.gradient(np.zeros((12, 12)), 1.0, x, boundary="periodic", period=(20.0, 20.0))


def test_spacing_and_data_the_options_cannot_take():
    f = np.zeros(12)
    with pytest.raises(TypeError, match="must be a real number"):
        cugrad.gradient(f, 1j, accuracy=4)
    with pytest.raises(ValueError, match="finite and non-zero"):
        cugrad.gradient(f, 0.0, accuracy=4)
    with pytest.raises(ValueError, match="coordinates must be distinct"):
        cugrad.gradient(f, np.array([0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10.0]), accuracy=4)
    with pytest.raises(TypeError, match="need numeric data"):
        cugrad.gradient(np.arange(12).astype("datetime64[s]"), accuracy=4)
    with pytest.raises(TypeError, match="need numeric data"):
        cugrad.gradient(np.ma.masked_array(np.zeros(12)), accuracy=4)
