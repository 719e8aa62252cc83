"""Parse numpy.gradient's arguments once, into a backend-free plan of the work.

This module is the one place that decides: it validates the arguments in numpy's order with numpy's
exception types, and turns every spacing form into per-axis stencils whose coefficients are the very
objects numpy.gradient builds (Python floats stay "weak" under NEP 50, numpy scalars stay "strong").
Backends only execute a :class:`GradientPlan`; none of them re-derives a rule of numpy's.

The coefficient expressions below are numpy.gradient's own (NumPy 2.x, ``numpy/lib/_function_base_impl.py``),
evaluated in the same order, so that the same inputs raise the same exceptions and the same warnings
(for example ``ZeroDivisionError`` for a Python ``0`` spacing with ``edge_order=2``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cugrad import _backend, _stencils

RegionKind = Literal["diff", "comb", "dsum"]
Boundary = Literal["edge", "periodic"]
ACCURACIES = (2, 4, 6, 8)
BOUNDARIES = ("edge", "periodic")


@dataclass(frozen=True, slots=True, eq=False)
class Region:
    """One formula applied to the rows ``[start, stop)`` of one axis: THE description of a stencil.

    Every backend (NumPy, the CUDA kernels, their CPU emulation, dask and the streamed offload)
    executes regions exactly as written here, and none of them derives a weight of its own.
    ``i`` is the output row; ``f[i + o]`` is the input row ``o`` away along the axis (taken modulo
    the axis length when ``wrap``). ``weights`` are scalars (Python floats stay weak under NEP 50,
    numpy scalars are strong) or 1-D arrays over the region's rows (row ``i`` uses element
    ``i - start``). ``dtype`` is the compute dtype: what NEP 50 makes of the data dtype and the
    weights. The operation order:

    ``"diff"`` (numpy's first difference), offsets ``(p, q)``, weights ``(d,)``:
        ``(f[i+p] - f[i+q]) / d``; the subtraction in the data dtype, the division in ``dtype``.
    ``"comb"`` (numpy's weighted sum), offsets ``(o0, o1, ...)``, one weight each:
        ``((w0*f[i+o0] + w1*f[i+o1]) + w2*f[i+o2]) + ...``; every product and sum in ``dtype``.
    ``"dsum"`` (cugrad's higher orders), offsets in pairs ``(p0, q0, p1, q1, ...)``, one weight a pair:
        ``((w0*(f[i+p0] - f[i+q0]) + w1*(f[i+p1] - f[i+q1])) + ...``; each difference in the data
        dtype, each product and sum in ``dtype``.

    In every kind the result is rounded once into the output dtype. Complex data multiplies by real
    weights promoted to complex (imaginary +0), as numpy does; float16 rounds after every operation,
    as numpy's half loops do.
    """

    start: int
    stop: int
    kind: RegionKind
    offsets: tuple[int, ...]
    weights: tuple[Any, ...]
    dtype: np.dtype
    wrap: bool = False

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        """``"diff"`` and ``"dsum"``: the ``(p, q)`` of each difference ``f[i+p] - f[i+q]``."""
        return tuple(zip(self.offsets[0::2], self.offsets[1::2], strict=True))

    def rows_read(self, lo: int, hi: int) -> tuple[int, int] | None:
        """Input rows ``[a, b)`` that output rows ``[lo, hi)`` of this region read (None: no row)."""
        r0, r1 = max(lo, self.start), min(hi, self.stop)
        if r1 <= r0:
            return None
        return r0 + min(self.offsets), r1 + max(self.offsets)


@dataclass(frozen=True, slots=True)
class Stencil:
    """A numpy-form region seen as numpy's (kind, coefficients, dtype) triple (see ``AxisPlan``)."""

    kind: RegionKind
    coef: tuple[Any, ...]
    dtype: np.dtype


@dataclass(slots=True)
class AxisPlan:
    """How one axis is differentiated: regions that cover its rows ``[0, length)`` exactly once.

    ``regions`` are listed in the order numpy evaluates them (interior, then the first rows, then
    the last rows), which decides which floating-point event is raised first under
    ``np.errstate(all="raise")``. numpy's own forms always have three regions (the interior may
    be empty); higher accuracy orders have one region per edge row; periodic axes have one wrapped
    region.

    ``uniform`` is True for scalar spacing (given, or numpy's shortcut for evenly spaced coordinates)
    and False for coordinate arrays. It is None only for coordinates that live on a device: numpy's
    shortcut then cannot be decided without stalling the host, so the plan carries both variants,
    ``regions`` for coordinate arrays and ``uniform_variant`` for the shortcut, and a 0-d device
    boolean ``uniform_flag`` that the kernel reads to choose between them.
    """

    axis: int
    length: int
    regions: tuple[Region, ...]
    uniform: bool | None
    uniform_variant: AxisPlan | None = None
    uniform_flag: Any = None
    accuracy: int = 2
    boundary: Boundary = "edge"
    deriv: int = 1  # 2: the second derivative (the Laplacian's terms)

    @property
    def numpy_form(self) -> bool:
        """numpy.gradient's own formulas (first derivative, accuracy 2, one-sided edges)."""
        return self.accuracy == 2 and self.boundary == "edge" and self.deriv == 1

    @property
    def radius(self) -> int:
        """How far from its output row any region reads."""
        return max(max(abs(o) for o in r.offsets) for r in self.regions)

    def window(self, lo: int, hi: int) -> tuple[int, int]:
        """Input rows ``[w0, w1)`` that output rows ``[lo, hi)`` read.

        On a periodic axis ``w0`` may be negative and ``w1`` may pass the length: row ``j`` then
        stands for row ``j mod length`` (the window is contiguous in the periodic extension).
        """
        spans = [s for s in (r.rows_read(lo, hi) for r in self.regions) if s is not None]
        if not spans:
            return lo, lo
        return min(a for a, _ in spans), max(b for _, b in spans)

    def spans(self, w0: int, w1: int) -> list[tuple[int, int]]:
        """Where the window rows ``[w0, w1)`` of :meth:`window` are: row ranges of the axis, in
        order, whose concatenation is the window (one range unless the window wraps)."""
        n = self.length
        out = []
        j = w0
        while j < w1:
            start = j % n
            stop = min(n, start + (w1 - j))
            out.append((start, stop))
            j += stop - start
        return out

    # numpy's three regions under numpy's names, for code written against them.
    @property
    def interior(self) -> Stencil:
        return self._numpy_region(0)

    @property
    def left(self) -> Stencil:
        return self._numpy_region(1)

    @property
    def right(self) -> Stencil:
        return self._numpy_region(2)

    def _numpy_region(self, index: int) -> Stencil:
        if not self.numpy_form:
            raise AttributeError("only numpy-form axis plans have an interior/left/right triple")
        r = self.regions[index]
        return Stencil(r.kind, r.weights, r.dtype)


@dataclass(slots=True)
class GradientPlan:
    """Everything a backend needs to compute ``numpy.gradient`` of one array."""

    shape: tuple[int, ...]
    axes: tuple[int, ...]
    edge_order: Literal[1, 2]
    data_dtype: np.dtype  # what numpy differences in: the input's dtype, float64 for integers
    out_dtype: np.dtype  # numpy's ``empty_like(f, dtype=otype)``
    axis_plans: tuple[AxisPlan, ...] = ()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numpy_form(self) -> bool:
        return all(ap.numpy_form for ap in self.axis_plans)


Combine = Literal["sum", "difference", "magnitude"]


@dataclass(slots=True)
class Term:
    """The derivative of input ``source`` described by ``axis_plan`` (one term of an operator)."""

    source: int
    axis_plan: AxisPlan


@dataclass(slots=True)
class FusedOutput:
    """One output of a derived operator: its terms, combined in the output dtype, in order.

    ``"sum"``: ``(t0 + t1) + t2 ...``; ``"difference"``: ``t0 - t1``; ``"magnitude"``:
    ``sqrt((t0*t0 + t1*t1) + t2*t2 ...)``. Each term is first rounded into the output dtype, as the
    numpy composition over gradient results computes it.
    """

    terms: tuple[Term, ...]
    combine: Combine


@dataclass(slots=True)
class OperatorPlan:
    """A derived operator (magnitude, divergence, curl, Laplacian) of ``sources`` input arrays."""

    shape: tuple[int, ...]
    data_dtype: np.dtype
    out_dtype: np.dtype
    sources: int
    outputs: tuple[FusedOutput, ...]


class Delegate(Exception):
    """Raised by :func:`make_plan` for inputs that numpy.gradient handles through special code.

    datetime64/timedelta64, object, bool and string dtypes, ndarray subclasses (masked arrays,
    ``np.matrix``) and exotic spacing objects are computed by numpy.gradient itself, so the result
    (or the exception) is numpy's by construction.
    """


def _ndim(value: Any) -> int:
    """``np.ndim`` without its dispatch overhead for the common scalars and arrays."""
    if type(value) is float or type(value) is int:
        return 0
    ndim = getattr(value, "ndim", None)
    return ndim if type(ndim) is int else np.ndim(value)


def normalize_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """numpy's axis rules: None is every axis; ints, numpy ints, tuples and lists; order kept."""
    if axis is None:
        return tuple(range(ndim))
    return np.lib.array_utils.normalize_axis_tuple(axis, ndim)


def data_and_out_dtypes(dtype: np.dtype, on_device: bool) -> tuple[np.dtype, np.dtype]:
    """The dtype numpy differences in, and the dtype of the arrays it returns."""
    if dtype.kind in "fc":
        return dtype, dtype
    if dtype.kind in "iu":
        # numpy converts integers to float64 first, so that differences never wrap around.
        f64 = np.dtype(np.float64)
        return f64, f64
    if on_device:
        if dtype.kind == "b":
            # numpy differences bool data as it is and fails at the first subtraction; make_plan
            # raises at that point (see _BOOL_SUBTRACT).
            f64 = np.dtype(np.float64)
            return f64, f64
        raise TypeError(f"cugrad cannot differentiate arrays of dtype {dtype} on a GPU")
    raise Delegate


_BOOL_SUBTRACT = (
    "numpy boolean subtract, the `-` operator, is not supported, use the bitwise_xor, the `^` "
    "operator, or the logical_xor function instead (convert the boolean array with .astype(float) "
    "to differentiate it)"
)


def make_plan(
    f: Any,
    varargs: tuple[Any, ...],
    axis: Any,
    edge_order: Any,
    *,
    accuracy: Any = 2,
    boundary: Any = "edge",
    period: Any = None,
    temporal: bool = False,
    deriv: int = 1,
) -> GradientPlan:
    """Validate numpy.gradient's arguments for the array ``f`` and describe the work.

    ``f`` is an ndarray (no subclass) or a device array with ``shape``, ``ndim`` and ``dtype``.
    Raises numpy's exceptions in numpy's order, or :class:`Delegate`. ``accuracy``, ``boundary`` and
    ``period`` are cugrad's options (see :func:`cugrad.gradient`); they are validated after
    numpy's own arguments, so a call numpy rejects fails as numpy's does. ``temporal=True`` plans
    datetime64/timedelta64 data as numpy computes it (timedelta64 results, numpy's own formulas)
    for callers that execute it with the NumPy backend's ufuncs (dask) instead of delegating.
    ``deriv=2`` plans second derivatives (the Laplacian's), always with cugrad's stencils.
    """
    on_device = not isinstance(f, np.ndarray)
    shape = tuple(f.shape)
    ndim = len(shape)
    axes = normalize_axes(axis, ndim)
    len_axes = len(axes)

    n = len(varargs)
    if n == 0:
        dx: list[Any] = [1.0] * len_axes
    elif n == 1 and _ndim(varargs[0]) == 0:
        dx = [_value_now(varargs[0])] * len_axes
    elif n == len_axes:
        dx = [
            _parse_distances(distances, shape[ax]) for distances, ax in zip(varargs, axes, strict=True)
        ]
    else:
        raise TypeError(
            f"invalid number of arguments: got {n} spacing arguments for {len_axes} axes; give none, "
            "one scalar for all axes, or one scalar or 1-D coordinate array per axis"
        )

    if edge_order > 2:
        raise ValueError("'edge_order' greater than 2 not supported")
    first_order_edges = bool(edge_order == 1)
    options = _stencils.parse_options(accuracy, boundary, period, axes, edge_order)

    if temporal and f.dtype.kind in "mM":
        # numpy views datetime64 data as the timedelta64 of the same unit, which it also returns.
        data_dtype = out_dtype = np.dtype(f.dtype.str.replace("M8", "m8"))
        if not all(o.numpy_form for o in options):
            raise TypeError("accuracy, boundary and period need numeric data (integer, float or "
                            f"complex), got dtype {f.dtype}")
    else:
        data_dtype, out_dtype = data_and_out_dtypes(f.dtype, on_device)

    axis_plans = []
    for i, (ax, ax_dx) in enumerate(zip(axes, dx, strict=True)):
        length = shape[ax]
        option = options[i]
        if not option.numpy_form or deriv != 1:
            coordinates = varargs[i] if n == len_axes and _ndim(varargs[i]) == 1 else None
            axis_plans.append(
                _stencils.extended_axis_plan(ax, length, ax_dx, coordinates, option, data_dtype,
                                             out_dtype, deriv)
            )
        else:
            if length < edge_order + 1:
                raise ValueError(
                    "Shape of array too small to calculate a numerical gradient, "
                    "at least (edge_order + 1) elements are required: "
                    f"axis {ax} has {length} elements and edge_order is {edge_order}."
                )
            if isinstance(ax_dx, _DeviceCoordinates):
                if not on_device:
                    raise TypeError(
                        f"the coordinates for axis {ax} are on a GPU but the array is on the host: "
                        "pass both as numpy arrays, or both as device arrays"
                    )
                axis_plans.append(_device_coordinate_axis(ax, length, ax_dx, data_dtype, out_dtype,
                                                          first_order_edges))
            else:
                axis_plans.append(
                    _axis_plan(ax, length, ax_dx, data_dtype, out_dtype, first_order_edges)
                )
        if f.dtype.kind == "b" and any(
            r.kind in ("diff", "dsum") for r in axis_plans[-1].regions
        ):
            # Device bool data (host bool data is numpy.gradient's own): numpy's products with
            # coefficient arrays accept bool, its differences (f[p] - f[q]) do not.
            raise TypeError(_BOOL_SUBTRACT)

    return GradientPlan(
        shape=shape,
        axes=axes,
        edge_order=1 if first_order_edges else 2,
        data_dtype=data_dtype,
        out_dtype=out_dtype,
        axis_plans=tuple(axis_plans),
    )


def _value_now(spacing: Any) -> Any:
    """A 0-d numeric array spacing as the numpy scalar it holds now.

    numpy.gradient reads a 0-d array while it computes; the array may be a view into ``out=``, which
    the backends write before they read every coefficient, so the plan keeps the value, not the
    array. A numpy scalar promotes exactly as the 0-d array does (both are "strong" under NEP 50).
    """
    if type(spacing) is np.ndarray and spacing.ndim == 0 and spacing.dtype.kind in "biufc":
        return spacing[()]
    return spacing


@dataclass(slots=True)
class _DeviceCoordinates:
    """Differences of a coordinate array that lives on a device (float dtype, length n - 1)."""

    diffs: Any


def _parse_distances(distances: Any, length: int) -> Any:
    """One per-axis spacing argument, exactly as numpy.gradient reads it."""
    if _backend.is_device_array(distances):
        return _parse_device_distances(distances, length)
    original = distances
    distances = np.asanyarray(distances)
    if distances.ndim == 0:
        return _value_now(original)  # numpy keeps the object itself, so Python floats stay weak
    if distances.ndim != 1:
        raise ValueError("distances must be either scalars or 1d")
    if len(distances) != length:
        raise ValueError(
            "when 1d, distances must match the length of the corresponding dimension "
            f"(got {len(distances)} coordinates for an axis of length {length})"
        )
    if np.issubdtype(distances.dtype, np.integer):
        distances = distances.astype(np.float64)  # no modular arithmetic in the differences
    diffx = np.diff(distances)
    if (diffx == diffx[0]).all():
        return diffx[0]  # numpy's shortcut: evenly spaced coordinates become a (strong) scalar
    if type(diffx) is not np.ndarray:
        raise Delegate
    return diffx


def _parse_device_distances(distances: Any, length: int) -> Any:
    if distances.ndim == 0:
        raise TypeError(
            "a 0-d device array is not accepted as a spacing: pass a Python or numpy scalar"
        )
    if distances.ndim != 1:
        raise ValueError("distances must be either scalars or 1d")
    if len(distances) != length:
        raise ValueError(
            "when 1d, distances must match the length of the corresponding dimension "
            f"(got {len(distances)} coordinates for an axis of length {length})"
        )
    if distances.dtype.kind in "iu":
        distances = distances.astype(np.float64)
    if distances.dtype.kind not in "fc":
        raise TypeError(f"coordinate arrays of dtype {distances.dtype} are not supported on a GPU")
    if length < 2:
        # numpy's shortcut test reads diffx[0] of an empty difference array.
        raise IndexError("index 0 is out of bounds for axis 0 with size 0")
    return _DeviceCoordinates(distances[1:] - distances[:-1])


def _compute_dtype(data_dtype: np.dtype, out_dtype: np.dtype, *coefs: Any) -> np.dtype:
    """NEP 50: Python scalars are weak, numpy scalars and arrays are strong."""
    if data_dtype.kind == "m":
        # timedelta data: numpy's products and quotients with real coefficients stay timedelta64.
        if all(_is_plain_scalar(c) or (isinstance(c, np.ndarray) and c.dtype.kind in "iuf")
               for c in coefs) and not any(np.iscomplexobj(c) for c in coefs):
            return data_dtype
        raise Delegate
    if all(type(c) is float for c in coefs):
        return _native(data_dtype)  # a weak float never changes a float or complex data dtype
    # Arrays (host or device, 0-d too) promote by their dtype; scalars go in as they are.
    args = [c.dtype if isinstance(c, np.ndarray) or _backend.is_device_array(c) else c for c in coefs]
    try:
        dtype = np.result_type(data_dtype, *args)
    except (TypeError, ValueError) as exc:
        raise Delegate from exc
    # Anything that would not round straight back into the output (a complex spacing for real data,
    # a timedelta or object spacing) is left to numpy.gradient itself.
    if dtype.kind not in "fc" or (dtype.kind == "c") != (out_dtype.kind == "c"):
        raise Delegate
    return _native(dtype)


def _native(dtype: np.dtype) -> np.dtype:
    # Byte-swapped data computes in the native dtype (ufunc loops and kernels exist only for it);
    # the output keeps numpy's byte order, and the store converts, as numpy's assignment does.
    return dtype if dtype.isnative else dtype.newbyteorder("=")


def _is_plain_scalar(value: Any) -> bool:
    """A number that a backend can turn into one value of the compute dtype."""
    if type(value) is float:
        return True
    if isinstance(value, (float, int, complex, np.number, np.bool_)):
        return True
    is_array = type(value) is np.ndarray or _backend.is_device_array(value)
    return is_array and value.ndim == 0 and value.dtype.kind in "biufc"


def _axis_plan(ax, length, ax_dx, data_dtype, out_dtype, first_order_edges) -> AxisPlan:
    """numpy.gradient's per-axis coefficients, evaluated exactly as numpy evaluates them."""
    uniform = _ndim(ax_dx) == 0
    n = length
    if uniform:
        divisor = 2.0 * ax_dx
        if not _is_plain_scalar(divisor):
            raise Delegate
        interior = Region(1, n - 1, "diff", (1, -1), (divisor,),
                          _compute_dtype(data_dtype, out_dtype, divisor))
    else:
        dx1 = ax_dx[0:-1]
        dx2 = ax_dx[1:]
        a = -(dx2) / (dx1 * (dx1 + dx2))
        b = (dx2 - dx1) / (dx1 * dx2)
        c = dx1 / (dx2 * (dx1 + dx2))
        interior = Region(1, n - 1, "comb", (-1, 0, 1), (a, b, c),
                          _compute_dtype(data_dtype, out_dtype, a, b, c))

    if first_order_edges:
        dx_0 = ax_dx if uniform else ax_dx[0]
        dx_n = ax_dx if uniform else ax_dx[-1]
        if not (_is_plain_scalar(dx_0) and _is_plain_scalar(dx_n)):
            raise Delegate
        left = Region(0, 1, "diff", (1, 0), (dx_0,), _compute_dtype(data_dtype, out_dtype, dx_0))
        right = Region(n - 1, n, "diff", (0, -1), (dx_n,),
                       _compute_dtype(data_dtype, out_dtype, dx_n))
    else:
        if uniform:
            a = -1.5 / ax_dx
            b = 2.0 / ax_dx
            c = -0.5 / ax_dx
        else:
            dx1 = ax_dx[0]
            dx2 = ax_dx[1]
            a = -(2.0 * dx1 + dx2) / (dx1 * (dx1 + dx2))
            b = (dx1 + dx2) / (dx1 * dx2)
            c = -dx1 / (dx2 * (dx1 + dx2))
        if length < 3:
            # numpy gets here with edge_order 0 or negative (only > 2 is rejected) and fails while
            # indexing the rows of the one-sided second-order formula.
            raise IndexError(
                f"index {length} is out of bounds for axis {ax} with size {length} (an edge_order "
                "other than 1 asks for second-order edges, which need 3 elements)"
            )
        left = Region(0, 1, "comb", (0, 1, 2), (a, b, c),
                      _compute_dtype(data_dtype, out_dtype, a, b, c))
        if uniform:
            a = 0.5 / ax_dx
            b = -2.0 / ax_dx
            c = 1.5 / ax_dx
        else:
            dx1 = ax_dx[-2]
            dx2 = ax_dx[-1]
            a = (dx2) / (dx1 * (dx1 + dx2))
            b = -(dx2 + dx1) / (dx1 * dx2)
            c = (2.0 * dx2 + dx1) / (dx2 * (dx1 + dx2))
        right = Region(n - 1, n, "comb", (-2, -1, 0), (a, b, c),
                       _compute_dtype(data_dtype, out_dtype, a, b, c))
        if not all(_is_plain_scalar(v) for r in (left, right) for v in r.weights):
            raise Delegate
    return AxisPlan(ax, length, (interior, left, right), uniform=bool(uniform))


def _device_coordinate_axis(ax, length, coords, data_dtype, out_dtype, first_order_edges) -> AxisPlan:
    """Both variants of a device coordinate axis, and the device flag that picks one.

    Everything stays on the device and is queued on the current stream: no host synchronisation.
    The uniform variant's "scalars" are 0-d device arrays, which NEP 50 treats like numpy scalars
    (strong), so both variants compute in the same dtype.
    """
    diffx = coords.diffs
    flag = (diffx == diffx[0]).all()
    coord_plan = _axis_plan(ax, length, diffx, data_dtype, out_dtype, first_order_edges)
    uniform_plan = _axis_plan(ax, length, diffx[0], data_dtype, out_dtype, first_order_edges)
    return AxisPlan(
        ax,
        length,
        coord_plan.regions,
        uniform=None,
        uniform_variant=uniform_plan,
        uniform_flag=flag,
    )
