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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from cugrad._plan import AxisPlan, GradientPlan, Stencil

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
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"CUGRAD_NUM_THREADS must be a positive integer, got {env!r}") from None
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 32))
    except AttributeError:  # not on Linux
        return max(1, min(os.cpu_count() or 1, 32))


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
    if f.size < PARALLEL_MIN_ELEMENTS:
        if f.size:
            for ap, out in zip(plan.axis_plans, outs):
                compute_rows(f, out, ap, plan.data_dtype, 0, ap.length, 0)
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
                _slab(plan, f, outs, split, c0, min(c0 + slab_rows, r1))

    if workers == 1:
        run(0, rows)
        return
    futures = [_pool(workers).submit(run, bounds[w], bounds[w + 1]) for w in range(1, workers)]
    try:
        run(bounds[0], bounds[1])
    finally:
        for fut in futures:
            fut.result()


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
    hold every row the stencil reads (one row either side of the interior, the first or last three
    rows for second-order edges). ``out[0]`` along the axis receives global row ``lo``. Slabs, dask
    blocks and streamed GPU slabs all reduce to this.
    """
    k, n = ap.axis, ap.length
    pre = (slice(None),) * k
    s = -f_start
    # Integer data is differenced in float64 (numpy converts it first); a cast inside the ufunc does
    # the same without a converted copy. Float data needs no dtype argument, which is cheaper.
    cast = None if f.dtype == data_dtype else data_dtype

    i0, i1 = max(lo, 1), min(hi, n - 1)
    if i1 > i0:
        o = out[pre + (slice(i0 - lo, i1 - lo),)]
        st = ap.interior
        if st.kind == "diff":
            _diff(o, f[pre + (slice(i0 + 1 + s, i1 + 1 + s),)], f[pre + (slice(i0 - 1 + s, i1 - 1 + s),)],
                  st, cast)
        else:
            bshape = (1,) * k + (i1 - i0,) + (1,) * (f.ndim - k - 1)
            coef = tuple(c[i0 - 1 : i1 - 1].reshape(bshape) for c in st.coef)
            fs = tuple(f[pre + (slice(i0 + d + s, i1 + d + s),)] for d in (-1, 0, 1))
            _comb(o, coef, fs, st.dtype)
    if lo == 0:
        o = out[pre + (slice(0, 1),)]
        if ap.left.kind == "diff":
            _diff(o, f[pre + (slice(1 + s, 2 + s),)], f[pre + (slice(s, 1 + s),)], ap.left, cast)
        else:
            _comb(o, ap.left.coef, tuple(f[pre + (slice(j + s, j + 1 + s),)] for j in (0, 1, 2)),
                  ap.left.dtype)
    if hi == n:
        o = out[pre + (slice(n - 1 - lo, n - lo),)]
        if ap.right.kind == "diff":
            _diff(o, f[pre + (slice(n - 1 + s, n + s),)], f[pre + (slice(n - 2 + s, n - 1 + s),)],
                  ap.right, cast)
        else:
            _comb(o, ap.right.coef,
                  tuple(f[pre + (slice(j + s, j + 1 + s),)] for j in (n - 3, n - 2, n - 1)),
                  ap.right.dtype)


def _diff(o: np.ndarray, fp: np.ndarray, fq: np.ndarray, st: Stencil, cast: np.dtype | None) -> None:
    # numpy: (fp - fq) / d. The difference is in the data dtype, which is the output dtype, so it can
    # live in the output; the division reads it back and NEP 50 picks the compute dtype from the
    # output dtype and the coefficient, as it does for numpy's temporary.
    if cast is None:
        np.subtract(fp, fq, out=o)
    else:
        np.subtract(fp, fq, out=o, dtype=cast)
    np.divide(o, st.coef[0], out=o)


def _comb(o: np.ndarray, coef: tuple[Any, ...], fs: tuple[np.ndarray, ...], dtype: np.dtype) -> None:
    # numpy: a*f0 + b*f1 + c*f2, products and sums in the compute dtype, rounded once into o. The
    # dtype argument matters for integer data, which numpy has converted to float64 beforehand.
    (a, b, c), (f0, f1, f2) = coef, fs
    t = np.empty(o.shape, dtype)
    acc = o if o.dtype == dtype else np.empty(o.shape, dtype)
    np.multiply(a, f0, out=acc, dtype=dtype)
    np.multiply(b, f1, out=t, dtype=dtype)
    np.add(acc, t, out=acc)
    np.multiply(c, f2, out=t, dtype=dtype)
    np.add(acc, t, out=o, dtype=dtype)
