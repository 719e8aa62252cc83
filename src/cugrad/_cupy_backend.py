"""Execute a :class:`~cugrad._plan.GradientPlan` on a CUDA GPU with CuPy.

Two kernel paths compute the same bits (the formulas live once, in
``kernels/gradient_stencils.cuh``):

* the fast path, the RawKernel ``cugrad_gradient_fast`` (``kernels/gradient_fast.cu``): C-contiguous
  float32, float64 or integer data and outputs, one compute dtype; EVERY requested axis in one
  launch that reads the input once and writes each output once;
* the general path, an ElementwiseKernel around ``cg_general_point``
  (``kernels/gradient_general.cuh``): any layout (Fortran order, negative strides, views), float16,
  complex, mixed promotions; one launch per axis. It is also :func:`compute_rows`, the "rows
  [lo, hi) of one axis from a window of f" primitive that slabbed and blocked callers use.

Everything is queued on the current device's current stream; nothing here waits for the GPU.
Coefficient tables built on the host (numpy plans) are uploaded with ``cupy.asarray``; plans whose
coordinates live on the device keep them there, and the kernel reads numpy's "evenly spaced" test
from device memory instead of the host asking for it.

The index arithmetic, the launch configuration, the choice of path and variant, and the packing of
the kernel arguments are plain Python over :class:`ArrayInfo` descriptions and ``xp`` (numpy or
cupy), so the CPU tests check them, and the emulation tests launch the real kernel sources with
exactly these arguments. The CuPy glue at the bottom is thin.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from cugrad import _kernels
from cugrad._kernels import FAST_BLOCK, FAST_MAX_PLANE_AXES, FAST_ROWS, NSCALARS
from cugrad._plan import AxisPlan, GradientPlan, Stencil

# Interior modes, as in gradient_stencils.cuh
MODE_UNIFORM, MODE_COORDS, MODE_DEVICE = 0, 1, 2
# Scalar table layout of the fast path, as in gradient_fast.cu
S_DIV, S_EDGES, S_UNIFORM_EDGES = 0, 1, 7
# Resident blocks per SM the grid is sized for (2048 threads per SM on Volta..Hopper).
BLOCKS_PER_SM = 2048 // FAST_BLOCK
# Byte extent from which element indices need 64 bits (cupyx's _util._get_inttype rule).
INT32_LIMIT = 2**31

_AXIS_FIELDS = [
    ("n", "<i8"),
    ("stride", "<i8"),
    ("pstride", "<i8"),
    ("mode", "<i8"),
    ("out", "<u8"),
    ("ia", "<u8"),
    ("ib", "<u8"),
    ("ic", "<u8"),
    ("sdev", "<u8"),
    ("flag", "<u8"),
    ("s", "<f8", (NSCALARS,)),
]
FAST_AXIS_DTYPE = np.dtype(_AXIS_FIELDS)
# The kernel's cg_fast_params, field for field (every field 8 bytes wide: no padding anywhere).
FAST_PARAMS_DTYPE = np.dtype(
    [(name, "<i8") for name in ("W", "H", "P", "nxc", "nyt", "ntiles", "has_x", "has_y",
                                "nplanes", "edge_order")]
    + [("x", FAST_AXIS_DTYPE), ("y", FAST_AXIS_DTYPE),
       ("plane", FAST_AXIS_DTYPE, (FAST_MAX_PLANE_AXES,)), ("f", "<u8")]
)


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


def tile_counts(geom: FastGeometry, vec: int) -> tuple[int, int, int]:
    """(column chunks per row, row groups per plane, tiles in all) of a launch."""
    nxc = geom.W // vec
    nyt = -(-geom.H // FAST_ROWS)
    return nxc, nyt, nxc * nyt * geom.P


def launch_config(ntiles: int, sm_count: int | None) -> tuple[int, int]:
    """(blocks, threads per block): enough resident blocks to fill the GPU, grid-stride beyond.

    ``sm_count=None`` gives one tile per thread (the CPU emulation runs chosen blocks of it).
    """
    blocks = max(1, -(-ntiles // FAST_BLOCK))
    if sm_count is not None:
        blocks = min(blocks, sm_count * BLOCKS_PER_SM)
    return min(blocks, 2**31 - 1), FAST_BLOCK


def index_width(*nbytes: int) -> str:
    """"i32" below a byte extent of 2**31, else "i64" (cupyx's ``_get_inttype`` rule)."""
    return "i64" if max(nbytes, default=0) >= INT32_LIMIT else "i32"


def choose_vec(in_dtype: np.dtype, W: int, f_ptr: int, out_ptrs: list[int],
               out_itemsize: int) -> int:
    """The widest access the fast path has for this input whose alignment and W allow it."""
    for vec in sorted(_kernels.fast_vector_widths(in_dtype), reverse=True):
        if vec == 1:
            return 1
        in_align = vec * np.dtype(in_dtype).itemsize
        out_align = min(16, vec * out_itemsize)
        if W % vec == 0 and f_ptr % in_align == 0 and all(p % out_align == 0 for p in out_ptrs):
            return vec
    return 1


# ------------------------------------------------------------------------------------------------
# Coefficients
# ------------------------------------------------------------------------------------------------


def _stencils(ap: AxisPlan) -> list[Stencil]:
    stencils = [ap.interior, ap.left, ap.right]
    if ap.uniform_variant is not None:
        u = ap.uniform_variant
        stencils += [u.interior, u.left, u.right]
    return stencils


def fast_compute_dtype(ap: AxisPlan, data_dtype: np.dtype) -> np.dtype | None:
    """The one compute dtype of every region of the axis, if the fast path has it; else None."""
    dtypes = {np.dtype(s.dtype) for s in _stencils(ap)}
    if len(dtypes) != 1:
        return None
    (dtype,) = dtypes
    return dtype if dtype in _kernels.fast_compute_dtypes(data_dtype) else None


def edge_order_of(ap: AxisPlan) -> int:
    """Second-order edges are the three-point combinations."""
    return 2 if ap.left.kind == "comb" else 1


def interior_mode(ap: AxisPlan) -> int:
    if ap.uniform is None:
        return MODE_DEVICE
    return MODE_UNIFORM if ap.uniform else MODE_COORDS


def host_scalar(value: Any, dtype: np.dtype) -> Any:
    """A host coefficient in the compute dtype, converted as numpy converts it.

    Python scalars are NEP 50 "weak": numpy converts them with ``dtype.type(value)``; numpy
    scalars and 0-d arrays widen exactly.
    """
    if isinstance(value, (bool, int, float, complex)):
        return dtype.type(value)
    return np.asarray(value).astype(dtype)[()]


def _edge_values(st: Stencil) -> list[Any]:
    """An edge stencil's coefficients, three slots (first-order edges use the first)."""
    return list(st.coef) + [None] * (3 - len(st.coef))


def host_scalar_table(ap: AxisPlan, dtype: np.dtype) -> np.ndarray:
    """The fast path's 13 scalars of a host axis, as float64 (exact for float32 and float64)."""
    s = np.zeros(NSCALARS, np.float64)
    if ap.interior.kind == "diff":
        s[S_DIV] = host_scalar(ap.interior.coef[0], dtype)
    for k, v in enumerate(_edge_values(ap.left) + _edge_values(ap.right)):
        if v is not None:
            s[S_EDGES + k] = host_scalar(v, dtype)
    return s


def _table(values: list[Any], dtype: np.dtype, xp: Any) -> Any:
    """A 1-D array of ``dtype`` from host and device scalars (None: zero), built where they live.

    Device scalars (0-d device arrays) are converted on the device, so no value travels to the
    host; an all-host table is built with numpy and uploaded once.
    """
    on_device = [v for v in values if v is not None and not _is_host_value(v)]
    if not on_device:
        host = np.array([0 if v is None else host_scalar(v, dtype) for v in values], dtype)
        return xp.asarray(host)
    parts = []
    for v in values:
        if v is None:
            parts.append(xp.zeros(1, dtype))
        elif _is_host_value(v):
            parts.append(xp.asarray(np.array([host_scalar(v, dtype)], dtype)))
        else:
            parts.append(v.astype(dtype).reshape(1))
    return xp.concatenate(parts)


def _is_host_value(v: Any) -> bool:
    return isinstance(v, (bool, int, float, complex, np.generic, np.ndarray))


def _coef_array(c: Any, dtype: np.dtype, xp: Any) -> Any:
    """An interior coefficient table in the compute dtype, where the kernel reads it."""
    if isinstance(c, np.ndarray):
        return xp.asarray(np.ascontiguousarray(c, dtype=dtype))
    return xp.ascontiguousarray(c.astype(dtype, copy=False))


def fast_axis_entry(ap: AxisPlan, dtype: np.dtype, out: Any, xp: Any) -> tuple[dict, list]:
    """The cg_fast_axis fields of one axis (pointers included) and the arrays they point into."""
    keep: list[Any] = []
    mode = interior_mode(ap)
    entry = {"mode": mode, "out": pointer(out), "ia": 0, "ib": 0, "ic": 0, "sdev": 0, "flag": 0,
             "s": np.zeros(NSCALARS)}
    coord = ap
    if mode == MODE_DEVICE:
        u = ap.uniform_variant
        values = ([u.interior.coef[0]] + _edge_values(ap.left) + _edge_values(ap.right)
                  + _edge_values(u.left) + _edge_values(u.right))
        sdev = _table(values, dtype, xp)
        flag = ap.uniform_flag.reshape(1)
        keep += [sdev, flag]
        entry["sdev"], entry["flag"] = pointer(sdev), pointer(flag)
    else:
        entry["s"] = host_scalar_table(ap, dtype)
    if mode in (MODE_COORDS, MODE_DEVICE):
        tables = [_coef_array(c, dtype, xp) for c in coord.interior.coef]
        keep += tables
        entry["ia"], entry["ib"], entry["ic"] = (pointer(t) for t in tables)
    return entry, keep


def pack_fast_params(geom: FastGeometry, vec: int, edge_order: int, f_ptr: int,
                     entries: dict[int, dict]) -> np.ndarray:
    """The kernel's ``cg_fast_params`` as a size-1 numpy array (CuPy passes it by value)."""
    p = np.zeros(1, FAST_PARAMS_DTYPE)
    nxc, nyt, ntiles = tile_counts(geom, vec)
    for name, value in (("W", geom.W), ("H", geom.H), ("P", geom.P), ("nxc", nxc),
                        ("nyt", nyt), ("ntiles", ntiles), ("edge_order", edge_order),
                        ("f", f_ptr)):
        p[0][name] = value
    planes = 0
    for ax, entry in entries.items():
        role = geom.roles[ax]
        if role.role == "plane":
            slot = p[0]["plane"][planes]
            planes += 1
        else:
            slot = p[0][role.role]
            p[0]["has_" + role.role] = 1
        slot["n"], slot["stride"], slot["pstride"] = role.n, role.stride, role.pstride
        for field in ("mode", "out", "ia", "ib", "ic", "sdev", "flag", "s"):
            slot[field] = entry[field]
    p[0]["nplanes"] = planes
    return p


# ------------------------------------------------------------------------------------------------
# Choosing the path
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FastLaunch:
    """One launch of the fast path: which axes (indices into the plan), how, with what."""

    indices: tuple[int, ...]
    geometry: FastGeometry
    variant: _kernels.FastVariant
    edge_order: int

    @property
    def ntiles(self) -> int:
        return tile_counts(self.geometry, self.variant.vec)[2]


def select_paths(plan: GradientPlan, f: ArrayInfo,
                 outs: list[ArrayInfo]) -> tuple[list[FastLaunch], list[int]]:
    """(fast-path launches, indices of the axes left to the general path)."""
    everything = list(range(len(plan.axes)))
    if f.dtype not in _kernels.FAST_INPUT_DTYPES or not f.c_contiguous or not plan.axes:
        return [], everything
    by_dtype: dict[np.dtype, list[int]] = {}
    general = []
    for i, (ap, out) in enumerate(zip(plan.axis_plans, outs, strict=True)):
        dtype = fast_compute_dtype(ap, plan.data_dtype)
        usable_out = out.c_contiguous and out.shape == f.shape and out.dtype == plan.out_dtype
        if dtype is None or not usable_out:
            general.append(i)
        else:
            by_dtype.setdefault(dtype, []).append(i)
    launches = []
    for dtype, indices in by_dtype.items():
        axis_to_index = {plan.axes[i]: i for i in indices}
        for group in split_axes(f.shape, list(axis_to_index)):
            idx = tuple(sorted(axis_to_index[ax] for ax in group))
            geom = collapse(f.shape, group)
            out_infos = [outs[i] for i in idx]
            vec = choose_vec(f.dtype, geom.W, f.ptr, [o.ptr for o in out_infos],
                             plan.out_dtype.itemsize)
            index = index_width(f.nbytes, *(o.nbytes for o in out_infos))
            variant = _kernels.FastVariant(f.dtype, dtype, vec, index)
            launches.append(FastLaunch(idx, geom, variant, plan.edge_order))
    return launches, sorted(general)


def fast_launch_params(plan: GradientPlan, launch: FastLaunch, f: Any, outs: list[Any],
                       xp: Any) -> tuple[np.ndarray, list[Any]]:
    """The packed arguments of a fast launch and the arrays that must outlive it."""
    entries, keep = {}, []
    for i in launch.indices:
        ap = plan.axis_plans[i]
        entry, arrays = fast_axis_entry(ap, launch.variant.compute_dtype, outs[i], xp)
        entries[ap.axis] = entry
        keep += arrays
    params = pack_fast_params(launch.geometry, launch.variant.vec, launch.edge_order,
                              pointer(f), entries)
    return params, keep


# ------------------------------------------------------------------------------------------------
# The general path's arguments
# ------------------------------------------------------------------------------------------------


def general_variant(in_dtype: Any, data_dtype: Any, ap: AxisPlan,
                    out_dtype: Any) -> _kernels.GeneralVariant:
    return _kernels.GeneralVariant(
        np.dtype(in_dtype), np.dtype(data_dtype), np.dtype(ap.interior.dtype),
        np.dtype(ap.left.dtype), np.dtype(ap.right.dtype), np.dtype(out_dtype), edge_order_of(ap),
    )


def _bits(a: Any) -> Any:
    """float16 operands travel as their uint16 bits (the kernel converts them itself)."""
    return a.view(np.uint16) if a.dtype == np.float16 else a


def general_tables(ap: AxisPlan, xp: Any) -> tuple[Any, ...]:
    """The coefficient operands of the general kernel: ia, ib, ic, si, sl, sr, flag."""
    mode = interior_mode(ap)
    di, dl, dr = (np.dtype(s.dtype) for s in (ap.interior, ap.left, ap.right))
    if mode in (MODE_COORDS, MODE_DEVICE):
        ia, ib, ic = (_coef_array(c, di, xp) for c in ap.interior.coef)
    else:
        ia = ib = ic = xp.zeros(1, di)
    u = ap.uniform_variant
    if mode == MODE_UNIFORM:
        si = _table([ap.interior.coef[0]], di, xp)
    elif mode == MODE_DEVICE:
        si = _table([u.interior.coef[0]], di, xp)
    else:
        si = xp.zeros(1, di)
    left_values = _edge_values(ap.left) + (_edge_values(u.left) if u is not None else [None] * 3)
    right_values = _edge_values(ap.right) + (_edge_values(u.right) if u is not None else [None] * 3)
    sl = _table(left_values, dl, xp)
    sr = _table(right_values, dr, xp)
    flag = ap.uniform_flag.reshape(1) if mode == MODE_DEVICE else xp.zeros(1, np.bool_)
    return tuple(_bits(a) for a in (ia, ib, ic, si, sl, sr)) + (flag,)


def general_args(f: Any, out: Any, ap: AxisPlan, lo: int, hi: int, f_start: int, xp: Any,
                 tables: tuple[Any, ...] | None = None) -> tuple[Any, ...]:
    """The operands of the general kernel, in the order of ``GeneralVariant.in_params``."""
    k = ap.axis
    if tables is None:
        tables = general_tables(ap, xp)
    inner = math.prod(f.shape[k + 1:])
    return (_bits(f), *tables, ap.length, inner, hi - lo, lo, f.shape[k], f_start,
            interior_mode(ap))


# ------------------------------------------------------------------------------------------------
# CuPy glue
# ------------------------------------------------------------------------------------------------


# Device copies of host coefficient tables, per (axis plan, device, stream), the most recent few
# (an entry holds its plan, so an id is never mistaken for a later plan's). Reuse is limited to the
# stream that uploaded them, which orders the copy before every kernel that reads them.
_UPLOADED_MAX = 32
_uploaded_tables: dict[tuple[int, int, int], tuple[AxisPlan, tuple[Any, ...]]] = {}
_uploaded_lock = threading.Lock()


@functools.cache
def _sm_count(device_id: int) -> int:
    import cupy

    return int(cupy.cuda.Device(device_id).attributes["MultiProcessorCount"])


def execute(plan: GradientPlan, f: Any, outs: list[Any]) -> None:
    """Write the gradient of the CuPy array ``f`` along ``plan.axes`` into ``outs``.

    ``outs`` are CuPy arrays of ``plan.out_dtype`` and ``f``'s shape (possibly the rows of one
    stacked array), on the current device, not overlapping ``f``. Returns without waiting.
    """
    if f.size == 0 or not plan.axes:
        return
    import cupy

    launches, general = select_paths(plan, ArrayInfo.of(f), [ArrayInfo.of(o) for o in outs])
    sm_count = _sm_count(cupy.cuda.Device().id)
    for launch in launches:
        params, keep = fast_launch_params(plan, launch, f, outs, cupy)
        grid, block = launch_config(launch.ntiles, sm_count)
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
    holds every row the stencils read; ``out[0]`` along the axis receives global row ``lo``.
    """
    if hi <= lo or out.size == 0:
        return
    import cupy

    variant = general_variant(f.dtype, data_dtype, ap, out.dtype)
    tables = None
    if ap.uniform is not None:
        # Slabbed callers ask for the same axis many times: upload its tables once per stream.
        key = (id(ap), cupy.cuda.Device().id, cupy.cuda.get_current_stream().ptr)
        with _uploaded_lock:
            entry = _uploaded_tables.get(key)
        if entry is not None and entry[0] is ap:
            tables = entry[1]
        else:
            tables = general_tables(ap, cupy)
            with _uploaded_lock:
                _uploaded_tables[key] = (ap, tables)
                while len(_uploaded_tables) > _UPLOADED_MAX:
                    _uploaded_tables.pop(next(iter(_uploaded_tables)))
    args = general_args(f, out, ap, lo, hi, f_start, cupy, tables)
    _kernels.call_general(variant, args, _bits(out))


def run_host(plan: GradientPlan, f_host: np.ndarray, outs_host: list[np.ndarray]) -> None:
    """Numpy in, numpy out, computed on the current GPU: upload, compute, download."""
    if f_host.size == 0 or not plan.axes:
        return
    import cupy

    f = cupy.asarray(f_host)
    outs = [cupy.empty(plan.shape, plan.out_dtype) for _ in plan.axes]
    execute(plan, f, outs)
    for dev, host in zip(outs, outs_host, strict=True):
        if host.flags.c_contiguous:
            dev.get(out=host)
        else:
            host[...] = dev.get()
