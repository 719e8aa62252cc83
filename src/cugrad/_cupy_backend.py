"""Execute a :class:`~cugrad._plan.GradientPlan` on a CUDA GPU with CuPy.

Two kernel paths compute the same bits (the operation order lives once, in
``kernels/gradient_stencils.cuh``'s ``cg_stencil``; the plan's regions say which rows use which
offsets and weights, and no code here derives a weight):

* the fast path, the RawKernel ``cugrad_gradient_fast`` (``kernels/gradient_fast.cu``): C-contiguous
  float32, float64 or integer data and outputs, one compute dtype, host weights; EVERY requested
  axis in one launch that reads the input once and writes each output once. Each axis's regions
  are lowered here into a body (rows whose stencil stays inside the axis, in one of the kernel's
  canonical forms) and one record per other row (edge rows, and the rows of a periodic axis whose
  stencil wraps, with the wrap resolved into plain rows);
* the general path, an ElementwiseKernel around ``cg_general_point``
  (``kernels/gradient_general.cuh``): any layout (Fortran order, negative strides, views), float16,
  complex, mixed promotions, device coordinates, any region list; one launch per axis. It is also
  :func:`compute_rows`, the "rows [lo, hi) of one axis from a window of f" primitive that slabbed
  and blocked callers use.

Everything is queued on the current device's current stream; nothing here waits for the GPU.
Weight tables built on the host are uploaded with ``cupy.asarray``; plans whose coordinates live
on the device keep them there, and the kernel reads numpy's "evenly spaced" test from device
memory instead of the host asking for it.

The index arithmetic, the launch configuration, the choice of path and variant, and the packing of
the kernel arguments are plain Python over :class:`ArrayInfo` descriptions and ``xp`` (numpy or
cupy), so the CPU tests check them, and the emulation tests launch the real kernel sources with
exactly these arguments. The CuPy glue at the bottom is thin.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cugrad import _kernels
from cugrad._kernels import (
    DEFAULT_TUNING,
    FAST_MAX_EDGE,
    FAST_MAX_PLANE_AXES,
    FAST_RMAX,
    FORM_COMB3,
    FORM_DCOORD,
    FORM_DIFF,
    FORM_DSYM,
    KIND_CODES,
    MAX_OFFSETS,
    MAX_TERMS,
    FastTuning,
)
from cugrad._plan import AxisPlan, GradientPlan, OperatorPlan

# Byte extent from which element indices need 64 bits (cupyx's _util._get_inttype rule).
INT32_LIMIT = 2**31
# Resident threads per SM on Volta .. Hopper: the grid is sized for this many per SM.
THREADS_PER_SM = 2048

# One row's stencil in device memory (gradient_fast.cu's cg_fast_rec).
FAST_REC_DTYPE = np.dtype([("kind", "<i4"), ("nterms", "<i4"), ("off", "<i4", (MAX_OFFSETS,)),
                           ("w", "<f8", (MAX_TERMS,))])
_AXIS_FIELDS = [
    ("n", "<i8"),
    ("stride", "<i8"),
    ("pstride", "<i8"),
    ("b_lo", "<i8"),
    ("b_hi", "<i8"),
    ("form", "<i8"),
    ("m", "<i8"),
    ("wstride", "<i8"),
    ("out", "<u8"),
    ("wrow", "<u8"),
    ("recs", "<u8"),
    ("flag", "<u8"),
    ("form_alt", "<i8"),
    ("m_alt", "<i8"),
    ("recs_alt", "<u8"),
]
FAST_AXIS_DTYPE = np.dtype(_AXIS_FIELDS)
# The kernel's cg_fast_params, field for field (every field 8 bytes wide: no padding anywhere).
FAST_PARAMS_DTYPE = np.dtype(
    [(name, "<i8") for name in ("W", "H", "P", "nxc", "nyt", "nvec", "nsl", "nsr", "nitems",
                                "phase", "nbr_vec", "xlo", "xhi", "has_x", "has_y", "nplanes")]
    + [("x", FAST_AXIS_DTYPE), ("y", FAST_AXIS_DTYPE),
       ("plane", FAST_AXIS_DTYPE, (FAST_MAX_PLANE_AXES,)), ("f", "<u8")]
)
# The general kernel's region records (gradient_general.cuh's CG_GREC_*).
GREC_FIELDS = ("start", "stop", "kind", "nterms", "wrap", "slot", "per_row", "wbase")
GREC_SIZE = len(GREC_FIELDS) + MAX_OFFSETS


# ------------------------------------------------------------------------------------------------
# Descriptions of arrays (numpy or cupy) and pointers
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArrayInfo:
    """What the path choice needs to know about an array, host or device."""

    shape: tuple[int, ...]
    dtype: np.dtype
    ptr: int
    nbytes: int
    c_contiguous: bool

    @classmethod
    def of(cls, a: Any) -> ArrayInfo:
        return cls(tuple(a.shape), np.dtype(a.dtype), pointer(a), int(a.nbytes),
                   bool(a.flags.c_contiguous))


def pointer(a: Any) -> int:
    """The address of the first element: device pointer for CuPy, host pointer for numpy."""
    if isinstance(a, np.ndarray):
        return int(a.ctypes.data)
    return int(a.data.ptr)


def _is_host_value(v: Any) -> bool:
    return isinstance(v, (bool, int, float, complex, np.generic, np.ndarray))


def host_scalar(value: Any, dtype: np.dtype) -> Any:
    """A host weight in the compute dtype, converted as numpy converts it.

    Python scalars are NEP 50 "weak": numpy converts them with ``dtype.type(value)``; numpy
    scalars and 0-d arrays widen exactly.
    """
    if isinstance(value, (bool, int, float, complex)):
        return dtype.type(value)
    return np.asarray(value).astype(dtype)[()]


def region_nterms(kind: str, offsets: tuple[int, ...]) -> int:
    """Weights of a region: 1 for diff, one per offset for comb, one per pair for dsum."""
    return {"diff": 1, "comb": len(offsets), "dsum": len(offsets) // 2}[kind]


# ------------------------------------------------------------------------------------------------
# Geometry of the fast path
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AxisRole:
    role: str  # "x", "y" or "plane"
    n: int
    stride: int  # elements between neighbours along the axis
    pstride: int  # plane axes: planes between neighbours


@dataclass(frozen=True)
class FastGeometry:
    """A C-contiguous shape as P planes of H rows of W elements, and each axis's place in it."""

    W: int
    H: int
    P: int
    roles: dict[int, AxisRole]

    @property
    def plane_axes(self) -> list[int]:
        return [ax for ax, r in self.roles.items() if r.role == "plane"]


def collapse(shape: tuple[int, ...], axes: tuple[int, ...] | list[int]) -> FastGeometry:
    """Merge unrequested neighbouring dimensions, drop size-1 ones, name the roles of the axes.

    Merging keeps every element's C-order index, so strides in elements stay products of the
    collapsed dimensions after an axis.
    """
    requested = set(axes)
    dims: list[int] = []
    owners: list[int | None] = []  # the requested axis of each collapsed dim, None for merged ones
    for ax, length in enumerate(shape):
        if ax in requested:
            dims.append(length)
            owners.append(ax)
        elif length != 1:
            if owners and owners[-1] is None:
                dims[-1] *= length
            else:
                dims.append(length)
                owners.append(None)
    if not dims:
        dims, owners = [1], [None]
    W = dims[-1]
    H = dims[-2] if len(dims) >= 2 else 1
    P = math.prod(dims[:-2])
    roles: dict[int, AxisRole] = {}
    for d, owner in enumerate(owners):
        if owner is None:
            continue
        stride = math.prod(dims[d + 1:])
        if d == len(dims) - 1:
            roles[owner] = AxisRole("x", dims[d], 1, 0)
        elif d == len(dims) - 2:
            roles[owner] = AxisRole("y", dims[d], stride, 0)
        else:
            roles[owner] = AxisRole("plane", dims[d], stride, stride // (H * W))
    return FastGeometry(W, H, P, roles)


def split_axes(shape: tuple[int, ...], axes: list[int]) -> list[list[int]]:
    """Groups of axes, each within one launch's limit of plane axes, all axes of a group at once.

    Axes are taken from the last dimension backwards, so the contiguous ones stay x and y.
    """
    groups: list[list[int]] = []
    current: list[int] = []
    for ax in sorted(axes, reverse=True):
        trial = sorted(current + [ax])
        if len(collapse(shape, trial).plane_axes) <= FAST_MAX_PLANE_AXES:
            current = trial
        else:
            groups.append(current)
            current = [ax]
    if current:
        groups.append(current)
    return groups


def chunk_start(g: int, W: int, phase: int, xlo: int, vec: int) -> int:
    """Return the first column of row ``g`` at or after ``xlo`` where a V-aligned chunk starts.

    The kernel's ``cg_fast_chunk_start``, for the tests and the item counts.
    """
    mis = (phase + g * W + xlo) % vec
    return xlo + (0 if mis == 0 else vec - mis)


@dataclass(frozen=True)
class FastWork:
    """The work items of one launch: vector tiles, then one item per element outside the chunks."""

    nxc: int  # chunks per row, at most
    nyt: int  # row groups per plane
    nvec: int  # vector tiles
    nsl: int  # scalar items per row before the first chunk
    nsr: int  # and after the last
    nitems: int
    xlo: int
    xhi: int

    @property
    def nscalar(self) -> int:
        return self.nitems - self.nvec


def fast_work(geom: FastGeometry, vec: int, phase: int, xlo: int, xhi: int,
              rows_per_thread: int) -> FastWork:
    """Count the work items of a launch.

    Vector tiles cover the V-aligned chunks of x's body columns ``[xlo, xhi)``; one-element items
    the rest of every row (x's edge columns, the unaligned head and tail of a row).
    """
    W, rows = geom.W, geom.H * geom.P
    nxc = max(0, (xhi - xlo) // vec)
    nyt = -(-geom.H // rows_per_thread)
    if W % vec == 0:
        # every row starts at the same alignment: the head and tail are the same in every row
        hs = chunk_start(0, W, phase, xlo, vec)
        nc = (xhi - hs) // vec if xhi > hs else 0
        nsl, nsr = min(hs, W), W - (hs + nc * vec)
        nxc = nc
    else:
        nsl, nsr = xlo + vec - 1, (W - xhi) + vec - 1
    nvec = nxc * nyt * geom.P
    return FastWork(nxc, nyt, nvec, nsl, nsr, nvec + (nsl + nsr) * rows, xlo, xhi)


def launch_config(nitems: int, sm_count: int | None,
                  tuning: FastTuning = DEFAULT_TUNING) -> tuple[int, int]:
    """(blocks, threads per block): enough resident blocks to fill the GPU, grid-stride beyond.

    ``sm_count=None`` gives one item per thread (the CPU emulation runs chosen blocks of it).
    """
    block = tuning.block
    blocks = max(1, -(-nitems // block))
    if sm_count is not None:
        blocks = min(blocks, sm_count * (THREADS_PER_SM // block))
    return min(blocks, 2**31 - 1), block


def index_width(*nbytes: int) -> str:
    """"i32" below a byte extent of 2**31, else "i64" (cupyx's ``_get_inttype`` rule)."""
    return "i64" if max(nbytes, default=0) >= INT32_LIMIT else "i32"


def choose_vec(in_dtype: np.dtype, f_ptr: int, out_ptrs: list[int], out_itemsize: int) -> int:
    """The widest access the fast path has for this input, if the outputs share f's alignment.

    The chunks of a row start at V-aligned addresses whatever W is and wherever f starts; the
    outputs are stored at the same element offsets, so they must sit at the same distance from
    alignment as f (always so for arrays CuPy allocates).
    """
    itemsize = np.dtype(in_dtype).itemsize
    for vec in sorted(_kernels.fast_vector_widths(in_dtype), reverse=True):
        if vec == 1:
            return 1
        if out_itemsize != itemsize or f_ptr % itemsize:
            continue
        if all((p - f_ptr) % (vec * itemsize) == 0 for p in out_ptrs):
            return vec
    return 1


def phase_of(f_ptr: int, itemsize: int, vec: int) -> int:
    return (f_ptr // itemsize) % vec if vec > 1 else 0


# ------------------------------------------------------------------------------------------------
# Lowering an axis's regions for the fast path
# ------------------------------------------------------------------------------------------------


def _sym_offsets(m: int) -> tuple[int, ...]:
    return tuple(o for k in range(1, m + 1) for o in (k, -k))


def _coord_offsets(m: int) -> tuple[int, ...]:
    return tuple(v for o in (*range(-m, 0), *range(1, m + 1)) for v in (o, 0))


def body_form(region: Any) -> tuple[int, int] | None:
    """(canonical form, reach) of a region the fast path can run as its body, or None."""
    offsets = tuple(region.offsets)
    if region.kind == "diff" and offsets == (1, -1):
        return FORM_DIFF, 1
    if region.kind == "comb" and offsets == (-1, 0, 1):
        return FORM_COMB3, 1
    if region.kind == "dsum":
        for m in range(1, FAST_RMAX + 1):
            if offsets == _sym_offsets(m):
                return FORM_DSYM, m
            if offsets == _coord_offsets(m):
                return FORM_DCOORD, m
    return None


@dataclass
class FastVariantRows:
    """One variant of an axis lowered for the fast path: a body and a record per other row.

    ``records`` hold kinds, offsets and, for host weights, the weights (one per row outside
    ``[b_lo, b_hi)``, then the body's). Weights that live on the device (device coordinates) are in
    ``device_weights``, one list per record, and are written into the records on the device.
    """

    b_lo: int
    b_hi: int
    form: int
    m: int
    records: np.ndarray
    device_weights: list[list[Any]] | None = None
    table: Any = None  # per-row body weights, compute dtype, (terms, b_hi - b_lo): host or device


@dataclass
class FastAxis:
    """One axis lowered for the fast path (``alt``: device coordinates' uniform variant)."""

    dtype: np.dtype
    n: int
    main: FastVariantRows
    alt: FastVariantRows | None = None
    flag: Any = None  # 0-d device bool (numpy's shortcut test), with ``alt``

    @property
    def b_lo(self) -> int:
        return self.main.b_lo

    @property
    def b_hi(self) -> int:
        return self.main.b_hi

    @property
    def form(self) -> int:
        return self.main.form

    @property
    def m(self) -> int:
        return self.main.m

    @property
    def records(self) -> np.ndarray:
        return self.main.records

    @property
    def table(self) -> Any:
        return self.main.table


def _region_of(regions: tuple[Any, ...], row: int) -> Any:
    for r in regions:
        if r.start <= row < r.stop:
            return r
    raise ValueError(f"no region holds row {row}")


def _row_weight_values(region: Any, row: int) -> list[Any]:
    """The weights of one row of a region, as the plan holds them (host or device)."""
    return [w[row - region.start] if getattr(w, "ndim", 0) == 1 else w for w in region.weights]


def _lower_regions(regions: tuple[Any, ...], n: int, dtype: np.dtype) -> FastVariantRows | None:
    """Body, records and per-row table of one region list; None if the fast path cannot run it."""
    candidates = [r for r in regions if r.stop > r.start and body_form(r) is not None]
    body = max(candidates, key=lambda r: r.stop - r.start, default=None)
    if body is not None:
        form, m = body_form(body)
        b_lo, b_hi = body.start, body.stop
        if body.wrap:  # rows whose stencil wraps become records
            b_lo, b_hi = max(b_lo, m), min(b_hi, n - m)
        if b_hi <= b_lo:
            body = None
    if body is None:
        form, m, b_lo, b_hi = FORM_DIFF, 1, n, n
    if b_lo > FAST_MAX_EDGE or n - b_hi > FAST_MAX_EDGE:
        return None
    rows = [*range(0, b_lo), *range(b_hi, n)]
    records = np.zeros(len(rows) + 1, FAST_REC_DTYPE)
    weights: list[list[Any]] = []
    for i, row in enumerate(rows):
        region = _region_of(regions, row)
        offsets = list(region.offsets)
        if region.wrap:
            offsets = [(row + o) % n - row for o in offsets]
        nterms = region_nterms(region.kind, tuple(region.offsets))
        if nterms > MAX_TERMS or len(offsets) > MAX_OFFSETS:
            return None
        if any(not 0 <= row + o < n for o in offsets):
            raise ValueError(f"region {region} reads outside the axis at row {row}")
        records[i]["kind"], records[i]["nterms"] = KIND_CODES[region.kind], nterms
        records[i]["off"][: len(offsets)] = offsets
        weights.append(_row_weight_values(region, row))
    table = None
    if body is not None:
        nterms = region_nterms(body.kind, tuple(body.offsets))
        records[-1]["kind"], records[-1]["nterms"] = KIND_CODES[body.kind], nterms
        records[-1]["off"][: len(body.offsets)] = body.offsets
        if any(getattr(w, "ndim", 0) == 1 for w in body.weights):
            table = [w[b_lo - body.start:b_hi - body.start] if getattr(w, "ndim", 0) == 1
                     else np.full(b_hi - b_lo, host_scalar(w, dtype)) for w in body.weights]
            weights.append([])
        else:
            weights.append(list(body.weights))
    else:
        weights.append([])
    lowered = FastVariantRows(b_lo, b_hi, form, m, records)
    if all(_is_host_value(w) for ws in weights for w in ws) and (
            table is None or all(_is_host_value(t) for t in table)):
        for rec, ws in zip(records, weights, strict=True):
            rec["w"][: len(ws)] = [float(host_scalar(w, dtype)) for w in ws]
        if table is not None:
            lowered.table = np.stack([np.asarray(t).astype(dtype) for t in table])
    else:
        lowered.device_weights = weights
        lowered.table = table
    return lowered


def lower_fast_axis(ap: AxisPlan, data_dtype: np.dtype) -> FastAxis | None:
    """The fast path's description of an axis, or None when the axis needs the general path.

    The general path takes regions of several compute dtypes, bodies outside the canonical forms,
    edges wider than ``FAST_MAX_EDGE`` rows, and device coordinates whose two variants do not
    share their body rows.
    """
    lists = [tuple(ap.regions)]
    if ap.uniform is None:
        lists.append(tuple(ap.uniform_variant.regions))
    if not lists[0]:
        return None
    dtypes = {np.dtype(r.dtype) for regions in lists for r in regions}
    if len(dtypes) != 1:
        return None
    (dtype,) = dtypes
    if dtype not in _kernels.fast_compute_dtypes(data_dtype):
        return None
    lowered = [_lower_regions(regions, ap.length, dtype) for regions in lists]
    if any(v is None for v in lowered):
        return None
    if len(lowered) == 1:
        return FastAxis(dtype, ap.length, lowered[0])
    main, alt = lowered
    if (main.b_lo, main.b_hi) != (alt.b_lo, alt.b_hi) or alt.table is not None:
        return None
    return FastAxis(dtype, ap.length, main, alt, ap.uniform_flag)


# ------------------------------------------------------------------------------------------------
# Choosing the path
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FastLaunch:
    """One launch of the fast path: which axes (indices into the plan), how, with what."""

    indices: tuple[int, ...]
    geometry: FastGeometry
    variant: _kernels.FastVariant
    phase: int
    work: FastWork
    axes: tuple[FastAxis, ...] = field(default=(), compare=False)  # lowered, as indices


def select_paths(plan: GradientPlan, f: ArrayInfo, outs: list[ArrayInfo],
                 tuning: FastTuning = DEFAULT_TUNING) -> tuple[list[FastLaunch], list[int]]:
    """(fast-path launches, indices of the axes left to the general path)."""
    everything = list(range(len(plan.axes)))
    if f.dtype not in _kernels.FAST_INPUT_DTYPES or not f.c_contiguous or not plan.axes:
        return [], everything
    by_dtype: dict[np.dtype, list[int]] = {}
    lowered: dict[int, FastAxis] = {}
    general = []
    for i, (ap, out) in enumerate(zip(plan.axis_plans, outs, strict=True)):
        usable_out = out.c_contiguous and out.shape == f.shape and out.dtype == plan.out_dtype
        fa = lower_fast_axis(ap, plan.data_dtype) if usable_out else None
        if fa is None:
            general.append(i)
        else:
            lowered[i] = fa
            by_dtype.setdefault(fa.dtype, []).append(i)
    launches = []
    for dtype, indices in by_dtype.items():
        axis_to_index = {plan.axes[i]: i for i in indices}
        for group in split_axes(f.shape, list(axis_to_index)):
            idx = tuple(sorted(axis_to_index[ax] for ax in group))
            geom = collapse(f.shape, group)
            out_infos = [outs[i] for i in idx]
            vec = choose_vec(f.dtype, f.ptr, [o.ptr for o in out_infos], plan.out_dtype.itemsize)
            phase = phase_of(f.ptr, f.dtype.itemsize, vec)
            x_index = next((i for i in idx if geom.roles[plan.axes[i]].role == "x"), None)
            xlo, xhi = (0, geom.W) if x_index is None else (lowered[x_index].b_lo,
                                                           lowered[x_index].b_hi)
            work = fast_work(geom, vec, phase, xlo, xhi, tuning.rows_per_thread)
            index = index_width(f.nbytes, *(o.nbytes for o in out_infos))
            if work.nitems + THREADS_PER_SM * 1024 >= INT32_LIMIT:  # the grid-stride loop's t
                index = "i64"
            variant = _kernels.FastVariant(f.dtype, dtype, vec, index, tuning)
            launches.append(FastLaunch(idx, geom, variant, phase, work,
                                       tuple(lowered[i] for i in idx)))
    return launches, sorted(general)


# ------------------------------------------------------------------------------------------------
# Packing the fast path's arguments
# ------------------------------------------------------------------------------------------------


def _device_blob(parts: list[Any], xp: Any) -> tuple[Any, list[int]]:
    """Arrays packed into one device buffer (16-byte aligned pieces): (buffer, byte offsets).

    Host parts travel in one upload; parts already on the device (device coordinates' weights)
    are joined on the device, in stream order, so no value goes to the host.
    """
    offsets, size = [], 0
    for part in parts:
        size = -(-size // 16) * 16
        offsets.append(size)
        size += part.nbytes
    total = max(-(-size // 16) * 16, 16)
    if all(isinstance(part, np.ndarray) for part in parts):
        blob = np.zeros(total, np.uint8)
        for part, at in zip(parts, offsets, strict=True):
            blob[at:at + part.nbytes] = np.ascontiguousarray(part).view(np.uint8).reshape(-1)
        return xp.asarray(blob), offsets
    pieces, at = [], 0
    for part, start in zip(parts, offsets, strict=True):
        if start > at:
            pieces.append(xp.zeros(start - at, np.uint8))
        if isinstance(part, np.ndarray):
            part = xp.asarray(np.ascontiguousarray(part).view(np.uint8).reshape(-1))
        pieces.append(part.reshape(-1).view(np.uint8))
        at = start + part.nbytes
    pieces.append(xp.zeros(total - at, np.uint8))
    return xp.concatenate(pieces), offsets


def _records_part(rows: FastVariantRows, dtype: np.dtype, xp: Any) -> Any:
    """The records of one variant as a blob part: host bytes, or assembled on the device."""
    if rows.device_weights is None:
        return rows.records
    w_at = FAST_REC_DTYPE.fields["w"][1]
    raw = rows.records.view(np.uint8).reshape(len(rows.records), FAST_REC_DTYPE.itemsize)
    pieces = []
    for k, weights in enumerate(rows.device_weights):
        values = [v.astype(dtype).astype(np.float64).reshape(1) if not _is_host_value(v)
                  else xp.asarray(np.array([float(host_scalar(v, dtype))])) for v in weights]
        values.append(xp.zeros(MAX_TERMS - len(weights), np.float64))
        pieces.append(xp.asarray(np.ascontiguousarray(raw[k, :w_at])))
        pieces.append(xp.concatenate(values).view(np.uint8))
    return xp.concatenate(pieces)


def _table_part(rows: FastVariantRows, dtype: np.dtype, xp: Any) -> Any:
    if isinstance(rows.table, np.ndarray):
        return rows.table
    return xp.concatenate([xp.asarray(t) if isinstance(t, np.ndarray) else t
                           for t in (t.astype(dtype).reshape(-1) for t in rows.table)])


def fast_launch_params(plan: GradientPlan, launch: FastLaunch, f: Any, outs: list[Any],
                       xp: Any) -> tuple[np.ndarray, list[Any]]:
    """The packed ``cg_fast_params`` of a launch and the device arrays that must outlive it."""
    geom, work = launch.geometry, launch.work
    p = np.zeros(1, FAST_PARAMS_DTYPE)
    for name, value in (("W", geom.W), ("H", geom.H), ("P", geom.P), ("nxc", work.nxc),
                        ("nyt", work.nyt), ("nvec", work.nvec), ("nsl", work.nsl),
                        ("nsr", work.nsr), ("nitems", work.nitems), ("phase", launch.phase),
                        ("nbr_vec", int(geom.W % launch.variant.vec == 0)), ("xlo", work.xlo),
                        ("xhi", work.xhi), ("f", pointer(f))):
        p[0][name] = value
    parts: list[Any] = []
    for fa in launch.axes:
        parts.append(_records_part(fa.main, fa.dtype, xp))
        if fa.main.table is not None:
            parts.append(_table_part(fa.main, fa.dtype, xp))
        if fa.alt is not None:
            parts.append(_records_part(fa.alt, fa.dtype, xp))
    blob, offsets = _device_blob(parts, xp)
    base = pointer(blob)
    at = iter(offsets)
    keep = [blob]
    planes = 0
    for i, fa in zip(launch.indices, launch.axes, strict=True):
        role = geom.roles[plan.axes[i]]
        if role.role == "plane":
            slot = p[0]["plane"][planes]
            planes += 1
        else:
            slot = p[0][role.role]
            p[0]["has_" + role.role] = 1
        slot["n"], slot["stride"], slot["pstride"] = role.n, role.stride, role.pstride
        slot["b_lo"], slot["b_hi"], slot["form"], slot["m"] = fa.b_lo, fa.b_hi, fa.form, fa.m
        slot["out"] = pointer(outs[i])
        slot["recs"] = base + next(at)
        if fa.main.table is not None:
            slot["wrow"] = base + next(at)
            slot["wstride"] = fa.b_hi - fa.b_lo
        if fa.alt is not None:
            slot["recs_alt"] = base + next(at)
            slot["form_alt"], slot["m_alt"] = fa.alt.form, fa.alt.m
            flag = fa.flag.reshape(1)
            keep.append(flag)
            slot["flag"] = pointer(flag)
    p[0]["nplanes"] = planes
    return p, keep


# ------------------------------------------------------------------------------------------------
# The general path's arguments
# ------------------------------------------------------------------------------------------------


def _region_lists(ap: AxisPlan) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The plan's regions and, for device coordinates, its uniform variant's."""
    alt = ap.uniform_variant.regions if ap.uniform is None else ()
    return tuple(ap.regions), tuple(alt)


def general_slots(ap: AxisPlan) -> tuple[np.dtype, ...]:
    """The distinct compute dtypes of the axis's regions, in order of first use."""
    main, alt = _region_lists(ap)
    slots = tuple(dict.fromkeys(np.dtype(r.dtype) for r in main + alt))
    if len(slots) > _kernels.GENERAL_MAX_SLOTS:
        raise ValueError(f"an axis computes in {len(slots)} dtypes; the general kernel takes "
                         f"{_kernels.GENERAL_MAX_SLOTS}")
    return slots


def general_variant(in_dtype: Any, data_dtype: Any, ap: AxisPlan,
                    out_dtype: Any) -> _kernels.GeneralVariant:
    return _kernels.GeneralVariant(np.dtype(in_dtype), np.dtype(data_dtype), general_slots(ap),
                                   np.dtype(out_dtype))


def _bits(a: Any) -> Any:
    """float16 operands travel as their uint16 bits (the kernel converts them itself)."""
    return a.view(np.uint16) if a.dtype == np.float16 else a


def _weight_table(values: list[Any], dtype: np.dtype, xp: Any) -> Any:
    """One 1-D weight table of ``dtype`` from scalars and 1-D arrays, built where they live.

    Device values (0-d or 1-D device arrays) are converted on the device, so no value travels to
    the host; an all-host table is built with numpy and uploaded once.
    """
    if all(_is_host_value(v) for v in values):
        host = [np.asarray(v).astype(dtype).reshape(-1) if isinstance(v, np.ndarray)
                else np.array([host_scalar(v, dtype)], dtype) for v in values]
        host = np.concatenate(host) if host else np.zeros(1, dtype)
        return xp.asarray(host if host.size else np.zeros(1, dtype))
    parts = []
    for v in values:
        if isinstance(v, np.ndarray):
            parts.append(xp.asarray(v.astype(dtype).reshape(-1)))
        elif _is_host_value(v):
            parts.append(xp.asarray(np.array([host_scalar(v, dtype)], dtype)))
        else:
            parts.append(v.astype(dtype).reshape(-1))
    return xp.concatenate(parts)


def general_tables(ap: AxisPlan, xp: Any) -> tuple[Any, ...]:
    """The region operands of the general kernel: regs, w0, w1, w2, flag."""
    main, alt = _region_lists(ap)
    slots = general_slots(ap)
    values: list[list[Any]] = [[] for _ in slots]
    sizes = [0] * len(slots)
    regs = np.zeros(2 + GREC_SIZE * (len(main) + len(alt)), np.int64)
    regs[0], regs[1] = len(main), len(alt)
    for k, r in enumerate(main + alt):
        slot = slots.index(np.dtype(r.dtype))
        rows = r.stop - r.start
        per_row = any(getattr(w, "ndim", 0) == 1 for w in r.weights)
        nterms = region_nterms(r.kind, tuple(r.offsets))
        if nterms > MAX_TERMS or len(r.offsets) > MAX_OFFSETS:
            raise ValueError(f"region {r} has more terms than the kernels take")
        rec = regs[2 + k * GREC_SIZE: 2 + (k + 1) * GREC_SIZE]
        rec[:len(GREC_FIELDS)] = (r.start, r.stop, KIND_CODES[r.kind], nterms, int(r.wrap), slot,
                                  int(per_row), sizes[slot])
        rec[len(GREC_FIELDS):len(GREC_FIELDS) + len(r.offsets)] = r.offsets
        for w in r.weights:
            if per_row and getattr(w, "ndim", 0) != 1:
                w = np.full(rows, host_scalar(w, slots[slot])) if _is_host_value(w) else (
                    xp.full(rows, 0, slots[slot]) + w.astype(slots[slot]))
            values[slot].append(w)
            sizes[slot] += rows if per_row else 1
    tables = [_weight_table(v, d, xp) for v, d in zip(values, slots, strict=True)]
    tables += [tables[0]] * (_kernels.GENERAL_MAX_SLOTS - len(tables))
    flag = ap.uniform_flag.reshape(1) if ap.uniform is None else xp.zeros(1, np.bool_)
    return (xp.asarray(regs), *(_bits(t) for t in tables), flag)


def general_dummy_tables(variant: _kernels.GeneralVariant, xp: Any,
                         length: int = 3) -> tuple[Any, ...]:
    """Return valid region operands for a warm-up launch of ``variant``.

    ``cugrad compile`` fills CuPy's cache with such launches: one comb region of weight 0 over
    every row of an axis of ``length``.
    """
    regs = np.zeros(2 + GREC_SIZE, np.int64)
    regs[0] = 1
    regs[2:2 + len(GREC_FIELDS)] = (0, length, KIND_CODES["comb"], 1, 0, 0, 0, 0)
    tables = [_bits(xp.zeros(1, d)) for d in variant.padded_slots]
    return (xp.asarray(regs), *tables, xp.zeros(1, np.bool_))


def general_args(f: Any, out: Any, ap: AxisPlan, lo: int, hi: int, f_start: int, xp: Any,
                 tables: tuple[Any, ...] | None = None) -> tuple[Any, ...]:
    """The operands of the general kernel, in the order of ``GeneralVariant.in_params``."""
    k = ap.axis
    if tables is None:
        tables = general_tables(ap, xp)
    inner = math.prod(f.shape[k + 1:])
    return (_bits(f), *tables, ap.length, inner, hi - lo, lo, f.shape[k], f_start)


# ------------------------------------------------------------------------------------------------
# The fused derived operators' arguments (one launch per operator, operators.cuh)
# ------------------------------------------------------------------------------------------------


def operator_axes(plan: OperatorPlan) -> list[AxisPlan]:
    """Return the distinct axis plans of an operator's terms, in order of first use.

    Each is one region table set of the kernel (3-D curl differentiates each axis twice, with the
    same tables).
    """
    seen: dict[int, AxisPlan] = {}
    for output in plan.outputs:
        for term in output.terms:
            seen.setdefault(id(term.axis_plan), term.axis_plan)
    return list(seen.values())


def operator_variant(plan: OperatorPlan, in_dtype: Any) -> _kernels.OperatorVariant:
    """Return the kernel that runs ``plan`` on sources of ``in_dtype`` (dtypes, structure)."""
    axes = operator_axes(plan)
    index = {id(ap): a for a, ap in enumerate(axes)}
    outputs = tuple((o.combine, tuple((t.source, index[id(t.axis_plan)]) for t in o.terms))
                    for o in plan.outputs)
    return _kernels.OperatorVariant(np.dtype(in_dtype), np.dtype(plan.data_dtype),
                                    np.dtype(plan.out_dtype), plan.sources,
                                    tuple(general_slots(ap) for ap in axes), outputs)


def operator_args(plan: OperatorPlan, sources: list[Any], xp: Any) -> tuple[Any, ...]:
    """Return the operands of the fused kernel, in the order of ``OperatorVariant.in_params``.

    The sources, then per axis table set the general path's tables (:func:`general_tables`), the
    axis length and the product of the dimensions after it.
    """
    args: list[Any] = [_bits(s) for s in sources]
    for ap in operator_axes(plan):
        args += [*general_tables(ap, xp), ap.length, math.prod(plan.shape[ap.axis + 1:])]
    return tuple(args)


def representative_operator_variants() -> list[_kernels.OperatorVariant]:
    """Return the fused operator kernels the compile checks build.

    Each operator kind (magnitude, divergence, 2-D and 3-D curl, Laplacian) for float32 and
    float64, plus integer input, float16 and complex data, and an axis whose regions compute in
    two dtypes. Planned from real arrays, so the variants are the ones those calls launch.
    """
    from cugrad import _operator_plan

    def variants(dtype: Any, ndim: int, *kinds: str, varargs: tuple = ()) -> list:
        f = np.zeros((5,) * ndim, dtype)
        make = {
            "magnitude": lambda: _operator_plan.magnitude_plan(f, varargs, None, 1, {}),
            "divergence": lambda: _operator_plan.divergence_plan(f, ndim, varargs, None, 1, {}),
            "curl": lambda: _operator_plan.curl_plan(f, ndim, varargs, None, 1, {}),
            "laplacian": lambda: _operator_plan.laplacian_plan(f, varargs, None, {}),
        }
        return [operator_variant(make[kind](), f.dtype) for kind in kinds]

    every = ("magnitude", "divergence", "curl", "laplacian")
    chosen = []
    for dtype in (np.float32, np.float64):
        chosen += variants(dtype, 3, *every) + variants(dtype, 2, "curl")
    chosen += variants(np.int32, 2, "magnitude")
    chosen += variants(np.float16, 2, "magnitude")
    chosen += variants(np.complex128, 3, "divergence")
    # numpy computes the interior in float64 (2.0 * np.int8) and the edges in float32
    chosen += variants(np.float32, 2, "magnitude", varargs=(np.int8(3),))
    return list(dict.fromkeys(chosen))


# ------------------------------------------------------------------------------------------------
# CuPy glue
# ------------------------------------------------------------------------------------------------


# Device copies of host weight tables for compute_rows, the most recent few (an entry holds its
# plan, so an id is never mistaken for a later plan's). The key names the device, the stream AND
# the thread: with CUPY_CUDA_PER_THREAD_DEFAULT_STREAM=1 every thread's default stream has the
# same pointer, so a stream pointer alone would let one thread read tables that another thread's
# stream is still copying. Each entry also holds an event recorded after its upload, which a
# reader's stream waits for (a GPU-side wait, no host stall): a thread id can be reused by a new
# thread, and the wait keeps even that case ordered.
_UPLOADED_MAX = 32
_uploaded_tables: dict[tuple[int, int, int, int], tuple[AxisPlan, tuple[Any, ...], Any]] = {}
_uploaded_lock = threading.Lock()


def upload_key(ap: AxisPlan, device_id: int, stream_ptr: int) -> tuple[int, int, int, int]:
    """The cache key of an axis's uploaded tables: plan, device, stream and calling thread."""
    return (id(ap), device_id, stream_ptr, threading.get_ident())


def cached_tables(ap: AxisPlan, cupy: Any) -> tuple[Any, ...]:
    """The axis's general-path tables on the current device, uploaded once per thread and stream."""
    stream = cupy.cuda.get_current_stream()
    key = upload_key(ap, cupy.cuda.Device().id, stream.ptr)
    with _uploaded_lock:
        entry = _uploaded_tables.get(key)
    if entry is not None and entry[0] is ap:
        stream.wait_event(entry[2])
        return entry[1]
    tables = general_tables(ap, cupy)
    event = stream.record()
    with _uploaded_lock:
        _uploaded_tables[key] = (ap, tables, event)
        while len(_uploaded_tables) > _UPLOADED_MAX:
            _uploaded_tables.pop(next(iter(_uploaded_tables)))
    return tables


@functools.cache
def _sm_count(device_id: int) -> int:
    import cupy

    return int(cupy.cuda.Device(device_id).attributes["MultiProcessorCount"])


def execute(plan: GradientPlan, f: Any, outs: list[Any], tuning: FastTuning | None = None) -> None:
    """Write the gradient of the CuPy array ``f`` along ``plan.axes`` into ``outs``.

    ``outs`` are CuPy arrays of ``plan.out_dtype`` and ``f``'s shape (possibly the rows of one
    stacked array), on the current device, not overlapping ``f``. ``tuning`` chooses the fast
    path's compile-time knobs (default :data:`cugrad._kernels.DEFAULT_TUNING`). Returns without
    waiting.
    """
    if f.size == 0 or not plan.axes:
        return
    import cupy

    tuning = DEFAULT_TUNING if tuning is None else tuning
    launches, general = select_paths(plan, ArrayInfo.of(f), [ArrayInfo.of(o) for o in outs],
                                     tuning)
    sm_count = _sm_count(cupy.cuda.Device().id)
    for launch in launches:
        params, keep = fast_launch_params(plan, launch, f, outs, cupy)
        grid, block = launch_config(launch.work.nitems, sm_count, tuning)
        _kernels.fast_kernel(launch.variant)((grid,), (block,), (params,))
        del keep  # the pool reuses these only after the kernel, in stream order
    for i in general:
        ap = plan.axis_plans[i]
        compute_rows(f, outs[i], ap, plan.data_dtype, 0, ap.length, 0)


def compute_rows(f: Any, out: Any, ap: AxisPlan, data_dtype: np.dtype, lo: int, hi: int,
                 f_start: int) -> None:
    """Rows ``[lo, hi)`` (global indices along ``ap.axis``) of the derivative along ``ap.axis``.

    The CuPy twin of :func:`cugrad._numpy_backend.compute_rows`, same arguments: ``f`` is a window
    of the input (any layout) whose first row along the axis is global row ``f_start`` and which
    holds every row the stencils read; global row ``j`` is window row ``j - f_start`` when that lies
    in the window, else ``(j mod n) - f_start`` (periodic axes); ``out[0]`` along the axis receives
    global row ``lo``.
    """
    if hi <= lo or out.size == 0:
        return
    import cupy

    variant = general_variant(f.dtype, data_dtype, ap, out.dtype)
    # Slabbed callers ask for the same axis many times: upload its tables once per thread and
    # stream. Device-coordinate plans build theirs on the device, in stream order, every time.
    tables = cached_tables(ap, cupy) if ap.uniform is not None else None
    args = general_args(f, out, ap, lo, hi, f_start, cupy, tables)
    _kernels.call_general(variant, args, _bits(out))


def execute_operator(plan: OperatorPlan, sources: list[Any], outs: list[Any]) -> None:
    """Write every output of a derived operator of the CuPy arrays ``sources`` in ONE launch.

    ``outs`` are CuPy arrays of ``plan.out_dtype`` and ``plan.shape`` (possibly the rows of one
    stacked array), one per output of the plan, on the current device, overlapping neither each
    other nor the sources. Each term is the general path's derivative of its source, rounded into
    the output dtype; the terms are combined in the plan's order (``kernels/operators.cuh``); no
    derivative array is made. Returns without waiting.
    """
    if math.prod(plan.shape) == 0:
        return
    import cupy

    variant = operator_variant(plan, sources[0].dtype)
    args = operator_args(plan, sources, cupy)
    _kernels.call_operator(variant, args, [_bits(o) for o in outs])


def run_host(plan: GradientPlan, f_host: np.ndarray, outs_host: list[np.ndarray],
             tuning: FastTuning | None = None) -> None:
    """Numpy in, numpy out, computed on the current GPU: upload, compute, download."""
    if f_host.size == 0 or not plan.axes:
        return
    import cupy

    f = cupy.asarray(f_host)
    outs = [cupy.empty(plan.shape, plan.out_dtype) for _ in plan.axes]
    execute(plan, f, outs, tuning)
    for dev, host in zip(outs, outs_host, strict=True):
        if host.flags.c_contiguous:
            dev.get(out=host)
        else:
            host[...] = dev.get()
