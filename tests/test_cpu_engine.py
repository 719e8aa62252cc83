"""The compiled CPU engine (numba): when it runs, when it hands over to the NumPy backend, and that
what it computes is numpy.gradient's bits in the cases its own code paths add (layouts, threads,
slabs, floating-point events). The parity and stencil suites also run on it (conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import NUMBA_MISSING, assert_same, numba_installed, random_field, stable_rng

import cugrad
from cugrad import _numba_backend

needs_numba = pytest.mark.skipif(not numba_installed(), reason=NUMBA_MISSING)


def engine_ran(fn):
    before = _numba_backend.calls
    result = fn()
    return result, _numba_backend.calls > before


def test_import_cugrad_does_not_import_numba():
    code = ("import sys, numpy as np, cugrad; cugrad.gradient(np.arange(10.0)); "
            "cugrad.gradient(np.ones((4, 5)), out=(np.empty((4, 5)), np.empty((4, 5)))); "
            "assert 'numba' not in sys.modules, 'numba imported'")
    env = {k: v for k, v in os.environ.items() if k != "CUGRAD_CPU_ENGINE"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_bad_engine_name_is_a_value_error(monkeypatch):
    monkeypatch.setenv("CUGRAD_CPU_ENGINE", "fast")
    with pytest.raises(ValueError, match="CUGRAD_CPU_ENGINE must be one of auto, numba, numpy"):
        cugrad.gradient(np.ones((4, 5)), out=(np.empty((4, 5)), np.empty((4, 5))))


def test_asking_for_numba_without_it_says_what_to_install(monkeypatch):
    monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numba")
    monkeypatch.setattr(_numba_backend, "available", lambda: False)
    with pytest.raises(RuntimeError, match=r"pip install numba \(or pip install \".\[cpu\]\""):
        cugrad.gradient(np.ones((4, 5)))
    # what the engine does not take still runs (the NumPy backend), numba or not
    f = np.ones((4, 5), np.float16)
    assert_same(cugrad.gradient(f), np.gradient(f))


@needs_numba
@pytest.mark.parametrize(("engine", "size", "expected"), [
    ("numpy", 1 << 10, False), ("numba", 1 << 10, True), ("auto", 1 << 10, False),
    ("auto", 1 << 12, True), (None, 1 << 12, True),
])
def test_engine_choice(monkeypatch, engine, size, expected):
    monkeypatch.setattr(_numba_backend, "ENGINE_MIN_ELEMENTS", 1 << 12)
    _numba_backend.warm_up()  # loaded: the lower threshold applies
    if engine is None:
        monkeypatch.delenv("CUGRAD_CPU_ENGINE", raising=False)
    else:
        monkeypatch.setenv("CUGRAD_CPU_ENGINE", engine)
    f = random_field((size // 32, 32), np.float32, "choice")
    result, ran = engine_ran(lambda: cugrad.gradient(f, 0.5))
    assert ran is expected
    assert_same(result, np.gradient(f, 0.5))


@needs_numba
@pytest.mark.parametrize("case", ["float16", "complex64", "byteswapped", "five_dims", "raise",
                                  "warnings_as_errors", "underflow_reported", "longdouble"])
def test_cases_the_engine_hands_to_the_numpy_backend(monkeypatch, case):
    monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numba")
    f = random_field((6, 7), np.float64, "fallback")
    context = warnings.catch_warnings()
    state = np.errstate()
    if case in ("float16", "complex64", "longdouble"):
        f = f.astype(case)
    elif case == "byteswapped":
        f = f.astype(">f8")
    elif case == "five_dims":
        f = random_field((2, 3, 2, 3, 4, 2), np.float64, "fallback")
    elif case == "raise":
        state = np.errstate(all="raise")
    elif case == "underflow_reported":
        state = np.errstate(under="warn")
    with context, state:
        if case == "warnings_as_errors":
            warnings.simplefilter("error", RuntimeWarning)
        result, ran = engine_ran(lambda: cugrad.gradient(f, 0.5))
    assert not ran
    assert_same(result, np.gradient(f, 0.5))


@needs_numba
def test_floating_point_events_are_reported_as_numpy_reports_them(monkeypatch):
    monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numba")
    f = random_field((40, 30), np.float32, "events")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        expected = np.gradient(f, 0.0, 1.0)
    assert any("divide by zero" in str(w.message) for w in seen)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result, ran = engine_ran(lambda: cugrad.gradient(f, 0.0, 1.0))
    assert ran  # the engine ran, wrote infinities, and the NumPy backend recomputed with warnings
    assert any("divide by zero" in str(w.message) for w in seen)
    assert_same(result, expected)
    # With the events ignored, the engine's own result stands (no recomputation, same bits).
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(cugrad.gradient(f, 0.0, 1.0), expected)
    # NaN data raise no event: no warning, the engine's result.
    g = f.copy()
    g[3, 4] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = np.gradient(g, 0.5)
        assert_same(cugrad.gradient(g, 0.5), expected)


@needs_numba
@pytest.mark.parametrize("layout", ["C", "F", "reversed", "strided", "transposed"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint64])
def test_layouts_threads_and_slabs(monkeypatch, layout, dtype):
    monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numba")
    monkeypatch.setenv("CUGRAD_NUM_THREADS", "3")
    monkeypatch.setattr(_numba_backend, "PARALLEL_MIN_ELEMENTS", 1)
    monkeypatch.setattr(_numba_backend, "SLAB_BYTES", 2048)  # many slabs, handed out dynamically
    f = random_field((23, 17, 12), dtype, "layouts")
    f = {"C": f, "F": np.asfortranarray(f), "reversed": f[::-1, :, ::-1],
         "strided": f[:, ::2, :], "transposed": f.transpose(2, 0, 1)}[layout]
    x = np.cumsum(stable_rng("x", f.shape[1]).random(f.shape[1])) + 1
    for varargs, options in [((0.5,), {}), ((1.0, x, np.float64(2.0)), {"edge_order": 2})]:
        result, ran = engine_ran(lambda v=varargs, o=options: cugrad.gradient(f, *v, **o))
        assert ran
        assert_same(result, np.gradient(f, *varargs, **options))
        stacked = cugrad.gradient(f, *varargs, stack=True, **options)  # C-order outputs
        assert_same(tuple(stacked), np.gradient(f, *varargs, **options))
    period = (None, 100.0, None)
    for options in [{"accuracy": 8}, {"accuracy": 4, "boundary": "periodic", "period": period},
                    {"accuracy": 6, "boundary": ("edge", "periodic", "edge"), "period": period},
                    {"boundary": ("periodic", "periodic", "edge"), "period": period}]:
        spacing = (0.5, x, 2.0)
        monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numpy")
        expected = cugrad.gradient(f, *spacing, **options)
        monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numba")
        result, ran = engine_ran(lambda o=options, s=spacing: cugrad.gradient(f, *s, **o))
        assert ran
        assert_same(result, expected)


@needs_numba
def test_nep50_float32_data_computed_in_float64_and_rounded_once(monkeypatch):
    monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numba")
    f = random_field((64, 50), np.float32, "nep50")
    x = np.cumsum(stable_rng("nep50 x").random(50)) + 1  # float64 coordinates: float64 weights
    for varargs in [(np.float64(0.1), x), (0.1, x.astype(np.float32)), (np.float64(0.1), 0.1)]:
        for edge_order in (1, 2):
            result, ran = engine_ran(lambda v=varargs, e=edge_order: cugrad.gradient(
                f, *v, edge_order=e))
            assert ran
            assert_same(result, np.gradient(f, *varargs, edge_order=edge_order))
    # the cases differ, so computing in the wrong dtype would be seen
    assert not np.array_equal(np.gradient(f, np.float64(0.1), x)[0], np.gradient(f, 0.1, x)[0])


@needs_numba
def test_out_overlapping_the_input(monkeypatch):
    monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numba")
    buf = random_field((2, 30, 20), np.float64, "overlap")
    expected = np.gradient(buf[0].copy(), 0.5)
    out = (buf[0], buf[1])  # out[0] is the input itself
    result = cugrad.gradient(buf[0], 0.5, out=out)
    assert_same(result, expected)


@needs_numba
def test_three_compiled_signatures_serve_every_dtype_layout_and_read_only_input(monkeypatch):
    monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numba")
    seconds = _numba_backend.warm_up()
    assert list(seconds) == [name for name, _, _ in _numba_backend.SIGNATURES]
    kernel = _numba_backend._kernels().slab_axes
    before = set(kernel.signatures)
    assert len(before) == 3
    f = random_field((9, 8, 7), np.float64, "signatures")
    read_only = np.asfortranarray(f)[::-1]
    read_only.flags.writeable = False
    for g in (f, read_only, f.astype(np.float32), f.astype(np.int32), f.astype(np.uint8)):
        result, ran = engine_ran(lambda g=g: cugrad.gradient(g, 0.5, accuracy=4))
        assert ran
    for axis in (0, (2, 1), (0, 1, 2)):  # any number of axes: one signature
        result, ran = engine_ran(lambda axis=axis: cugrad.gradient(f, 0.5, axis=axis))
        assert ran
    assert set(kernel.signatures) == before  # no compilation beyond warm_up's


@needs_numba
@needs_numba
def test_auto_waits_for_a_large_array_before_loading_numba():
    # In a fresh process: a middle-sized array stays on the NumPy backend (numba is not imported),
    # a large one loads the engine, after which the middle-sized one uses it too.
    code = """if True:
        import os, sys, numpy as np, cugrad
        from cugrad import _numba_backend as nb
        os.environ.pop("CUGRAD_CPU_ENGINE", None)
        nb.ENGINE_COLD_MIN_ELEMENTS = 1 << 19
        middle, large = np.ones((64, 64, 64)), np.ones((128, 64, 64))
        cugrad.gradient(middle)
        assert nb.calls == 0 and "numba" not in sys.modules
        cugrad.gradient(large)
        assert nb.calls == 1
        cugrad.gradient(middle)
        assert nb.calls == 2
    """
    subprocess.run([sys.executable, "-c", code], check=True)


@needs_numba
def test_info_names_numba_and_its_cache(monkeypatch):
    monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numba")
    report = _numba_backend.info()
    assert report["available"] is True and report["engine"] == "numba"
    assert report["numba"] and report["cache_dir"]
    monkeypatch.setenv("CUGRAD_CPU_ENGINE", "fast")
    assert _numba_backend.info()["engine"].startswith("invalid")


@needs_numba
def test_kernels_that_cannot_load_leave_auto_on_the_numpy_backend(monkeypatch):
    # e.g. numba finds no writable cache directory for cache=True functions
    def fail():
        raise RuntimeError("cannot cache function: no locator available")

    monkeypatch.setattr(_numba_backend, "_kernels", fail)
    monkeypatch.setattr(_numba_backend, "_load_error", None)
    monkeypatch.setattr(_numba_backend, "ENGINE_MIN_ELEMENTS", 1)
    monkeypatch.setattr(_numba_backend, "ENGINE_COLD_MIN_ELEMENTS", 1)
    monkeypatch.setenv("CUGRAD_CPU_ENGINE", "auto")
    f = random_field((20, 30), np.float64, "load error")
    result, ran = engine_ran(lambda: cugrad.gradient(f, 0.5))
    assert not ran
    assert_same(result, np.gradient(f, 0.5))
    assert "no locator" in _numba_backend.info()["load_error"]
    monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numba")
    with pytest.raises(RuntimeError, match="NUMBA_CACHE_DIR"):
        cugrad.gradient(f, 0.5)


def _operator_cases(f, comps):
    return {
        # the numpy compositions the operators' docs define, over numpy.gradient
        "magnitude": (lambda: cugrad.gradient_magnitude(f, 0.3, edge_order=2),
                      lambda: (lambda g: np.sqrt((g[0] * g[0] + g[1] * g[1]) + g[2] * g[2]))(
                          np.gradient(f, 0.3, edge_order=2))),
        "divergence": (lambda: cugrad.divergence(comps, 0.3, 0.5, 0.7),
                       lambda: (np.gradient(comps[0], 0.3, axis=0)
                                + np.gradient(comps[1], 0.5, axis=1))
                       + np.gradient(comps[2], 0.7, axis=2)),
        "curl": (lambda: cugrad.curl(comps),
                 lambda: (np.gradient(comps[2], axis=1) - np.gradient(comps[1], axis=2),
                          np.gradient(comps[0], axis=2) - np.gradient(comps[2], axis=0),
                          np.gradient(comps[1], axis=0) - np.gradient(comps[0], axis=1))),
        "laplacian": (lambda: cugrad.laplacian(f, 0.3, accuracy=4), None),
        "laplacian-periodic": (lambda: cugrad.laplacian(f, boundary="periodic"), None),
    }


@needs_numba
@pytest.mark.parametrize("layout", ["C", "F", "view"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_operators_on_the_engine_are_the_compositions_bits(monkeypatch, layout, dtype):
    # Many slabs on two threads: each further term goes through a worker's slab buffer.
    monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numba")
    monkeypatch.setattr(_numba_backend, "SLAB_BYTES", 2048)
    monkeypatch.setattr(_numba_backend, "PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setenv("CUGRAD_NUM_THREADS", "2")

    def field(name):
        base = random_field((22, 17, 13), np.float64, name) * 50
        if layout == "F":
            base = np.asfortranarray(base)
        elif layout == "view":
            base = random_field((26, 19, 30), np.float64, name)[2:24, 1:18, ::-2][:, :, :13] * 50
        return base.astype(dtype, order="K")

    f = field("operator f")
    comps = [field(f"operator F{i}") for i in range(3)]
    for name, (ours, composition) in _operator_cases(f, comps).items():
        result, ran = engine_ran(ours)
        assert ran, name
        monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numpy")
        assert_same(result, ours())
        monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numba")
        if composition is not None:
            assert_same(result, composition())


@needs_numba
def test_operator_floating_point_events_are_reported_as_numpy_reports_them(monkeypatch):
    monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numba")
    f = random_field((20, 18, 16), np.float32, "events")
    f[3, 4, 5] = np.inf
    f[9, 9, 9], f[10, 9, 9] = 3e38, -3e38  # finite input, overflowing derivatives
    for name, (ours, _) in _operator_cases(f, [f, f, f]).items():
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            result = ours()
        monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numpy")
        with warnings.catch_warnings(record=True) as expected:
            warnings.simplefilter("always")
            assert_same(result, ours())
        monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numba")
        assert [str(w.message) for w in seen] == [str(w.message) for w in expected], name
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        result, ran = engine_ran(lambda: cugrad.gradient_magnitude(f))
        assert ran  # nothing to report: the engine's result stands
        assert not np.isfinite(result).all()


def test_info_says_whether_the_disk_cache_holds_the_kernels(tmp_path):
    assert _numba_backend._cache_filled(None) is None
    assert _numba_backend._cache_filled(str(tmp_path / "missing")) is False
    assert _numba_backend._cache_filled(str(tmp_path)) is False
    (tmp_path / "_numba_kernels.slab_axes-321.py311.nbi").write_bytes(b"")
    assert _numba_backend._cache_filled(str(tmp_path)) is True


@needs_numba
def test_bench_reports_the_engines_first_use(monkeypatch):
    from cugrad import _bench

    monkeypatch.setenv("CUGRAD_CPU_ENGINE", "numpy")
    assert _bench._cpu_engine_first_use()["reason"] == "CUGRAD_CPU_ENGINE=numpy"
    monkeypatch.setenv("CUGRAD_CPU_ENGINE", "auto")
    engine = _bench._cpu_engine_first_use()
    assert set(engine["seconds"]) == {name for name, _, _ in _numba_backend.SIGNATURES}
    doc = {"device": "d", "host": "h", "commit": "c", "commit_dirty": False, "date": "today",
           "mode": "quick", "host_load_avg": {"before": 0, "after": 0}, "copy_gbps": 1.0,
           "copy_method": "m", "host_copy_gbps": 1.0, "cpu_engine": engine}
    line = _bench._header_lines(doc)[-1]
    assert line.startswith(f"compiled CPU engine (numba {engine['numba']}): ")
    assert "before timing" in line
