"""numpy.gradient of dask arrays: lazy, any chunking, bit-identical to the in-memory result.

The arguments are validated once, on the driver, by the same :func:`~cugrad._plan.make_plan` as
every other input (applied to a stand-in with the dask array's shape and dtype, which allocates
nothing), so numpy's exceptions are raised at call time. Each output block of the derivative along
an axis is then one task that reads exactly the input rows its stencil needs: the block's own rows,
one row either side, and the first or last three rows of the axis for second-order edges. Those rows
may come from several input blocks (chunks can be as small as one row, which ``dask.array.gradient``
refuses), so each task concatenates thin slices of its neighbours and calls ``compute_rows`` of the
backend that matches the chunk type (NumPy or CuPy). The axis plan, which holds the coefficient
tables of coordinate spacings, is one key of the graph, shipped to each worker once rather than
embedded in every task.
"""

from __future__ import annotations

import bisect
import math
import operator
from itertools import product
from typing import Any

import numpy as np

from cugrad import _backend, _numpy_backend
from cugrad._offload import native_axis_plan
from cugrad._plan import AxisPlan, Delegate, GradientPlan, make_plan


def dask_gradient(
    f: Any,
    varargs: tuple[Any, ...],
    *,
    axis: Any,
    edge_order: Any,
    out: Any,
    stack: bool,
    backend: str,
    **options: Any,
) -> Any:
    """``cugrad.gradient`` of a dask array: lazy dask arrays in numpy.gradient's container.

    One array for one axis, a tuple for several, ``()`` for a 0-d input or ``axis=()``, one array
    of shape ``(len(axes),) + f.shape`` with ``stack=True``. Blocks keep the input's chunking and
    chunk type: NumPy chunks give NumPy chunks, CuPy chunks (for example ``x.map_blocks(
    cupy.asarray)`` on a dask-cuda cluster) are computed on their worker's GPU and give CuPy chunks.
    ``backend="cupy"`` computes NumPy chunks on the workers' GPUs and returns NumPy chunks;
    ``backend="numpy"`` refuses CuPy chunks (they are never moved to the host silently).

    Spacing is given as numbers or NumPy (or CuPy) arrays; coordinates are needed on the driver to
    plan the work (numpy's test for evenly spaced coordinates decides the formula), so dask arrays
    of coordinates are refused: ``.compute()`` them first.

    ``out=`` is not supported (dask arrays are immutable; store the result with ``da.store``), nor
    are the dtypes numpy.gradient treats through special code that has no blockwise equivalent
    (object, bool, strings): both raise ``TypeError``. datetime64 and timedelta64 data give
    timedelta64 results, computed with numpy's own timedelta loops, as numpy.gradient's.
    """
    device_chunks = _backend.is_cupy_array(f._meta)
    if device_chunks and backend == "numpy":
        raise TypeError(
            'backend="numpy" was asked for a dask array of CuPy chunks; cugrad never moves device '
            'arrays to the host silently: use backend="cupy" (or None), or convert the chunks '
            "yourself with x.map_blocks(cupy.asnumpy)"
        )
    upload = backend == "cupy" and not device_chunks
    if upload:
        _backend.require_gpu()
    if any(isinstance(n, float) and math.isnan(n) for n in f.shape):
        raise ValueError(
            "the dask array has unknown chunk sizes, so the rows each block needs are unknown: "
            "call x.compute_chunk_sizes() first"
        )

    spacing = tuple(_host_spacing(v, i) for i, v in enumerate(varargs))
    try:
        plan = make_plan(_stand_in(f.shape, f.dtype, device_chunks), spacing, axis, edge_order,
                         temporal=not device_chunks, **options)
    except Delegate:
        raise TypeError(
            f"cugrad does not differentiate dask arrays of dtype {f.dtype} (numpy.gradient treats "
            "it through special code); use a numeric dtype, or dask's own map_overlap"
        ) from None
    if out is not None:
        raise TypeError(
            "out= is not supported for dask arrays, which are immutable; the result is lazy: "
            "write it where you need it with dask.array.store"
        )

    arrays = [_axis_gradient(f, plan, ap, upload) for ap in plan.axis_plans]
    if stack:
        import dask.array as da

        if not arrays:
            return da.empty((0,) + f.shape, dtype=plan.out_dtype)
        return da.stack(arrays)
    if len(arrays) == 1:
        return arrays[0]
    return tuple(arrays)


def _stand_in(shape: tuple[int, ...], dtype: Any, device: bool) -> Any:
    """Return an object ``make_plan`` reads like the array (shape, dtype, where), of no size."""
    if device:
        return _DeviceStandIn(tuple(shape), np.dtype(dtype))
    # A read-only broadcast view of one element: an ndarray of the right shape, no allocation.
    return np.broadcast_to(np.empty((), dtype), shape)


class _DeviceStandIn:
    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.shape, self.dtype, self.ndim = shape, dtype, len(shape)


def _host_spacing(v: Any, i: int) -> Any:
    if _backend.is_dask_array(v):
        raise TypeError(
            f"spacing argument {i} is a dask array; coordinates are needed when the work is "
            "planned: pass a NumPy array (call .compute() on it first)"
        )
    if _backend.is_cupy_array(v):
        return v.get()  # the plan is made on the driver and shipped to every worker
    return v


def _axis_gradient(f: Any, plan: GradientPlan, ap: AxisPlan, upload: bool) -> Any:
    """Return the lazy derivative along ``ap.axis``: one task per block, reading its window."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    k = ap.axis
    bounds = [0, *np.cumsum(f.chunks[k]).tolist()]
    token = tokenize(f.name, k, plan.edge_order, plan.data_dtype, plan.out_dtype, ap, upload)
    name = f"cugrad-gradient-axis{k}-{token}"
    plan_key = (f"cugrad-axisplan-{token}",)
    layer: dict[Any, Any] = {plan_key: native_axis_plan(ap)}
    for index in product(*(range(len(c)) for c in f.chunks)):
        b = index[k]
        lo, hi = bounds[b], bounds[b + 1]
        pieces = []
        if hi > lo:
            w0, w1 = ap.window(lo, hi)
            # A periodic window may wrap: gather its rows from both ends of the axis, in order.
            for s0, s1 in ap.spans(w0, w1):
                for j in range(bisect.bisect_right(bounds, s0) - 1, len(f.chunks[k])):
                    start, stop = bounds[j], bounds[j + 1]
                    if start >= s1:
                        break
                    if stop == start:
                        continue
                    key = (f.name, *index[:k], j, *index[k + 1 :])
                    a, z = max(s0, start) - start, min(s1, stop) - start
                    if a == 0 and z == stop - start:
                        pieces.append(key)
                    else:
                        pieces.append((operator.getitem, key, (slice(None),) * k + (slice(a, z),)))
        else:
            w0 = lo
            pieces.append((f.name, *index))  # an empty block: its (empty) self gives the shape
        layer[(name, *index)] = (
            _gradient_block, pieces, plan_key, plan.data_dtype, plan.out_dtype, lo, hi, w0, upload
        )
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[f])
    meta = da.utils.meta_from_array(f._meta, f.ndim, dtype=plan.out_dtype)
    if upload:
        meta = np.empty((0,) * f.ndim, plan.out_dtype)
    return da.Array(graph, name, f.chunks, meta=meta)


def _gradient_block(
    pieces: list[Any],
    ap: AxisPlan,
    data_dtype: np.dtype,
    out_dtype: np.dtype,
    lo: int,
    hi: int,
    w0: int,
    upload: bool,
) -> Any:
    """Compute rows ``[lo, hi)`` of the derivative along ``ap.axis``; input rows start at ``w0``."""
    k = ap.axis
    on_device = _backend.is_cupy_array(pieces[0])
    if on_device or upload:
        import cupy

        from cugrad import _cupy_backend

        xp, compute_rows = cupy, _cupy_backend.compute_rows
        pieces = [cupy.asarray(p) for p in pieces]
    else:
        xp, compute_rows = np, _numpy_backend.compute_rows
    window = pieces[0] if len(pieces) == 1 else xp.concatenate(pieces, axis=k)
    if window.dtype.kind == "M":
        window = window.view(out_dtype)  # numpy differences datetimes as timedeltas of one unit
    if not window.dtype.isnative:
        window = window.astype(window.dtype.newbyteorder("="))  # the ufunc loops need native data
    shape = window.shape[:k] + (hi - lo,) + window.shape[k + 1 :]
    out = xp.empty(shape, out_dtype.newbyteorder("="))
    if out.size:
        compute_rows(window, out, ap, data_dtype.newbyteorder("="), lo, hi, w0)
    if upload:
        out = out.get()
    # numpy.gradient's result keeps a byte-swapped input's byte order.
    return out if out.dtype == out_dtype else out.astype(out_dtype)
