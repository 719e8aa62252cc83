"""Execute a :class:`~cugrad._plan.GradientPlan` with NumPy on the CPU.

Bit-identical to numpy.gradient because every value goes through the same ufunc loops in the same
order: ``(f[p] - f[q])`` in the data dtype, then one division in the compute dtype; ``a*f0 + b*f1 +
c*f2`` as three products and two left-to-right sums in the compute dtype. The coefficients are the
objects numpy.gradient builds (see ``_plan``), so NEP 50 picks the same loops.

Faster than numpy.gradient because it writes results straight into the outputs with ufunc ``out=``
(numpy.gradient makes two or five full-size temporaries per axis and then copies), works in slabs that
fit in cache (all axes of a slab while the slab is hot), and runs slabs on worker threads (NumPy
releases the GIL inside ufunc loops). Integer input is cast inside the ufuncs (``dtype=float64``), not
converted up front, so no full-size temporary exists beyond the outputs.
"""

from __future__ import annotations

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from cugrad._plan import AxisPlan, GradientPlan, OperatorPlan, Region, Term

# Below this many elements a call runs in one piece on the calling thread: thread hand-off and slab
# bookkeeping would cost more than they save (the small-input target is parity with numpy.gradient).
PARALLEL_MIN_ELEMENTS = 1 << 16
# Bytes of input per slab: a slab, its halo and the slabs of the outputs stay in a core's L2.
SLAB_BYTES = 1 << 20

_executor: ThreadPoolExecutor | None = None


def thread_count() -> int:
    """Worker threads: ``CUGRAD_NUM_THREADS`` if set, else the CPUs this process may run on."""
    env = os.environ.get("CUGRAD_NUM_THREADS")
    if env:
        try:
            count = int(env)
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"CUGRAD_NUM_THREADS must be a positive integer, got {env!r}")
        return count
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 32))
    except AttributeError:  # not on Linux
        return max(1, min(os.cpu_count() or 1, 32))


def fp_events_raise() -> bool:
    """Whether a floating-point event would raise (``np.errstate`` or a warnings filter) or be
    reported to a callback or log, so that the order of events is observable."""
    modes = set(np.geterr().values())
    if modes & {"raise", "call", "log"}:
        return True
    if "warn" not in modes and "print" not in modes:
        return False
    for action, _message, category, _module, _lineno in warnings.filters:
        if issubclass(RuntimeWarning, category):
            return action == "error"
    return False


def _pool(workers: int) -> ThreadPoolExecutor:
    global _executor
    if _executor is None or _executor._max_workers < workers:
        _executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cugrad")
    return _executor


def execute(plan: GradientPlan, f: np.ndarray, outs: list[np.ndarray]) -> None:
    """Write the gradient of ``f`` along ``plan.axes`` into ``outs`` (one array per axis).

    ``f`` holds the user's data (integers are cast inside the ufuncs); ``outs`` have ``f``'s shape and
    ``plan.out_dtype`` and must not share memory with ``f``.
    """
    from cugrad import _numba_backend  # the compiled engine (CUGRAD_CPU_ENGINE), when it applies

    if _numba_backend.execute(plan, f, outs):
        return

    def whole() -> None:
        for ap, out in zip(plan.axis_plans, outs, strict=True):
            compute_rows(f, out, ap, plan.data_dtype, 0, ap.length, 0)

    _run_in_slabs(f, whole, lambda split, c0, c1: _slab(plan, f, outs, split, c0, c1))


def execute_fused(plan: OperatorPlan, sources: list[np.ndarray], outs: list[np.ndarray]) -> None:
    """Write each output of a derived operator (magnitude, divergence, curl, Laplacian) into ``outs``.

    Every output is computed slab by slab: its terms (derivatives of ``sources``) go through one
    slab-sized buffer and are combined into the output slab while the slab is in cache, so no
    derivative array of full size exists. The combination is the numpy composition's, ufunc for
    ufunc, in the output dtype.
    """
    from cugrad import _numba_backend  # the compiled engine (CUGRAD_CPU_ENGINE), when it applies

    if _numba_backend.execute_fused(plan, sources, outs):
        return

    def whole() -> None:
        _fused_rows(plan, sources, outs, None, 0, 0)

    _run_in_slabs(sources[0], whole,
                  lambda split, c0, c1: _fused_rows(plan, sources, outs, split, c0, c1))


def _run_in_slabs(f: np.ndarray, whole: Any, slab: Any) -> None:
    """Run ``whole()`` for small arrays, else ``slab(split, c0, c1)`` over slabs on worker threads."""
    if f.size and fp_events_raise():
        # Under np.errstate(..="raise") or warnings turned into errors, the first floating-point
        # event decides the exception: evaluate as numpy does, axis after axis, each region over
        # the whole array, on this thread.
        whole()
        return
    if f.size < PARALLEL_MIN_ELEMENTS:
        if f.size:
            whole()
        return
    workers = thread_count()

    # Split the outermost axis in memory into slabs; each worker takes a contiguous run of slabs so
    # that the halo rows a slab reads were just read by the slab before it.
    split = max(
        (ax for ax in range(f.ndim) if f.shape[ax] > 1), key=lambda ax: abs(f.strides[ax])
    )
    rows = f.shape[split]
    row_bytes = f.itemsize * (f.size // rows)
    slab_rows = max(1, SLAB_BYTES // max(row_bytes, 1))
    workers = min(workers, math.ceil(rows / slab_rows))
    bounds = [rows * w // workers for w in range(workers + 1)]
    err = np.geterr()  # np.errstate is per thread: carry the caller's settings to the workers

    def run(r0: int, r1: int) -> None:
        with np.errstate(**err):
            for c0 in range(r0, r1, slab_rows):
                slab(split, c0, min(c0 + slab_rows, r1))

    if workers == 1:
        run(0, rows)
        return
    futures = [_pool(workers).submit(run, bounds[w], bounds[w + 1]) for w in range(1, workers)]
    try:
        run(bounds[0], bounds[1])
    finally:
        for fut in futures:
            fut.result()


def _fused_rows(plan: OperatorPlan, sources, outs, split: int | None, c0: int, c1: int) -> None:
    """The rows ``[c0, c1)`` of the split axis (every row when ``split`` is None) of every output."""
    for output, out in zip(plan.outputs, outs, strict=True):
        o = out if split is None else _rows(out, split, c0, c1)

        def term(t: Term, dest: np.ndarray) -> None:
            src, ap = sources[t.source], t.axis_plan
            if split is None:
                compute_rows(src, dest, ap, plan.data_dtype, 0, ap.length, 0)
            elif ap.axis == split:
                compute_rows(src, dest, ap, plan.data_dtype, c0, c1, 0)
            else:
                compute_rows(_rows(src, split, c0, c1), dest, ap, plan.data_dtype, 0, ap.length, 0)

        first, rest = output.terms[0], output.terms[1:]
        buf = np.empty(o.shape, o.dtype)
        if output.combine == "magnitude":  # sqrt((t0*t0 + t1*t1) + t2*t2 ...)
            term(first, buf)
            np.multiply(buf, buf, out=o)
            for t in rest:
                term(t, buf)
                np.multiply(buf, buf, out=buf)
                np.add(o, buf, out=o)
            np.sqrt(o, out=o)
        elif output.combine == "difference":  # t0 - t1
            term(first, o)
            term(rest[0], buf)
            np.subtract(o, buf, out=o)
        else:  # "sum": (t0 + t1) + t2 ...
            term(first, o)
            for t in rest:
                term(t, buf)
                np.add(o, buf, out=o)


def _slab(plan: GradientPlan, f, outs, split: int, c0: int, c1: int) -> None:
    """All requested axes of the rows ``[c0, c1)`` of the split axis."""
    f_slab = _rows(f, split, c0, c1)
    for ap, out in zip(plan.axis_plans, outs, strict=True):
        if ap.axis == split:
            compute_rows(f, _rows(out, split, c0, c1), ap, plan.data_dtype, c0, c1, 0)
        else:
            compute_rows(f_slab, _rows(out, split, c0, c1), ap, plan.data_dtype, 0, ap.length, 0)


def _rows(a: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    return a[(slice(None),) * axis + (slice(start, stop),)]


def compute_rows(
    f: np.ndarray,
    out: np.ndarray,
    ap: AxisPlan,
    data_dtype: np.dtype,
    lo: int,
    hi: int,
    f_start: int,
) -> None:
    """Rows ``[lo, hi)`` (global indices along ``ap.axis``) of the derivative along ``ap.axis``.

    ``f`` is a window of the input whose first row along the axis is global row ``f_start``; it must
    hold every row the regions read (``ap.window(lo, hi)``). Global row ``j`` is window row
    ``j - f_start`` when that is inside the window, else (periodic axes, whole-axis windows) window
    row ``(j mod n) - f_start``. ``out[0]`` along the axis receives global row ``lo``. Slabs, dask
    blocks and streamed GPU slabs all reduce to this.
    """
    k, n = ap.axis, ap.length
    size = f.shape[k]
    # Integer data is differenced in float64 (numpy converts it first); a cast inside the ufunc does
    # the same without a converted copy. Float data needs no dtype argument, which is cheaper.
    cast = None if f.dtype == data_dtype else data_dtype
    for index, region in enumerate(ap.regions):
        r0, r1 = max(lo, region.start), min(hi, region.stop)
        if r1 <= r0:
            continue
        if f.ndim == 1 and ap.numpy_form and index > 0:
            # numpy reads the edge rows of a 1-D array as numpy scalars (f[0], f[1], ...), and
            # numpy's scalar arithmetic may round differently from its array loops (complex
            # multiplication is fused on FMA hardware in the loops, not in the scalars).
            _scalar_row(f, out, region, data_dtype, r0, lo, f_start)
            continue
        # Rows whose every read lies in the window without wrapping go in one vectorised block.
        d0 = max(r0, f_start - min(region.offsets))
        d1 = min(r1, f_start + size - max(region.offsets))
        if d1 > d0:
            _region_block(f, out, region, k, cast, d0, d1, lo, lambda j: j - f_start)
        else:
            d0 = d1 = r0
        if (d0 > r0 or d1 < r1) and not region.wrap:
            raise ValueError(f"the window of rows from {f_start} does not hold what rows "
                             f"[{r0}, {r1}) read")  # a caller's bug, never a user's
        for i in (*range(r0, d0), *range(max(d1, r0), r1)):
            _region_block(f, out, region, k, cast, i, i + 1, lo, lambda j: (j % n) - f_start)


def _region_block(f, out, region: Region, k: int, cast, i0: int, i1: int, lo: int, row) -> None:
    """Output rows ``[i0, i1)`` of one region; ``row(j)`` is the window row of global row ``j``."""
    pre = (slice(None),) * k

    def rows(offset: int) -> np.ndarray:
        a = row(i0 + offset)
        return f[pre + (slice(a, a + i1 - i0),)]

    o = out[pre + (slice(i0 - lo, i1 - lo),)]
    weights = region.weights
    if any(isinstance(w, np.ndarray) for w in weights):
        bshape = (1,) * k + (i1 - i0,) + (1,) * (f.ndim - k - 1)
        weights = tuple(
            w[i0 - region.start : i1 - region.start].reshape(bshape)
            if isinstance(w, np.ndarray) else w
            for w in weights
        )
    if region.kind == "diff":
        p, q = region.offsets
        _diff(o, rows(p), rows(q), weights[0], cast)
    elif region.kind == "comb":
        _comb(o, weights, [rows(j) for j in region.offsets], region.dtype)
    else:
        _dsum(o, weights, [(rows(p), rows(q)) for p, q in region.pairs], region.dtype, cast)


def _scalar_row(f, out, region: Region, data_dtype: np.dtype, i: int, lo: int, f_start: int) -> None:
    """One edge row of a 1-D array from numpy scalars, as numpy.gradient computes it."""
    value = [data_dtype.type(f[i + o - f_start]) for o in region.offsets]
    if region.kind == "diff":
        result = (value[0] - value[1]) / region.weights[0]
    else:
        a, b, c = region.weights
        result = a * value[0] + b * value[1] + c * value[2]
    out[i - lo] = result


def _diff(o: np.ndarray, fp: np.ndarray, fq: np.ndarray, d: Any, cast: np.dtype | None) -> None:
    # numpy: (fp - fq) / d. The difference is in the data dtype, which is the output dtype, so it can
    # live in the output; the division reads it back and NEP 50 picks the compute dtype from the
    # output dtype and the coefficient, as it does for numpy's temporary.
    if cast is None:
        np.subtract(fp, fq, out=o)
    else:
        np.subtract(fp, fq, out=o, dtype=cast)
    np.divide(o, d, out=o)


def _comb(o: np.ndarray, coef: tuple[Any, ...], fs: list[np.ndarray], dtype: np.dtype) -> None:
    # numpy: a*f0 + b*f1 + c*f2, products and sums in the compute dtype, rounded once into o. The
    # dtype argument matters for integer data, which numpy has converted to float64 beforehand.
    last = len(fs) - 1
    if dtype.kind == "m":
        dtype = None  # timedelta64: numpy's own loops (real x timedelta -> timedelta), no forcing
    t = np.empty(o.shape, o.dtype if dtype is None else dtype)
    acc = o if dtype is None or o.dtype == dtype else np.empty(o.shape, dtype)
    np.multiply(coef[0], fs[0], out=acc, dtype=dtype)
    for j in range(1, last + 1):
        np.multiply(coef[j], fs[j], out=t, dtype=dtype)
        np.add(acc, t, out=o if j == last else acc, dtype=dtype)
    if last == 0 and acc is not o:
        np.copyto(o, acc, casting="same_kind")


def _dsum(o: np.ndarray, coef: tuple[Any, ...], pairs: list[tuple[np.ndarray, np.ndarray]],
          dtype: np.dtype, cast: np.dtype | None) -> None:
    # cugrad: w0*(fp0 - fq0) + w1*(fp1 - fq1) + ..., differences in the data dtype, products and
    # sums in the compute dtype left to right, rounded once into o.
    data_dtype = (cast if cast is not None else pairs[0][0].dtype).newbyteorder("=")
    last = len(pairs) - 1
    diff = np.empty(o.shape, data_dtype)
    prod = diff if data_dtype == dtype else np.empty(o.shape, dtype)
    acc = o if o.dtype == dtype else np.empty(o.shape, dtype)
    for j, (fp, fq) in enumerate(pairs):
        np.subtract(fp, fq, out=diff, dtype=cast)
        if j == 0:
            np.multiply(coef[0], diff, out=acc if last else o, dtype=dtype)
        else:
            np.multiply(coef[j], diff, out=prod, dtype=dtype)
            np.add(acc, prod, out=o if j == last else acc, dtype=dtype)
