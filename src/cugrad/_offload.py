"""Stream host arrays through a GPU in slabs: numpy in, numpy out, a bounded slab on the device.

The input is cut into slabs along its outermost axis in memory. Each slab is copied into a pinned
staging buffer (for an ``np.memmap`` this is where the file is read, one slab at a time), uploaded
with the halo rows the stencil needs, differentiated on the device, and downloaded through pinned
buffers into the caller's outputs. Every buffer *slot* (pinned input, device window, device outputs,
pinned outputs) has its own CUDA stream, so while slot 0 computes, slot 1 uploads and slot 2
downloads; the host waits on a slot's event only when it needs that slot again. This is the
stream-per-buffer form of double buffering: stream order protects the device buffers, events
protect the pinned ones.

The work is split in three parts that can be checked separately:

* :func:`slab_schedule` / :func:`slab_rows_for_budget` -- pure arithmetic:
  which rows each slab uploads, which output rows it produces, which slot it uses, how tall a slab
  may be within the device budget;
* :func:`run_pipeline` -- the order of staging copies, transfers, computation and waits, generic
  over an *executor*;
* the executors: :class:`CupyExecutor` (the GPU) and :class:`NumpyExecutor`, which runs the same
  pipeline on the CPU with ``_numpy_backend.compute_rows`` and simulates streams (queued work runs
  only when an event recorded after it is waited on), so that a missing wait shows up as a wrong
  result in the CPU tests.

Every output row is computed by ``compute_rows`` from a window that holds all the rows its stencil
reads, so the result is bit-identical to computing the whole array at once, hence to numpy.gradient.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from cugrad import _numpy_backend
from cugrad._plan import AxisPlan, GradientPlan

BUDGET_ENV_VAR = "CUGRAD_OFFLOAD_BUDGET_BYTES"
#: Device memory the offload may use for its buffers; None means ``CUGRAD_OFFLOAD_BUDGET_BYTES`` if
#: set, else a quarter of the device's free memory at call time. Assign to change it for a process.
budget_bytes: int | None = None

#: Preferred input bytes per slab. A budget that holds the whole array would give one slab and no
#: overlap of transfers with computation; tens of MiB per slab keep the copy engines near their peak
#: bandwidth while leaving several slabs to overlap.
SLAB_TARGET_BYTES = 64 << 20

#: Buffer slots, each with its own stream: three let an upload, a computation and a download run
#: at the same time (the GPU has one copy engine per direction).
DEFAULT_SLOTS = 3

#: Staging copies (host array <-> pinned buffer) larger than this are split over worker threads:
#: a single core copies far below PCIe bandwidth.
PARALLEL_COPY_BYTES = 8 << 20

# Dtypes CuPy has no equivalent of: arrays (or compute dtypes) of these cannot go to a GPU. Where
# long double is double (Windows, some ARM builds) it is of course fine.
_HOST_ONLY_DTYPES = frozenset(
    np.dtype(t) for t in (np.longdouble, np.clongdouble)
    if np.dtype(t) not in (np.dtype(np.float64), np.dtype(np.complex128))
)


# --------------------------------------------------------------------------------------------------
# Thresholds and budgets
# --------------------------------------------------------------------------------------------------


def _positive_int_env(name: str) -> int | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        parsed = int(value)
    except ValueError:
        parsed = -1
    if parsed < 0:
        raise ValueError(f"{name} must be a non-negative integer number of bytes, got {value!r}")
    return parsed


def resolve_budget(explicit: int | None, free_device_bytes: Callable[[], int]) -> int:
    """Return the device budget in bytes.

    The argument, else :data:`budget_bytes`, else ``CUGRAD_OFFLOAD_BUDGET_BYTES``, else a quarter of
    ``free_device_bytes()``.
    """
    sources = (lambda: explicit, lambda: budget_bytes, lambda: _positive_int_env(BUDGET_ENV_VAR))
    for source in sources:  # the environment is read (and checked) only when it is the answer
        value = source()
        if value is not None:
            if value <= 0:
                raise ValueError(f"the offload budget must be a positive byte count, got {value}")
            return int(value)
    return max(1, free_device_bytes() // 4)


def supports(plan: GradientPlan, f: np.ndarray) -> bool:
    """Whether the GPU can compute this plan: CuPy has no long double."""
    dtypes = {np.dtype(f.dtype), plan.data_dtype, plan.out_dtype}
    for ap in plan.axis_plans:
        dtypes.update(r.dtype for r in ap.regions)
    return not (dtypes & _HOST_ONLY_DTYPES)


# --------------------------------------------------------------------------------------------------
# The slab schedule (pure arithmetic)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slab:
    """One step of the pipeline, in rows of the split axis.

    The slab uploads input rows ``[w0, w1)`` (its own rows plus the halo), produces output rows
    ``[lo, hi)`` and uses buffer slot (and stream) ``slot``.
    """

    index: int
    lo: int
    hi: int
    w0: int
    w1: int
    slot: int


def slab_schedule(
    length: int, slab_rows: int, *, split_plan: AxisPlan | None, slots: int
) -> tuple[Slab, ...]:
    """Cut ``length`` rows into slabs of at most ``slab_rows`` rows, as even as possible.

    Slab ``k`` uses slot ``k % slots``. Every output row belongs to exactly one slab. A slab's
    window is what ``split_plan`` (the plan of the split axis, None when it is not differentiated)
    reads for the slab's rows; on a periodic axis it may start below 0 or end past ``length``
    (see :meth:`AxisPlan.spans`).
    """
    if length <= 0:
        return ()
    if slab_rows < 1 or slots < 1:
        raise ValueError(f"slab_rows and slots must be positive, got {slab_rows} and {slots}")
    count = math.ceil(length / slab_rows)
    bounds = [length * k // count for k in range(count + 1)]
    slabs = []
    for k in range(count):
        lo, hi = bounds[k], bounds[k + 1]
        w0, w1 = (lo, hi) if split_plan is None else split_plan.window(lo, hi)
        slabs.append(Slab(k, lo, hi, w0, w1, k % slots))
    return tuple(slabs)


def window_capacity(schedule: Sequence[Slab]) -> int:
    """Rows the window buffers must hold: the tallest window of the schedule."""
    return max((s.w1 - s.w0 for s in schedule), default=0)


def slab_rows_for_budget(
    budget: int,
    *,
    length: int,
    row_in_bytes: int,
    row_out_bytes: int,
    outputs: int,
    slots: int,
    halo_rows: int,
    target_bytes: int = SLAB_TARGET_BYTES,
) -> int:
    """Return the tallest slab whose buffers, in every slot, fit in ``budget`` bytes.

    A slot holds a window of ``h + halo_rows`` input rows (``halo_rows`` is 0 when the split axis is
    not differentiated) and ``outputs`` output slabs of ``h`` rows. Slabs are also kept near ``target_bytes`` of input
    so that there are several to overlap. At least one row: a budget smaller than a one-row slab is
    exceeded rather than refused.
    """
    halo = halo_rows
    per_slot = budget // max(slots, 1)
    per_row = row_in_bytes + outputs * row_out_bytes
    by_budget = (per_slot - halo * row_in_bytes) // max(per_row, 1)
    by_target = target_bytes // max(row_in_bytes, 1)
    return int(max(1, min(by_budget, by_target, length)))


# --------------------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------------------


class Executor(Protocol):
    """What :func:`run_pipeline` needs from a device: buffers, transfers, streams and events."""

    slots: int
    compute_rows: Callable[..., None]

    def prepare(self, axis_plans: Sequence[AxisPlan]) -> list[AxisPlan]: ...
    def host_buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray: ...
    def device_buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> Any: ...
    def upload(self, slot: int, dst: Any, src: np.ndarray) -> None: ...
    def compute(self, slot: int, work: Callable[[], None]) -> None: ...
    def download(self, slot: int, dst: np.ndarray, src: Any) -> None: ...
    def record(self, slot: int) -> Any: ...
    def wait(self, event: Any) -> None: ...
    def finish(self) -> None: ...


def _check_contiguous(a: Any, what: str) -> None:
    # Transfers are raw byte copies: a strided view here would silently scramble rows.
    if not a.flags.c_contiguous:
        raise AssertionError(f"{what} must be C-contiguous for a byte copy")


class NumpyExecutor:
    """Runs the pipeline on the CPU with the NumPy backend, simulating asynchronous streams.

    Work queued on a slot's stream (transfers and computation) runs only when an event recorded
    after it is waited on, or at :meth:`finish`. A pipeline that reads a pinned buffer before
    waiting for the download into it, or refills one before its upload ran, therefore computes
    wrong values.
    Fresh buffers are filled with a byte pattern so that reading unwritten memory is visible too.
    ``trace`` records the order of operations.
    """

    compute_rows = staticmethod(_numpy_backend.compute_rows)

    def __init__(self, slots: int = 2) -> None:
        self.slots = slots
        self._queues: list[list[Callable[[], None]]] = [[] for _ in range(slots)]
        self._done = [0] * slots
        self.trace: list[tuple[str, int]] = []

    def prepare(self, axis_plans: Sequence[AxisPlan]) -> list[AxisPlan]:
        return list(axis_plans)

    def _buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        buf = np.empty(shape, dtype)
        buf.view(np.uint8).fill(0xA5)
        return buf

    host_buffer = device_buffer = _buffer

    def upload(self, slot: int, dst: np.ndarray, src: np.ndarray) -> None:
        _check_contiguous(dst, "the device window")
        _check_contiguous(src, "the pinned window")
        self.trace.append(("upload", slot))
        self._queues[slot].append(lambda: np.copyto(dst, src))

    def compute(self, slot: int, work: Callable[[], None]) -> None:
        self.trace.append(("compute", slot))
        self._queues[slot].append(work)

    def download(self, slot: int, dst: np.ndarray, src: np.ndarray) -> None:
        _check_contiguous(dst, "the pinned output")
        _check_contiguous(src, "the device output")
        self.trace.append(("download", slot))
        self._queues[slot].append(lambda: np.copyto(dst, src))

    def record(self, slot: int) -> tuple[int, int]:
        return slot, len(self._queues[slot])

    def wait(self, event: tuple[int, int]) -> None:
        slot, upto = event
        self.trace.append(("wait", slot))
        self._run(slot, upto)

    def finish(self) -> None:
        for slot in range(self.slots):
            self._run(slot, len(self._queues[slot]))

    def _run(self, slot: int, upto: int) -> None:
        queue = self._queues[slot]
        while self._done[slot] < upto:
            work = queue[self._done[slot]]
            self._done[slot] += 1
            work()


class CupyExecutor:
    """The GPU: pinned host buffers, device buffers from CuPy's pool, one stream per slot.

    Transfers are ``cudaMemcpyAsync`` between pinned and device memory on the slot's stream, so they
    return at once and overlap the other slots' work. Computation is queued on the slot's stream by
    making it CuPy's current stream. The streams are created once per device and reused, so CuPy's
    stream-ordered memory pool keeps a bounded number of arenas.
    """

    def __init__(self, slots: int = DEFAULT_SLOTS) -> None:
        import cupy
        import cupyx

        from cugrad import _cupy_backend

        self._cupy = cupy
        self._empty_pinned = cupyx.empty_pinned
        self.compute_rows = _cupy_backend.compute_rows
        self.slots = slots
        self.device_id = cupy.cuda.Device().id
        self.streams = _streams(self.device_id, slots)
        runtime = cupy.cuda.runtime
        self._h2d, self._d2h = runtime.memcpyHostToDevice, runtime.memcpyDeviceToHost
        self._memcpy_async = runtime.memcpyAsync

    def free_bytes(self) -> int:
        return int(self._cupy.cuda.runtime.memGetInfo()[0])

    def prepare(self, axis_plans: Sequence[AxisPlan]) -> list[AxisPlan]:
        """Upload coefficient tables once, instead of once per slab.

        A pageable host-to-device copy inside a slab would also make the host wait for the slot's
        stream, which would stall the pipeline.
        """
        cupy = self._cupy

        def upload(w: Any) -> Any:
            return cupy.asarray(w) if isinstance(w, np.ndarray) and w.ndim else w

        prepared = [
            replace(ap, regions=tuple(replace(r, weights=tuple(upload(w) for w in r.weights))
                                      for r in ap.regions))
            for ap in axis_plans
        ]
        # The tables were queued on the caller's stream; the slot streams do not order after it.
        cupy.cuda.get_current_stream().synchronize()
        return prepared

    def host_buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self._empty_pinned(shape, dtype)

    def device_buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        return self._cupy.empty(shape, dtype)

    def upload(self, slot: int, dst: Any, src: np.ndarray) -> None:
        _check_contiguous(dst, "the device window")
        _check_contiguous(src, "the pinned window")
        if src.nbytes:
            self._memcpy_async(dst.data.ptr, src.ctypes.data, src.nbytes, self._h2d,
                               self.streams[slot].ptr)

    def compute(self, slot: int, work: Callable[[], None]) -> None:
        with self.streams[slot]:
            work()

    def download(self, slot: int, dst: np.ndarray, src: Any) -> None:
        _check_contiguous(dst, "the pinned output")
        _check_contiguous(src, "the device output")
        if dst.nbytes:
            self._memcpy_async(dst.ctypes.data, src.data.ptr, dst.nbytes, self._d2h,
                               self.streams[slot].ptr)

    def record(self, slot: int) -> Any:
        return self.streams[slot].record()

    def wait(self, event: Any) -> None:
        event.synchronize()

    def finish(self) -> None:
        for stream in self.streams:
            stream.synchronize()


_stream_lock = threading.Lock()
_stream_cache: dict[tuple[int, int], list[Any]] = {}


def _streams(device_id: int, slots: int) -> list[Any]:
    import cupy

    with _stream_lock:
        key = (device_id, slots)
        if key not in _stream_cache:
            _stream_cache[key] = [cupy.cuda.Stream(non_blocking=True) for _ in range(slots)]
        return _stream_cache[key]


# --------------------------------------------------------------------------------------------------
# Host staging copies
# --------------------------------------------------------------------------------------------------

_copy_pool: ThreadPoolExecutor | None = None
_copy_pool_lock = threading.Lock()


def host_copy(dst: np.ndarray, src: np.ndarray, *, min_parallel_bytes: int | None = None) -> None:
    """``np.copyto(dst, src)``, split over threads along the longest axis when it is large."""
    threshold = PARALLEL_COPY_BYTES if min_parallel_bytes is None else min_parallel_bytes
    workers = _numpy_backend.thread_count()
    if dst.nbytes < threshold or workers == 1 or dst.ndim == 0:
        np.copyto(dst, src)
        return
    axis = int(np.argmax(dst.shape))
    pieces = min(workers, dst.shape[axis])
    bounds = [dst.shape[axis] * k // pieces for k in range(pieces + 1)]
    global _copy_pool
    with _copy_pool_lock:
        if _copy_pool is None or _copy_pool._max_workers < workers:
            _copy_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cugrad-copy")
        pool = _copy_pool
    futures = [
        pool.submit(np.copyto, _rows(dst, axis, a, b), _rows(src, axis, a, b))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    for fut in futures:
        fut.result()


def _rows(a: Any, axis: int, start: int, stop: int) -> Any:
    return a[(slice(None),) * axis + (slice(start, stop),)]


# --------------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------------


def memory_order(f: np.ndarray) -> tuple[tuple[int, ...], int]:
    """(axis permutation that lays ``f`` out in C order, the split axis in that order).

    Axes of length 1 go first (they do not matter in memory), then the others from the largest
    stride to the smallest. The split axis is the first one longer than 1, so that a run of its rows
    is one contiguous block of a C-ordered buffer.
    """
    perm = sorted(range(f.ndim), key=lambda ax: (f.shape[ax] != 1, -abs(f.strides[ax])))
    split = sum(1 for n in f.shape if n == 1)
    return tuple(perm), min(split, max(f.ndim - 1, 0))


def offload_gradient(
    plan: GradientPlan,
    f: np.ndarray,
    outs: list[np.ndarray],
    *,
    budget: int | None = None,
    slab_rows: int | None = None,
    executor: Executor | None = None,
) -> None:
    """Write the gradient of the host array ``f`` into the host arrays ``outs``, computed on a GPU.

    ``f`` is streamed through the current CUDA device in slabs (see the module docstring); the
    device holds at most ``budget`` bytes of slab buffers (``budget``, else the module setting
    :data:`budget_bytes`, else ``CUGRAD_OFFLOAD_BUDGET_BYTES``, else a quarter of the free device
    memory). ``f`` may be an ``np.memmap``: it is read one slab at a time. ``outs`` are one array of
    ``f``'s shape and ``plan.out_dtype`` per differentiated axis; outputs that share memory with
    ``f`` are written through temporaries. ``slab_rows`` forces the slab height and ``executor`` the
    device (tests run the pipeline with :class:`NumpyExecutor`).
    """
    if f.size == 0 or not plan.axes:
        return
    if executor is None:
        if not supports(plan, f):
            raise TypeError(
                "CuPy has no equivalent of the dtypes this call needs (long double); "
                'compute it with backend="numpy"'
            )
        executor = CupyExecutor()
    if type(f) is not np.ndarray:
        f = f.view(np.ndarray)  # a memmap stays a lazily read mapping; only its slabs are touched
    if any(np.may_share_memory(o, f) for o in outs):
        # Slab k writes rows that slab k + 1 still reads as its halo: go through fresh outputs.
        fresh = [np.empty_like(o) for o in outs]
        offload_gradient(plan, f, fresh, budget=budget, slab_rows=slab_rows, executor=executor)
        for o, r in zip(outs, fresh, strict=True):
            np.copyto(o, r)
        return

    perm, split = memory_order(f)
    where = {ax: k for k, ax in enumerate(perm)}
    f_mem = f.transpose(perm)
    outs_mem = [o.transpose(perm) for o in outs]
    axis_plans = [native_axis_plan(replace(ap, axis=where[ap.axis])) for ap in plan.axis_plans]

    length = f_mem.shape[split]
    split_plan = next((ap for ap in axis_plans if ap.axis == split), None)
    if slab_rows is None:
        per_row = f.size // length
        free = getattr(executor, "free_bytes", lambda: 1 << 62)
        slab_rows = slab_rows_for_budget(
            resolve_budget(budget, free),
            length=length,
            row_in_bytes=per_row * f.itemsize,
            row_out_bytes=per_row * plan.out_dtype.itemsize,
            outputs=len(axis_plans),
            slots=executor.slots,
            halo_rows=0 if split_plan is None else 2 * split_plan.radius,
        )
    schedule = slab_schedule(length, slab_rows, split_plan=split_plan, slots=executor.slots)
    run_pipeline(executor, axis_plans, plan.data_dtype, plan.out_dtype, f_mem, outs_mem, split,
                 schedule)


def native_axis_plan(ap: AxisPlan) -> AxisPlan:
    """Return the axis plan with its compute dtypes in native byte order, the only one GPUs have."""
    return replace(
        ap, regions=tuple(replace(r, dtype=r.dtype.newbyteorder("=")) for r in ap.regions)
    )


def run_pipeline(
    executor: Executor,
    axis_plans: Sequence[AxisPlan],
    data_dtype: np.dtype,
    out_dtype: np.dtype,
    f: np.ndarray,
    outs: Sequence[np.ndarray],
    split: int,
    schedule: Sequence[Slab],
) -> None:
    """Run ``schedule`` on ``executor``: stage, upload, compute, download, unstage each slab.

    ``f`` and ``outs`` are laid out so that rows of ``split`` are contiguous in a C-ordered buffer
    (see :func:`memory_order`); ``axis_plans`` refer to their axes.
    """
    if not schedule:
        return
    axis_plans = executor.prepare(axis_plans)
    split_plan = next((ap for ap in axis_plans if ap.axis == split), None)
    slots = executor.slots
    capacity = window_capacity(schedule)
    slab_rows = max(s.hi - s.lo for s in schedule)

    def with_rows(rows: int) -> tuple[int, ...]:
        return f.shape[:split] + (rows,) + f.shape[split + 1 :]

    # Staging converts byte-swapped data to native order on the way (GPUs have no other), and the
    # results back to the byte order of the caller's outputs.
    in_dtype = f.dtype.newbyteorder("=")
    data_dtype, out_dtype = data_dtype.newbyteorder("="), out_dtype.newbyteorder("=")
    host_in = [executor.host_buffer(with_rows(capacity), in_dtype) for _ in range(slots)]
    dev_in = [executor.device_buffer(with_rows(capacity), in_dtype) for _ in range(slots)]
    host_out = [[executor.host_buffer(with_rows(slab_rows), out_dtype) for _ in axis_plans]
                for _ in range(slots)]
    dev_out = [[executor.device_buffer(with_rows(slab_rows), out_dtype) for _ in axis_plans]
               for _ in range(slots)]
    in_flight: list[tuple[Slab, Any] | None] = [None] * slots

    def unstage(slot: int) -> None:
        slab, event = in_flight[slot]
        executor.wait(event)
        rows = slab.hi - slab.lo
        for out, staged in zip(outs, host_out[slot], strict=True):
            host_copy(_rows(out, split, slab.lo, slab.hi), _rows(staged, split, 0, rows))
        in_flight[slot] = None

    compute_rows = executor.compute_rows

    def compute(slab: Slab, window: Any, dev_outs: list[Any]) -> None:
        own_rows = _rows(window, split, slab.lo - slab.w0, slab.hi - slab.w0)
        for ap, out in zip(axis_plans, dev_outs, strict=True):
            if ap.axis == split:
                compute_rows(window, out, ap, data_dtype, slab.lo, slab.hi, slab.w0)
            else:
                compute_rows(own_rows, out, ap, data_dtype, 0, ap.length, 0)

    try:
        for slab in schedule:
            slot = slab.slot
            if in_flight[slot] is not None:
                unstage(slot)  # the slot's pinned buffers are free only once its download is done
            rows_in, rows_out = slab.w1 - slab.w0, slab.hi - slab.lo
            staged_in = _rows(host_in[slot], split, 0, rows_in)
            if split_plan is None:
                host_copy(staged_in, _rows(f, split, slab.w0, slab.w1))
            else:  # a periodic window is gathered from both ends of the axis
                at = 0
                for a, b in split_plan.spans(slab.w0, slab.w1):
                    host_copy(_rows(staged_in, split, at, at + b - a), _rows(f, split, a, b))
                    at += b - a
            window = _rows(dev_in[slot], split, 0, rows_in)
            executor.upload(slot, window, staged_in)
            dev_outs = [_rows(o, split, 0, rows_out) for o in dev_out[slot]]
            executor.compute(slot, lambda s=slab, w=window, d=dev_outs: compute(s, w, d))
            for staged, dev in zip(host_out[slot], dev_outs, strict=True):
                executor.download(slot, _rows(staged, split, 0, rows_out), dev)
            in_flight[slot] = (slab, executor.record(slot))
        busy = [k for k in range(slots) if in_flight[k] is not None]
        for slot in sorted(busy, key=lambda k: in_flight[k][0].index):
            unstage(slot)
    finally:
        # Buffers must outlive every transfer queued into them, even when something failed.
        executor.finish()
