"""Derived operators against their numpy compositions, polynomials, convergence and findiff.

The oracle of gradient_magnitude, divergence and curl is the composition the docs write down, over
numpy.gradient (or over cugrad.gradient for the options numpy lacks), with numpy's arithmetic in the
result dtype: the result must be equal bit for bit. The Laplacian's oracles are exact polynomials,
measured convergence orders and findiff.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from conftest import random_field, stable_rng

import cugrad


def same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


SHAPE = (14, 17, 11)
COORDS = np.cumsum(stable_rng("op coords").random(17)) + 0.5
SPACINGS = {
    "none": (),
    "scalar": (0.5,),
    "per-axis": (np.float64(0.25), COORDS, 2.0),
}


@pytest.fixture(params=["small", "slabs"])
def path(request, monkeypatch):
    """Whole-array execution, and slabs on worker threads (as for large arrays)."""
    if request.param == "slabs":
        from cugrad import _numpy_backend

        monkeypatch.setattr(_numpy_backend, "PARALLEL_MIN_ELEMENTS", 1)
        monkeypatch.setattr(_numpy_backend, "SLAB_BYTES", 2048)
    return request.param


def layouts(a):
    return {"C": a, "F": np.asfortranarray(a), "reversed": a[::-1, :, ::-1].copy()[::-1, :, ::-1]}


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # float16 squares
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32])
@pytest.mark.parametrize("spacing", sorted(SPACINGS))
@pytest.mark.parametrize("edge_order", [1, 2])
def test_magnitude_is_numpys_composition(dtype, spacing, edge_order, path):
    f = random_field(SHAPE, dtype, "mag")
    g = np.gradient(f, *SPACINGS[spacing], edge_order=edge_order)
    expected = np.sqrt((g[0] * g[0] + g[1] * g[1]) + g[2] * g[2])
    for view in layouts(f).values():
        same(cugrad.gradient_magnitude(view, *SPACINGS[spacing], edge_order=edge_order), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize("spacing", sorted(SPACINGS))
@pytest.mark.parametrize("edge_order", [1, 2])
def test_divergence_and_curl_are_numpys_compositions(dtype, spacing, edge_order, path):
    F = [random_field(SHAPE, dtype, "F", i) for i in range(3)]
    sp = SPACINGS[spacing]

    def d(i, ax):
        args = sp if len(sp) <= 1 else (sp[ax],)
        return np.gradient(F[i], *args, axis=ax, edge_order=edge_order)

    same(cugrad.divergence(F, *sp, edge_order=edge_order), (d(0, 0) + d(1, 1)) + d(2, 2))
    expected = (d(2, 1) - d(1, 2), d(0, 2) - d(2, 0), d(1, 0) - d(0, 1))
    result = cugrad.curl(F, *sp, edge_order=edge_order)
    for r, e in zip(result, expected, strict=True):
        same(r, e)
    stacked = cugrad.curl(np.stack([np.asfortranarray(c) for c in F]), *sp, edge_order=edge_order,
                          stack=True)
    assert stacked.shape == (3,) + SHAPE
    for k in range(3):
        same(stacked[k], expected[k])


def test_two_d_curl_is_the_vorticity_with_its_handedness():
    # Solid-body rotation counter-clockwise in (x, y): u = -omega*y, v = omega*x; vorticity 2*omega.
    y, x = np.mgrid[0:20, 0:30].astype(float)
    dy, dx = 0.5, 0.25
    u, v = -3.0 * (y * dy), 3.0 * (x * dx)
    vort = cugrad.curl([u, v], dx, dy, axis=(1, 0))
    np.testing.assert_allclose(vort, 6.0)
    expected = np.gradient(v, dx, axis=1) - np.gradient(u, dy, axis=0)
    same(vort, expected)


@pytest.mark.parametrize(
    "options",
    [dict(accuracy=4), dict(accuracy=6, boundary="periodic"),
     dict(boundary=("periodic", "edge", "periodic"), period=(None, None, None))],
)
def test_options_pass_through_as_compositions_over_cugrad_gradient(options, path):
    F = [random_field(SHAPE, np.float32, "opt", i) for i in range(3)]
    g = cugrad.gradient(F[0], 0.5, **options)
    same(cugrad.gradient_magnitude(F[0], 0.5, **options),
         np.sqrt((g[0] * g[0] + g[1] * g[1]) + g[2] * g[2]))

    def d(i, ax):
        b = options.get("boundary", "edge")
        b = b if isinstance(b, str) else b[ax]
        return cugrad.gradient(F[i], 0.5, axis=ax, accuracy=options.get("accuracy", 2),
                               boundary=b)

    same(cugrad.divergence(F, 0.5, **options), (d(0, 0) + d(1, 1)) + d(2, 2))
    same(cugrad.curl(F, 0.5, **options)[1], d(0, 2) - d(2, 0))


def test_laplacian_exact_for_cubics_on_uniform_grids_and_quadratics_on_coordinates():
    x = np.linspace(-1, 2, 9)
    for degree in range(4):
        coef = np.arange(1.0, degree + 2)
        f = np.polynomial.polynomial.polyval(x, coef)
        d2 = np.polynomial.polynomial.polyval(x, np.polynomial.polynomial.polyder(coef, 2))
        np.testing.assert_allclose(cugrad.laplacian(f, x[1] - x[0]), d2, atol=1e-9)
    xs = np.sort(stable_rng("lap x").uniform(-1, 2, 12))
    for degree in range(3):
        coef = np.arange(1.0, degree + 2)
        f = np.polynomial.polynomial.polyval(xs, coef)
        d2 = np.polynomial.polynomial.polyval(xs, np.polynomial.polynomial.polyder(coef, 2))
        np.testing.assert_allclose(cugrad.laplacian(f, xs), d2, atol=1e-8)
    # not exact for a quartic: the test can fail
    assert np.abs(cugrad.laplacian(x**4, x[1] - x[0]) - 12 * x**2).max() > 1e-3


@pytest.mark.parametrize("acc", [2, 4, 6, 8])
def test_laplacian_uniform_formulas(acc):
    # accuracy 2 interior is (f[i+1] - 2 f[i] + f[i-1]) / h**2, the ends (2 f0 - 5 f1 + 4 f2 - f3) / h**2
    f = random_field((30,), np.float64, "lap2")
    h = 0.5
    lap = cugrad.laplacian(f, h, accuracy=acc)
    if acc == 2:
        np.testing.assert_allclose(lap[1:-1], (f[2:] - 2 * f[1:-1] + f[:-2]) / h**2, rtol=1e-12)
        np.testing.assert_allclose(lap[0], (2 * f[0] - 5 * f[1] + 4 * f[2] - f[3]) / h**2,
                                   rtol=1e-12)
        np.testing.assert_allclose(lap[-1], (2 * f[-1] - 5 * f[-2] + 4 * f[-3] - f[-4]) / h**2,
                                   rtol=1e-12)
    # degree p + 1 polynomials are exact on every row (p + 2 points at the ends)
    x = np.arange(2 * acc + 4) * h
    coef = np.linspace(1, 2, acc + 2)
    f = np.polynomial.polynomial.polyval(x, coef)
    d2 = np.polynomial.polynomial.polyval(x, np.polynomial.polynomial.polyder(coef, 2))
    np.testing.assert_allclose(cugrad.laplacian(f, h, accuracy=acc), d2, rtol=1e-8, atol=1e-6)


@pytest.mark.parametrize("acc", [2, 4, 6])
def test_laplacian_convergence_order(acc):
    errors = []
    for n in (33, 65):
        x = np.linspace(0, 1, n)
        f = np.sin(3 * x)[:, None] * np.cos(2 * x)[None, :]
        exact = -13 * f
        lap = cugrad.laplacian(f, x[1] - x[0], x[1] - x[0], accuracy=acc)
        errors.append(np.abs(lap - exact).max())
    order = np.log2(errors[0] / errors[1])
    assert order > acc - 0.6, (errors, order)


def test_laplacian_agrees_with_findiff_and_is_zero_for_constants():
    findiff = pytest.importorskip("findiff")
    f = random_field((20, 24), np.float64, "fd lap")
    for acc in (2, 4, 6):
        for periodic in (False, True):
            lap = cugrad.laplacian(f, 0.5, 2.0, accuracy=acc,
                                   boundary="periodic" if periodic else "edge")
            ref = (findiff.Diff(0, 0.5, acc=acc, periodic=periodic) ** 2
                   + findiff.Diff(1, 2.0, acc=acc, periodic=periodic) ** 2)(f)
            m = 0 if periodic else acc // 2
            inner = (slice(m, -m or None), slice(m, -m or None))
            np.testing.assert_allclose(lap[inner], ref[inner], rtol=0,
                                       atol=1e-11 * np.abs(ref).max())
    const = np.full((12, 12), 2.5)
    assert not cugrad.laplacian(const, 0.1, COORDS[:12], accuracy=4).any()


@pytest.mark.parametrize("chunks", [(1, 3, 11), (5, 17, 2), (14, 17, 11)])
def test_dask_results_are_the_in_memory_results(chunks):
    da = pytest.importorskip("dask.array")
    F = [random_field(SHAPE, np.float64, "dask op", i) for i in range(3)]
    D = [da.from_array(c, chunks=chunks) for c in F]
    sp = (0.5, COORDS, 2.0)
    same(cugrad.gradient_magnitude(D[0], *sp).compute(), cugrad.gradient_magnitude(F[0], *sp))
    same(cugrad.divergence(D, *sp).compute(), cugrad.divergence(F, *sp))
    for r, e in zip(cugrad.curl(D, *sp), cugrad.curl(F, *sp), strict=True):
        same(r.compute(), e)
    same(cugrad.laplacian(D[0], *sp, accuracy=4).compute(), cugrad.laplacian(F[0], *sp, accuracy=4))
    same(cugrad.laplacian(D[0], 1.0, accuracy=2, boundary="periodic").compute(),
         cugrad.laplacian(F[0], 1.0, accuracy=2, boundary="periodic"))


def test_torch_cpu_tensors_come_back_as_tensors():
    torch = pytest.importorskip("torch")
    f = random_field((20, 30), np.float32, "torch")
    t = torch.from_numpy(f)
    result = cugrad.gradient_magnitude(t, 0.5)
    assert isinstance(result, torch.Tensor)
    same(result.numpy(), cugrad.gradient_magnitude(f, 0.5))


def test_out_is_written_only_after_validation_and_returned():
    F = [random_field(SHAPE, np.float64, "out", i) for i in range(3)]
    out = np.full(SHAPE, 7.0)
    assert cugrad.divergence(F, out=out) is out
    same(out, cugrad.divergence(F))
    bad = np.full(SHAPE, 7.0, dtype=np.float32)
    with pytest.raises(TypeError, match="dtype"):
        cugrad.divergence(F, out=bad)
    assert (bad == 7.0).all()
    # an out that is one of the inputs still gives the right answer
    expected = cugrad.laplacian(F[0])
    g = F[0].copy()
    cugrad.laplacian(g, out=g)
    same(g, expected)


def test_no_full_size_temporary():
    f = random_field((128, 128, 128), np.float64, "memory")
    out = np.empty_like(f)
    cugrad.gradient_magnitude(f, out=out)  # warm up the thread pool
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    cugrad.gradient_magnitude(f, out=out)
    extra = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    # slab-sized buffers per worker thread only; the composition holds three full-size gradients
    assert extra < 0.5 * f.nbytes, extra


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda F: cugrad.divergence(F[:2]), ValueError, "needs 2 axes, one per component"),
        (lambda F: cugrad.divergence([F[0], F[1][:5], F[2]]), ValueError, "same shape"),
        (lambda F: cugrad.divergence([F[0], F[1].astype(np.float32), F[2]]), TypeError,
         "one dtype"),
        (lambda F: cugrad.curl(F[:1], axis=(0,)), ValueError, "2 or 3 components"),
        (lambda F: cugrad.curl(F + F[:1], axis=(0, 1, 2, 0)), ValueError, "2 or 3 components"),
        (lambda F: cugrad.gradient_magnitude(F[0] + 1j), TypeError, "real data"),
        (lambda F: cugrad.curl(F, stack="yes"), TypeError, "stack must be True or False"),
        (lambda F: cugrad.laplacian(F[0], accuracy=5), ValueError, "accuracy must be"),
        (lambda F: cugrad.laplacian(F[0][:3], axis=0), ValueError, "needs at least 4"),
    ],
)
def test_bad_input(call, error, match):
    F = [random_field(SHAPE, np.float64, "bad", i) for i in range(3)]
    with pytest.raises(error, match=match):
        call(F)


def test_readme_vorticity_example_runs_and_says_what_it_prints():
    from pathlib import Path

    readme = Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():
        pytest.skip("README.md is not next to the tests (installed copy)")
    text = readme.read_text()
    section = text[text.index("## Derived operators"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[: code.index("```")]
    namespace: dict = {}
    exec(compile(code, "README vorticity example", "exec"), namespace)
    np.testing.assert_allclose(namespace["zeta"], 2e-4, rtol=1e-12)
    assert not namespace["div"].any()
    assert namespace["speed_grad"].shape == (180, 360)


def test_backend_cupy_without_a_gpu_says_so_and_writes_nothing():
    from cugrad import _backend

    if _backend.gpu_status()[0]:
        pytest.skip("a GPU is usable here")
    f = random_field((10, 12), np.float64, "no gpu")
    out = np.full(f.shape, 3.0)
    with pytest.raises(RuntimeError):
        cugrad.laplacian(f, out=out, backend="cupy")
    assert (out == 3.0).all()
