"""GPU-only checks of the CuPy backend: layouts, out=/stack=, streams, threads, both kernel paths.

The parity suite (tests/test_parity.py) already runs its numpy.gradient cases through CuPy via the
``xp_backend`` fixture; these tests cover what only a GPU can show: CuPy's launch glue, the inline
PTX arithmetic (subnormals under CuPy's -ftz=true), streams and graph capture (work queued on the
current stream, no host synchronisation), concurrent compilation, and sizes past 2**31 elements.
Marked ``gpu``: skipped without CuPy and a usable GPU, failures with REQUIRE_GPU=1.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from conftest import assert_same, stable_rng

import cugrad
from cugrad import _compile, _cupy_backend, _kernels
from cugrad._plan import make_plan

pytestmark = [pytest.mark.gpu, pytest.mark.filterwarnings("ignore::RuntimeWarning")]


@pytest.fixture
def cp() -> Any:
    import cupy

    return cupy


def data(shape, dtype, *key) -> np.ndarray:
    rng = stable_rng(shape, np.dtype(dtype).name, *key)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(0, 100, shape).astype(dtype)
    values = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, shape)
    if np.dtype(dtype).kind == "c":
        values = values + 1j * rng.standard_normal(shape)
    return values.astype(dtype)


def to_host(result: Any, cp: Any) -> Any:
    if isinstance(result, tuple):
        return tuple(cp.asnumpy(r) for r in result)
    return cp.asnumpy(result)


DTYPES = [np.float16, np.float32, np.float64, np.complex64, np.complex128, np.int32, np.uint8]
LAYOUTS = {
    "c": lambda a: a,
    "fortran": np.asfortranarray,
    "negative-strides": lambda a: a[::-1, :, ::-1],
    "strided-view": lambda a: a[:, ::2, :],
    "transposed": lambda a: a.transpose(2, 0, 1),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("edge_order", [1, 2])
def test_layouts_and_dtypes(cp, layout, dtype, edge_order):
    base = data((6, 14, 9), dtype, layout)
    host = LAYOUTS[layout](base)
    device = LAYOUTS[layout](cp.asarray(base))  # the same view of the same data, on the GPU
    assert device.strides == host.strides
    x = np.cumsum(stable_rng("x", layout).random(host.shape[1]) + 0.5)
    expected = np.gradient(host, 0.5, x, 2.0, edge_order=edge_order)
    result = cugrad.gradient(device, 0.5, cp.asarray(x), 2.0, edge_order=edge_order)
    assert all(isinstance(r, cp.ndarray) for r in result)
    assert_same(to_host(result, cp), expected)


def test_float32_subnormals_survive_cupys_flush_to_zero(cp):
    # CuPy compiles with -ftz=true; the kernels' explicit .rn instructions must keep subnormals.
    host = np.zeros((9, 16), np.float32)
    host[:, 1::2] = np.float32(3e-45)
    host[4, :] = np.float32(1e-38)
    for args in [(), (np.float64(0.5),), (0.5, np.float32(3.0))]:
        assert_same(to_host(cugrad.gradient(cp.asarray(host), *args), cp),
                    np.gradient(host, *args))
    c = (host + 1j * host[::-1]).astype(np.complex64)
    assert_same(to_host(cugrad.gradient(cp.asarray(c), np.float32(1e-40)), cp),
                np.gradient(c, np.float32(1e-40)))


@pytest.mark.parametrize("stack", [False, True])
def test_out_and_stack(cp, stack):
    host = data((5, 12, 16), np.float32, "out")
    f = cp.asarray(host)
    expected = np.gradient(host, 0.25, edge_order=2)
    if stack:
        out = cp.full((3,) + host.shape, cp.nan, cp.float32)
        result = cugrad.gradient(f, 0.25, edge_order=2, stack=True, out=out)
        assert result is out
        assert_same(tuple(cp.asnumpy(out[i]) for i in range(3)), expected)
    else:
        outs = tuple(cp.full(host.shape, cp.nan, cp.float32) for _ in range(3))
        result = cugrad.gradient(f, 0.25, edge_order=2, out=outs)
        assert all(r is o for r, o in zip(result, outs, strict=True))
        assert_same(to_host(result, cp), expected)


def test_stack_is_one_fused_launch(cp):
    host = data((8, 16), np.float64, "fused")
    f = cp.asarray(host)
    stacked = cp.empty((2, 8, 16))
    plan = make_plan(f, (), None, 1)
    launches, general = _cupy_backend.select_paths(
        plan, _cupy_backend.ArrayInfo.of(f),
        [_cupy_backend.ArrayInfo.of(stacked[i]) for i in range(2)])
    assert len(launches) == 1 and launches[0].indices == (0, 1) and not general
    cugrad.gradient(f, stack=True, out=stacked)
    assert_same(tuple(cp.asnumpy(stacked[i]) for i in range(2)), np.gradient(host))


def test_non_default_stream(cp):
    host = data((64, 256), np.float32, "stream")
    f = cp.asarray(host)
    cp.cuda.Device().synchronize()  # f is ready before the non-blocking stream reads it
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        result = cugrad.gradient(f, 0.5)
        done = stream.record()
    done.synchronize()
    assert_same(to_host(result, cp), np.gradient(host, 0.5))


def test_work_is_captured_on_the_current_stream_without_host_sync(cp):
    """Graph capture fails on any host synchronisation or any work on another stream."""
    host = data((32, 64), np.float32, "capture")
    f = cp.asarray(host)
    outs = (cp.empty_like(f), cp.empty_like(f))
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        cugrad.gradient(f, 0.5, out=outs)  # compile before capturing
        for o in outs:
            o.fill(cp.nan)
        stream.begin_capture()
        cugrad.gradient(f, 0.5, out=outs)
        graph = stream.end_capture()
        graph.launch()
    stream.synchronize()
    assert_same(to_host(outs, cp), np.gradient(host, 0.5))


@pytest.mark.parametrize("spacing", ["even", "uneven"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.complex128],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("edge_order", [1, 2])
def test_device_coordinates(cp, spacing, dtype, edge_order):
    host = data((11, 13), dtype, "coords", spacing)
    x = np.arange(13) * 0.375 if spacing == "even" else np.cumsum(
        stable_rng("x", spacing).random(13) + 0.25)
    expected = np.gradient(host, x, axis=1, edge_order=edge_order)
    result = cugrad.gradient(cp.asarray(host), cp.asarray(x), axis=1, edge_order=edge_order)
    assert_same(cp.asnumpy(result), expected)


def test_device_coordinates_need_no_host_sync(cp):
    host = data((16, 32), np.float64, "coords-capture")
    x = cp.asarray(np.cumsum(stable_rng("x").random(32) + 0.25))
    f = cp.asarray(host)
    out = cp.empty_like(f)
    cp.cuda.Device().synchronize()
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        # Warm up on the same stream: compile, and leave blocks in the pool for this stream.
        cugrad.gradient(f, x, axis=1, out=out)
        stream.begin_capture()
        cugrad.gradient(f, x, axis=1, out=out)
        graph = stream.end_capture()
        out.fill(cp.nan)
        graph.launch()
    stream.synchronize()
    assert_same(cp.asnumpy(out), np.gradient(host, cp.asnumpy(x), axis=1))


def test_fast_and_general_paths_agree(cp):
    host = data((7, 10, 12), np.float32, "paths")
    x = np.cumsum(stable_rng("paths").random(10) + 0.5)
    f = cp.asarray(host)
    plan = make_plan(f, (1.5, x, np.float64(0.25)), None, 2)
    fast = [cp.empty_like(f) for _ in range(3)]
    launches, general = _cupy_backend.select_paths(
        plan, _cupy_backend.ArrayInfo.of(f), [_cupy_backend.ArrayInfo.of(o) for o in fast])
    assert not general
    _cupy_backend.execute(plan, f, fast)
    slow = [cp.empty_like(f) for _ in range(3)]
    for ap, out in zip(plan.axis_plans, slow, strict=True):
        _cupy_backend.compute_rows(f, out, ap, plan.data_dtype, 0, ap.length, 0)
    expected = np.gradient(host, 1.5, x, np.float64(0.25), edge_order=2)
    assert_same(to_host(tuple(fast), cp), expected)
    assert_same(to_host(tuple(slow), cp), expected)


def test_compute_rows_window(cp):
    host = data((20, 6), np.float64, "window")
    plan = make_plan(host, (0.5,), 0, 2)
    ap = plan.axis_plans[0]
    f = cp.asfortranarray(cp.asarray(host[4:12]))  # rows 4..11 feed rows 5..10
    out = cp.empty((6, 6))
    _cupy_backend.compute_rows(f, out, ap, plan.data_dtype, 5, 11, 4)
    assert_same(cp.asnumpy(out), np.gradient(host, 0.5, axis=0, edge_order=2)[5:11])


def test_concurrent_first_calls_compile_once(cp, monkeypatch):
    builds: list[Any] = []
    real_module = cp.RawModule

    def counting_module(*args: Any, **kwargs: Any) -> Any:
        builds.append(kwargs.get("name_expressions"))
        return real_module(*args, **kwargs)

    monkeypatch.setattr(cp, "RawModule", counting_module)
    monkeypatch.setattr(_kernels, "_cache", {})
    monkeypatch.setattr(_kernels, "_first_calls", set())
    hosts = [data((33, 40), np.float64, "threads", k) for k in range(8)]
    results: list[Any] = [None] * 8
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(k: int) -> None:
        try:
            f = cp.asarray(hosts[k])
            barrier.wait()
            results[k] = to_host(cugrad.gradient(f, 0.5), cp)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(builds) == 1, f"{len(builds)} compilations for one variant"
    for host, result in zip(hosts, results, strict=True):
        assert_same(result, np.gradient(host, 0.5))


def test_host_array_with_cupy_backend_returns_numpy(cp):
    host = data((9, 10), np.float32, "host")
    result = cugrad.gradient(host, 2.0, backend="cupy")
    assert all(isinstance(r, np.ndarray) for r in result)
    assert_same(result, np.gradient(host, 2.0))
    plan = make_plan(host, (2.0,), None, 1)
    outs = [np.empty_like(host) for _ in range(2)]
    _cupy_backend.run_host(plan, host, outs)
    assert_same(tuple(outs), np.gradient(host, 2.0))


def test_zero_size_launches_nothing(cp):
    f = cp.zeros((0, 5), cp.float32)
    result = cugrad.gradient(f, axis=1)
    assert isinstance(result, cp.ndarray) and result.shape == (0, 5)


def test_beyond_2_31_elements(cp):
    rows, cols = 2**21 + 4, 1024  # 2**31 + 4096 float32 elements, 8 GiB per array
    need = 3 * rows * cols * 4 + (1 << 30)
    free, _ = cp.cuda.Device().mem_info
    if free < need:
        pytest.skip(f"needs {need / 2**30:.0f} GiB free on the GPU, {free / 2**30:.0f} GiB are")
    tail = np.ascontiguousarray(data((16, cols), np.float32, "tail"))
    f = cp.zeros((rows, cols), cp.float32)
    f[-16:] = cp.asarray(tail)
    d0, d1 = cugrad.gradient(f, 0.5, edge_order=2)
    expected = np.gradient(tail, 0.5, edge_order=2)
    assert_same(cp.asnumpy(d0[-15:]), expected[0][1:])
    assert_same(cp.asnumpy(d1[-16:]), expected[1])
    assert_same(cp.asnumpy(d0[:2]), np.zeros((2, cols), np.float32))
    del f, d0, d1


@pytest.mark.slow
def test_compile_kernels_fills_the_cache(cp):
    report = _compile.compile_kernels()
    assert len(report.variants) == len(_kernels.all_fast_variants()) + len(
        _kernels.representative_general_variants())


def test_a_second_process_compiles_nothing(tmp_path):
    # CuPy >= 14.2 reloads the fast path's name_expressions kernels from its disk cache (older CuPy
    # recompiled every one in every process); the general path's kernels always were reloaded.
    from cugrad import _selftest

    counts = _selftest.kernel_cache_reuse(str(tmp_path / "cupy-cache"))
    assert counts["first"] > 0, "the first process compiled nothing: the count is broken"
    assert counts["second"] == 0, f"the second process compiled {counts['second']} kernels"


@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16],
                         ids=lambda d: np.dtype(d).name)
def test_complex_spacing_on_real_device_data_is_numpys_result(cp, dtype, edge_order):
    host = data((7, 12, 10), dtype, "complex-spacing")
    x = np.cumsum(stable_rng("cx").random(12) + 0.5) * (1 + 0.25j)
    forms = [(0.5 + 0.5j,), (np.complex64(2 - 1j), x, 0.25), (0.3, cp.asarray(x), 1.5j)]
    for varargs in forms:
        host_varargs = tuple(cp.asnumpy(v) if isinstance(v, cp.ndarray) else v for v in varargs)
        with pytest.warns(np.exceptions.ComplexWarning):
            expected = np.gradient(host, *host_varargs, edge_order=edge_order)
        with pytest.warns(np.exceptions.ComplexWarning):
            result = cugrad.gradient(cp.asarray(host), *varargs, edge_order=edge_order)
        assert_same(to_host(result, cp), expected)


def test_special_spacing_on_device_data_is_a_type_error(cp):
    masked = np.ma.masked_array(np.cumsum(np.ones(12)) ** 1.5, mask=[0] * 5 + [1] + [0] * 6)
    with pytest.raises(TypeError, match="MaskedArray"):
        cugrad.gradient(cp.ones((4, 12)), masked, axis=1)
