"""The streamed GPU offload: its slab schedule, and its pipeline run on the CPU and on a GPU.

The CPU tests run the whole pipeline with ``NumpyExecutor``, which simulates asynchronous streams
(queued transfers and computation run only when an event after them is waited on), with budgets so
small that every slab is one to a few rows. Expected values always come from numpy.gradient.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from conftest import assert_same, random_field, stable_rng

import cugrad
from cugrad import _backend, _offload
from cugrad._offload import (
    NumpyExecutor,
    offload_gradient,
    slab_rows_for_budget,
    slab_schedule,
    window_capacity,
)
from cugrad._plan import make_plan

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def offload_on_cpu(f, *varargs, axis=None, edge_order=1, slab_rows=None, budget=None, slots=2,
                   executor=None, **options):
    """Run the offload pipeline on the CPU; return what numpy.gradient would (array or tuple)."""
    plan = make_plan(f, varargs, axis, edge_order, **options)
    # np.asarray: a memmap's outputs are plain arrays, as the API allocates them (no copy of f).
    outs = [np.empty_like(np.asarray(f), dtype=plan.out_dtype) for _ in plan.axes]
    executor = NumpyExecutor(slots) if executor is None else executor
    offload_gradient(plan, f, outs, slab_rows=slab_rows, budget=budget, executor=executor)
    if len(outs) == 1:
        return outs[0]
    return tuple(outs)


data = random_field


# --------------------------------------------------------------------------------------------------
# The schedule: pure arithmetic
# --------------------------------------------------------------------------------------------------


def rows_read(lo, hi, n, edge_order):
    """Rows the stencils of output rows [lo, hi) read, straight from numpy.gradient's formulas."""
    rows = set()
    for i in range(lo, hi):
        if i == 0:
            rows |= {0, 1} if edge_order == 1 else {0, 1, 2}
        elif i == n - 1:
            rows |= {n - 2, n - 1} if edge_order == 1 else {n - 3, n - 2, n - 1}
        else:
            rows |= {i - 1, i, i + 1}
    return rows


def split_plan(n, edge_order=1, **options):
    """The plan of a differentiated split axis of n rows."""
    return make_plan(np.zeros(n), (), 0, edge_order, **options).axis_plans[0]


@pytest.mark.parametrize(
    ("lo", "hi", "n", "edge_order", "expected"),
    [
        (0, 1, 10, 1, (0, 2)),
        (0, 1, 10, 2, (0, 3)),
        (9, 10, 10, 1, (8, 10)),
        (9, 10, 10, 2, (7, 10)),
        (4, 6, 10, 1, (3, 7)),
        (4, 6, 10, 2, (3, 7)),
        (1, 2, 10, 2, (0, 3)),
        (0, 2, 2, 1, (0, 2)),
        (0, 3, 3, 2, (0, 3)),
        (2, 3, 3, 2, (0, 3)),
    ],
)
def test_window_examples(lo, hi, n, edge_order, expected):
    assert split_plan(n, edge_order).window(lo, hi) == expected


@pytest.mark.parametrize("edge_order", [1, 2])
def test_window_is_exactly_the_rows_the_stencil_reads(edge_order):
    for n in range(edge_order + 1, 9):
        ap = split_plan(n, edge_order)
        for lo in range(n):
            for hi in range(lo + 1, n + 1):
                rows = rows_read(lo, hi, n, edge_order)
                w0, w1 = ap.window(lo, hi)
                # One contiguous run, no row missing and none extra.
                assert (w0, w1) == (min(rows), max(rows) + 1), (lo, hi, n)
                assert rows == set(range(w0, w1)), (lo, hi, n)


@pytest.mark.parametrize(
    ("options", "lo", "hi", "n", "expected", "spans"),
    [
        # accuracy 4: central rows read 2 either side; the first/last 2 rows read 5 rows of their end
        (dict(accuracy=4), 0, 1, 10, (0, 5), [(0, 5)]),
        (dict(accuracy=4), 4, 6, 10, (2, 8), [(2, 8)]),
        (dict(accuracy=4), 9, 10, 10, (5, 10), [(5, 10)]),
        (dict(accuracy=8), 4, 5, 9, (0, 9), [(0, 9)]),
        # periodic: the window runs on into the periodic extension, gathered from both ends
        (dict(boundary="periodic"), 0, 2, 10, (-1, 3), [(9, 10), (0, 3)]),
        (dict(accuracy=6, boundary="periodic"), 8, 10, 10, (5, 13), [(5, 10), (0, 3)]),
        (dict(accuracy=4, boundary="periodic"), 0, 5, 5, (-2, 7), [(3, 5), (0, 5), (0, 2)]),
    ],
)
def test_window_of_wider_and_periodic_stencils(options, lo, hi, n, expected, spans):
    ap = split_plan(n, **options)
    assert ap.window(lo, hi) == expected
    assert ap.spans(*expected) == spans


@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("differentiated", [True, False])
def test_schedule_covers_every_row_exactly_once(edge_order, differentiated):
    for n, slab_rows, slots in itertools.product(range(3, 23), (1, 2, 3, 5, 8, 40), (1, 2, 3)):
        plan = split_plan(n, edge_order) if differentiated else None
        schedule = slab_schedule(n, slab_rows, split_plan=plan, slots=slots)
        produced = [row for s in schedule for row in range(s.lo, s.hi)]
        assert produced == list(range(n))  # in order, each row once
        assert len(schedule) == math.ceil(n / slab_rows)
        for k, s in enumerate(schedule):
            assert s.index == k and s.slot == k % slots
            assert 1 <= s.hi - s.lo <= slab_rows
            if differentiated:
                assert rows_read(s.lo, s.hi, n, edge_order) == set(range(s.w0, s.w1))
            else:
                assert (s.w0, s.w1) == (s.lo, s.hi)
        # The window buffers hold any slab's window, and never more than the halo needs.
        assert window_capacity(schedule) <= max(s.hi - s.lo for s in schedule) + 2


def test_schedule_slabs_are_balanced():
    schedule = slab_schedule(10, 4, split_plan=split_plan(10), slots=2)
    assert [(s.lo, s.hi) for s in schedule] == [(0, 3), (3, 6), (6, 10)]


def test_schedule_rejects_nonsense():
    assert slab_schedule(0, 3, split_plan=None, slots=2) == ()
    with pytest.raises(ValueError):
        slab_schedule(5, 0, split_plan=split_plan(5), slots=2)


@pytest.mark.parametrize("differentiated", [True, False])
@pytest.mark.parametrize("outputs", [1, 3])
def test_slab_height_is_the_largest_that_fits_the_budget(differentiated, outputs):
    row_in, row_out, slots, halo = 800, 1600, 3, 2 if differentiated else 0

    def used(h):
        return slots * ((h + halo) * row_in + outputs * h * row_out)

    for budget in (10**5, 10**6, 3 * 10**6 + 17):
        h = slab_rows_for_budget(
            budget, length=10**6, row_in_bytes=row_in, row_out_bytes=row_out, outputs=outputs,
            slots=slots, halo_rows=halo, target_bytes=1 << 40,
        )
        assert used(h) <= budget < used(h + 1)


def test_slab_height_limits():
    kwargs = dict(row_in_bytes=8, row_out_bytes=8, outputs=2, slots=2, halo_rows=2)
    # A budget below one row still makes progress, one row at a time.
    assert slab_rows_for_budget(1, length=100, **kwargs) == 1
    # Never taller than the axis.
    assert slab_rows_for_budget(1 << 40, length=100, target_bytes=1 << 40, **kwargs) == 100
    # The slab target keeps several slabs in flight even with a huge budget.
    assert slab_rows_for_budget(1 << 40, length=100, target_bytes=80, **kwargs) == 10


def test_budget_resolution(monkeypatch):
    monkeypatch.delenv(_offload.BUDGET_ENV_VAR, raising=False)
    monkeypatch.setattr(_offload, "budget_bytes", None)
    assert _offload.resolve_budget(None, lambda: 4000) == 1000  # a quarter of free memory
    monkeypatch.setenv(_offload.BUDGET_ENV_VAR, "123456")
    assert _offload.resolve_budget(None, lambda: 4000) == 123456
    monkeypatch.setattr(_offload, "budget_bytes", 777)
    assert _offload.resolve_budget(None, lambda: 4000) == 777
    assert _offload.resolve_budget(99, lambda: 4000) == 99
    monkeypatch.setattr(_offload, "budget_bytes", None)
    monkeypatch.setenv(_offload.BUDGET_ENV_VAR, "a lot")
    with pytest.raises(ValueError, match=_offload.BUDGET_ENV_VAR):
        _offload.resolve_budget(None, lambda: 4000)
    with pytest.raises(ValueError, match="positive"):
        _offload.resolve_budget(0, lambda: 4000)


def test_supports_refuses_long_double_only():
    f = np.ones((4, 3))
    assert _offload.supports(make_plan(f, (), None, 1), f)
    assert _offload.supports(make_plan(f.astype(np.float16), (), None, 1), f.astype(np.float16))
    if np.dtype(np.longdouble).itemsize > 8:
        g = f.astype(np.longdouble)
        assert not _offload.supports(make_plan(g, (), None, 1), g)
        # A long double spacing makes float64 data compute in long double.
        assert not _offload.supports(make_plan(f, (np.longdouble(0.5),), None, 1), f)


def test_memory_order():
    c = np.empty((4, 5, 6))
    assert _offload.memory_order(c) == ((0, 1, 2), 0)
    assert _offload.memory_order(np.asfortranarray(c)) == ((2, 1, 0), 0)
    assert _offload.memory_order(c.transpose(1, 2, 0)) == ((2, 0, 1), 0)
    # Axes of length one go first; the split axis is the outermost longer one.
    assert _offload.memory_order(np.empty((1, 5, 1, 6))) == ((0, 2, 1, 3), 2)


# --------------------------------------------------------------------------------------------------
# The pipeline on the CPU, against numpy.gradient
# --------------------------------------------------------------------------------------------------

SHAPES = [(9,), (7, 5), (5, 4, 6)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("slab_rows", [1, 2, 3, 100])
def test_pipeline_matches_numpy(shape, edge_order, slab_rows):
    f = data(shape)
    assert_same(offload_on_cpu(f, edge_order=edge_order, slab_rows=slab_rows),
                np.gradient(f, edge_order=edge_order))


AXES_3D = [
    axes
    for r in (1, 2, 3)
    for axes in itertools.permutations(range(3), r)
    if r < 3 or axes in ((0, 1, 2), (2, 0, 1))
]


@pytest.mark.parametrize("axis", AXES_3D, ids=str)
@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("slab_rows", [1, 2])
def test_pipeline_every_axis_subset(axis, edge_order, slab_rows):
    f = data((6, 5, 4), np.float32)
    assert_same(offload_on_cpu(f, axis=axis, edge_order=edge_order, slab_rows=slab_rows),
                np.gradient(f, axis=axis, edge_order=edge_order))


def coordinates(n, kind):
    rng = stable_rng("coords", n, kind)
    if kind == "uniform":
        return np.arange(n) * 0.25  # numpy's shortcut makes this a scalar spacing
    if kind == "sorted":
        return np.sort(rng.uniform(0, 10, n))
    if kind == "unsorted":
        return rng.uniform(-5, 5, n)
    if kind == "repeated":
        c = np.sort(rng.uniform(0, 10, n))
        c[2] = c[1]
        return c
    if kind == "int":
        return np.cumsum(rng.integers(1, 4, n))
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["uniform", "sorted", "unsorted", "repeated", "int"])
@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("slab_rows", [1, 3])
def test_pipeline_coordinates(kind, edge_order, slab_rows):
    f = data((8, 6, 5))
    spacing = (coordinates(8, kind), 0.5, coordinates(5, "sorted").astype(np.float32))
    assert_same(offload_on_cpu(f, *spacing, edge_order=edge_order, slab_rows=slab_rows),
                np.gradient(f, *spacing, edge_order=edge_order))


@pytest.mark.parametrize(
    "spacing",
    [(2.0,), (3,), (np.float32(0.5),), (np.float64(0.1),), (np.array(0.5, np.float32),)],
    ids=repr,
)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_pipeline_scalar_spacing(spacing, dtype):
    f = data((7, 6), dtype)
    for edge_order in (1, 2):
        assert_same(offload_on_cpu(f, *spacing, edge_order=edge_order, slab_rows=2),
                    np.gradient(f, *spacing, edge_order=edge_order))


@pytest.mark.parametrize(
    "dtype", [np.float16, np.float32, np.float64, np.complex64, np.complex128, np.int8, np.uint8,
              np.int64, np.uint64]
)
@pytest.mark.parametrize("edge_order", [1, 2])
def test_pipeline_dtypes(dtype, edge_order):
    f = data((6, 7), dtype)
    assert_same(offload_on_cpu(f, edge_order=edge_order, slab_rows=1),
                np.gradient(f, edge_order=edge_order))


LAYOUTS = {
    "F": lambda a: np.asfortranarray(a),
    "transposed": lambda a: a.transpose(2, 0, 1),
    "negative strides": lambda a: a[::-1, :, ::-1],
    "strided view": lambda a: a[:, ::2, 1:],
    "broadcast": lambda a: np.broadcast_to(a[:1], a.shape),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("edge_order", [1, 2])
def test_pipeline_layouts(layout, edge_order):
    f = LAYOUTS[layout](data((6, 9, 5)))
    assert_same(offload_on_cpu(f, edge_order=edge_order, slab_rows=2),
                np.gradient(f, edge_order=edge_order))


@pytest.mark.parametrize("dtype", [">f8", ">f4", ">c16", ">i4"])
def test_pipeline_byte_swapped(dtype):
    f = data((7, 5), np.dtype(dtype).newbyteorder("=")).astype(dtype)
    assert_same(offload_on_cpu(f, np.arange(7.0) ** 2, 0.5, edge_order=2, slab_rows=2),
                np.gradient(f, np.arange(7.0) ** 2, 0.5, edge_order=2))


@pytest.mark.parametrize("shape", [(1, 7), (7, 1, 4), (1, 1, 5)], ids=str)
def test_pipeline_length_one_axes(shape):
    f = data(shape)
    axes = tuple(ax for ax, n in enumerate(shape) if n > 1)
    assert_same(offload_on_cpu(f, axis=axes, edge_order=2, slab_rows=1),
                np.gradient(f, axis=axes, edge_order=2))


@pytest.mark.parametrize("slots", [1, 2, 3, 4])
def test_pipeline_slot_counts(slots):
    f = data((11, 4))
    assert_same(offload_on_cpu(f, 0.3, edge_order=2, slab_rows=1, slots=slots),
                np.gradient(f, 0.3, edge_order=2))


def test_pipeline_budget_decides_the_slabs():
    f = data((40, 6))
    executor = NumpyExecutor(2)
    # Each of the 2 slots holds (h + 2) input rows and two outputs of h rows, 48 bytes a row.
    h = 4
    result = offload_on_cpu(f, budget=2 * ((h + 2) * 48 + 2 * h * 48), executor=executor)
    assert_same(result, np.gradient(f))
    assert executor.trace.count(("upload", 0)) + executor.trace.count(("upload", 1)) == 40 // h


def test_pipeline_zero_size_and_no_axes():
    f = np.empty((0, 4))
    assert_same(offload_on_cpu(f, axis=1), np.gradient(f, axis=1))
    g = data((4, 3))
    assert offload_on_cpu(g, axis=()) == np.gradient(g, axis=()) == ()


def test_pipeline_overlaps_slabs():
    # Double buffering: the second slab is uploaded before the host waits for the first one, and
    # the host waits for a slot only when it reuses it.
    executor = NumpyExecutor(2)
    f = data((8, 3))
    assert_same(offload_on_cpu(f, axis=0, slab_rows=2, executor=executor), np.gradient(f, axis=0))
    trace = executor.trace
    first_wait = trace.index(("wait", 0))
    assert trace[:first_wait].count(("upload", 0)) == 1
    assert trace[:first_wait].count(("upload", 1)) == 1
    assert [t for t in trace if t[0] == "wait"] == [("wait", 0), ("wait", 1), ("wait", 0),
                                                   ("wait", 1)]


class _ForgetfulExecutor(NumpyExecutor):
    """A broken device: the host never waits for queued work (as if an event sync were missing)."""

    def wait(self, event):
        pass


def test_cpu_executor_catches_a_missing_wait():
    # The simulated streams are what make the parity tests above meaningful: without waits, the
    # host reads pinned buffers before the downloads into them ran.
    f = data((9, 4))
    result = offload_on_cpu(f, slab_rows=2, executor=_ForgetfulExecutor(2))
    expected = np.gradient(f)
    assert not all(np.array_equal(r, e) for r, e in zip(result, expected, strict=True))


@pytest.mark.parametrize("slots", [1, 2])
def test_pipeline_output_overlapping_the_input(slots):
    f = data((9, 4))
    expected = np.gradient(f, axis=0, edge_order=2)
    plan = make_plan(f, (), 0, 2)
    offload_gradient(plan, f, [f], slab_rows=2, executor=NumpyExecutor(slots))  # in place
    assert_same(f, expected)


def test_pipeline_reads_a_memmap(tmp_path):
    path = tmp_path / "f.dat"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(13, 7))
    mm[:] = data((13, 7), np.float32)
    mm.flush()
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=(13, 7))
    expected = np.gradient(np.array(ro), edge_order=2)
    assert_same(offload_on_cpu(ro, edge_order=2, slab_rows=3), expected)


def test_host_copy_in_threads(monkeypatch):
    monkeypatch.setenv("CUGRAD_NUM_THREADS", "3")
    src = data((7, 10, 5))[:, ::-2]
    dst = np.empty(src.shape)
    _offload.host_copy(dst, src, min_parallel_bytes=0)
    np.testing.assert_array_equal(dst, src)
    one_row = np.empty((1, 5))
    _offload.host_copy(one_row, src[:1, 0], min_parallel_bytes=0)
    np.testing.assert_array_equal(one_row, src[:1, 0])


# --------------------------------------------------------------------------------------------------
# The public API's route into the offload, with the CPU executor standing in for the GPU
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def cpu_stands_in_for_the_gpu(monkeypatch):
    executors = []

    def make_executor():
        executors.append(NumpyExecutor(3))
        return executors[-1]

    monkeypatch.setattr(_backend, "require_gpu", lambda: None)
    monkeypatch.setattr(_offload, "CupyExecutor", make_executor)
    monkeypatch.setattr(_offload, "budget_bytes", 3 * 1024)  # slabs of a few rows
    return executors


@pytest.mark.parametrize("edge_order", [1, 2])
def test_api_backend_cupy_goes_through_the_pipeline(cpu_stands_in_for_the_gpu, edge_order):
    f = data((40, 9, 3), np.float32)
    spacing = (coordinates(40, "sorted"), 0.5, 2)
    result = cugrad.gradient(f, *spacing, edge_order=edge_order, backend="cupy")
    assert_same(result, np.gradient(f, *spacing, edge_order=edge_order))
    executor = cpu_stands_in_for_the_gpu[-1]
    assert executor.trace.count(("upload", 0)) > 3  # many slabs


def test_api_backend_cupy_with_stack_and_out(cpu_stands_in_for_the_gpu):
    f = data((30, 8))
    expected = np.gradient(f)
    stacked = cugrad.gradient(f, stack=True, backend="cupy")
    assert_same(stacked, np.stack(expected))
    outs = (np.full((30, 8), np.nan), np.full((30, 8), np.nan))
    assert all(r is o for r, o in zip(cugrad.gradient(f, out=outs, backend="cupy"), outs,
                                      strict=True))
    assert_same(outs, expected)
    g = f.copy()
    cugrad.gradient(g, axis=0, out=g, backend="cupy")  # in place
    assert_same(g, np.gradient(f, axis=0))


def test_api_backend_cupy_on_a_memmap(cpu_stands_in_for_the_gpu, tmp_path):
    path = tmp_path / "f.dat"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=(50, 6))
    mm[:] = data((50, 6))
    mm.flush()
    ro = np.memmap(path, dtype=np.float64, mode="r", shape=(50, 6))
    assert_same(cugrad.gradient(ro, edge_order=2, backend="cupy"), np.gradient(ro, edge_order=2))


# --------------------------------------------------------------------------------------------------
# On a GPU
# --------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["C", *LAYOUTS])
@pytest.mark.parametrize("edge_order", [1, 2])
def test_gpu_offload_matches_numpy(layout, edge_order):
    f = data((6, 9, 5))
    f = f if layout == "C" else LAYOUTS[layout](f)
    spacing = (0.5, coordinates(f.shape[1], "sorted"), 2)
    plan = make_plan(f, spacing, None, edge_order)
    outs = [np.empty_like(f, dtype=plan.out_dtype) for _ in plan.axes]
    offload_gradient(plan, f, outs, slab_rows=2)  # the real thing: CupyExecutor
    assert_same(tuple(outs), np.gradient(f, *spacing, edge_order=edge_order))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.complex64, np.int64,
                                   np.uint8])
def test_gpu_backend_cupy_returns_numpy(dtype):
    f = data((33, 17), dtype)
    result = cugrad.gradient(f, 0.5, edge_order=2, backend="cupy")
    assert_same(result, np.gradient(f, 0.5, edge_order=2))


@pytest.mark.gpu
def test_gpu_offload_respects_the_budget():
    import cupy

    f = data((512, 64, 32), np.float32)  # 4 MiB in, 12 MiB out
    budget = 1 << 20
    pool = cupy.get_default_memory_pool()
    cupy.cuda.Device().synchronize()
    pool.free_all_blocks()
    plan = make_plan(f, (), None, 1)
    outs = [np.empty_like(f) for _ in plan.axes]
    offload_gradient(plan, f, outs, budget=budget)
    # The pool keeps what was allocated: its size is the peak of the call.
    assert pool.total_bytes() <= budget + (64 << 10)
    assert_same(tuple(outs), np.gradient(f))


@pytest.mark.gpu
def test_gpu_offload_of_a_memmap(tmp_path):
    shape = (256, 128, 16)
    path = tmp_path / "big.dat"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=shape)
    mm[:] = data(shape)
    mm.flush()
    del mm
    ro = np.memmap(path, dtype=np.float64, mode="r", shape=shape)
    plan = make_plan(ro.view(np.ndarray), (), None, 2)
    outs = [np.empty(shape) for _ in plan.axes]
    offload_gradient(plan, ro, outs, budget=512 << 10)
    assert_same(tuple(outs), np.gradient(np.array(ro), edge_order=2))


@pytest.mark.parametrize("slab_rows", [1, 2, 5, 40])
@pytest.mark.parametrize(
    "options",
    [dict(accuracy=4), dict(accuracy=8), dict(boundary="periodic"),
     dict(accuracy=6, boundary="periodic"), dict(accuracy=4, boundary=("periodic", "edge"))],
)
def test_pipeline_wider_and_periodic_stencils(options, slab_rows):
    # The split axis reads a halo of p/2 rows, and a periodic split axis wraps its first and last
    # slabs' windows around the ends; the result is the in-memory NumPy backend's, bit for bit.
    f = data((11, 13), np.float64)
    expected = cugrad.gradient(f, 0.5, **options)
    assert_same(offload_on_cpu(f, 0.5, slab_rows=slab_rows, **options), expected)
