"""cugrad's stencils beyond numpy.gradient: accuracy orders 4, 6, 8 and periodic boundaries.

:mod:`cugrad._plan` parses numpy's arguments and builds numpy's own regions; this module validates
the options numpy lacks and turns them into the same :class:`~cugrad._plan.Region` description,
so every backend executes them without knowing they exist.

The rules (README, "Accuracy orders and periodic boundaries", says the same for users):

* Accuracy ``p`` (half-width ``m = p/2``) with one-sided ends: rows ``[m, n-m)`` use the central
  stencil of ``p+1`` points; each of the first and last ``m`` rows uses the ``p+1`` nearest points
  of its end of the axis, so every row has order ``p``. All are ``"dsum"`` regions.
* Uniform spacing ``h``: central rows sum ``w_k * (f[i+k] - f[i-k])`` for ``k = 1..m``; edge rows sum
  ``w_o * (f[i+o] - f[i])`` over the other points ``o`` of their window. ``w = c / h`` with ``c`` the
  exact rational weight, rounded once to float64 (then into the compute dtype). Differences make
  the derivative of a constant exactly 0 whatever the rounding of the weights.
* Coordinates ``x``: every row sums ``w_o * (f[i+o] - f[i])`` with ``w`` the derivative of the
  polynomial through the row's ``p+1`` points (Fornberg, float64, nodes relative to ``x[i]``),
  rounded into the dtype numpy gives the coefficients of those coordinates (float32 coordinates
  give float32 weights, integers float64).
* Periodic: every row uses the central stencil with indices wrapped. Scalar spacing wraps by the
  spacing; at accuracy 2 the row is numpy's interior formula ``(f[i+1] - f[i-1]) / (2*h)``.
  Coordinates need ``period``, the domain length: the coordinate after ``x[n-1]`` is ``x[0] +
  period`` (``x[0] - period`` for descending coordinates), so the wrap distance is ``period -
  |x[n-1] - x[0]|``. Evenly spaced coordinates whose wrap distance equals their spacing take the
  scalar-spacing formulas (numpy's shortcut, extended across the wrap); accuracy 2 uses numpy's
  three-point coordinate formula on every row.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from cugrad import _backend, _plan, _weights


@dataclass(frozen=True, slots=True)
class AxisOption:
    """cugrad's options for one differentiated axis."""

    accuracy: int
    boundary: str
    period: float | None
    period_given_for_axis: bool  # from a sequence entry (not one number for all axes)

    @property
    def numpy_form(self) -> bool:
        return self.accuracy == 2 and self.boundary == "edge"


def parse_options(
    accuracy: Any, boundary: Any, period: Any, axes: tuple[int, ...], edge_order: Any
) -> list[AxisOption]:
    """Validate ``accuracy``, ``boundary`` and ``period`` into one option per axis of ``axes``."""
    count = len(axes)
    if (
        isinstance(accuracy, (bool, np.bool_))
        or not isinstance(accuracy, numbers.Integral)
        or int(accuracy) not in _plan.ACCURACIES
    ):
        raise ValueError(
            f"accuracy must be 2, 4, 6 or 8 (the order of the finite differences), got {accuracy!r}"
        )
    accuracy = int(accuracy)
    if accuracy > 2 and edge_order != 1:
        raise ValueError(
            f"edge_order applies to accuracy=2 only; with accuracy={accuracy} every row, the edges "
            "included, has that order: leave edge_order at its default"
        )

    if isinstance(boundary, str):
        boundaries = [boundary] * count
    else:
        boundaries = _sequence(boundary, "boundary", count, "one string for every axis")
    for b in boundaries:
        if not isinstance(b, str) or b not in _plan.BOUNDARIES:
            raise ValueError(f"unknown boundary {b!r}: use 'edge' or 'periodic' (one per axis, or one "
                             "for all)")

    if period is None:
        periods: list[Any] = [None] * count
        per_axis = False
    elif _plan._ndim(period) == 0:
        periods, per_axis = [period] * count, False
    else:
        periods, per_axis = _sequence(period, "period", count, "one number for every axis"), True
    checked = []
    for ax, b, p in zip(axes, boundaries, periods, strict=True):
        if p is not None:
            p = _positive_length(p, ax)
            if per_axis and b != "periodic":
                raise ValueError(
                    f"period is given for axis {ax}, whose boundary is {b!r}: give None there, or "
                    "boundary='periodic'"
                )
        checked.append(p)
    if period is not None and "periodic" not in boundaries:
        raise ValueError("period is only used with boundary='periodic'; it was given without one")
    return [
        AxisOption(accuracy, b, p, per_axis and p is not None)
        for b, p in zip(boundaries, checked, strict=True)
    ]


def _sequence(value: Any, name: str, count: int, alternative: str) -> list[Any]:
    try:
        items = list(value)
    except TypeError:
        raise ValueError(f"{name} must be {alternative} or a sequence with one per axis, got "
                         f"{value!r}") from None
    if len(items) != count:
        raise ValueError(
            f"{name} has {len(items)} entries for {count} differentiated axes: give {alternative}, "
            "or one per axis in `axis` order"
        )
    return items


def _positive_length(p: Any, ax: int) -> float:
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, (numbers.Real, np.ndarray)):
        raise ValueError(f"period for axis {ax} must be a positive number, got {p!r}")
    value = float(p)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"period for axis {ax} must be a positive finite number, got {p!r}")
    return value


def extended_axis_plan(
    ax: int,
    length: int,
    spacing: Any,
    coordinates: Any,
    option: AxisOption,
    data_dtype: np.dtype,
    out_dtype: np.dtype,
    deriv: int = 1,
) -> _plan.AxisPlan:
    """The regions of one axis at ``option``'s accuracy and boundary.

    ``spacing`` is what :func:`cugrad._plan.make_plan` parsed for the axis (a scalar, numpy's
    difference array, or device differences); ``coordinates`` the user's 1-D coordinates, or None.
    ``deriv`` is 1 for the gradient, 2 for the Laplacian's second derivatives (whose one-sided rows
    use one point more: ``p+2``, exact for polynomials of degree ``p+1``).
    """
    acc, periodic = option.accuracy, option.boundary == "periodic"
    minimum = acc + 1 if periodic or deriv == 1 else acc + 2
    if length < minimum:
        raise ValueError(
            f"axis {ax} has {length} points, but accuracy={acc} with boundary={option.boundary!r} "
            f"needs at least {minimum}"
        )
    if coordinates is None:
        if option.period_given_for_axis:
            raise ValueError(
                f"period is given for axis {ax}, which has scalar spacing: there the wrap distance "
                "is the spacing; give None for that axis"
            )
        h = _uniform_spacing(spacing, ax)
        regions = _uniform_regions(length, acc, periodic, h, data_dtype, out_dtype, deriv)
        return _plan.AxisPlan(ax, length, regions, uniform=True, accuracy=acc,
                              boundary=option.boundary, deriv=deriv)

    x, wdtype = _host_coordinates(coordinates, ax)
    diffx = np.diff(x)
    x64 = x.astype(np.float64)
    wrap = None
    if periodic:
        if option.period is None:
            raise ValueError(
                f"axis {ax} is periodic and given by coordinates: pass period=, the length of the "
                "domain (for example 360 for longitudes in degrees)"
            )
        span = float(x64[-1] - x64[0])
        if not abs(span) < option.period:
            raise ValueError(
                f"period {option.period!r} for axis {ax} must exceed the coordinate span "
                f"|x[-1] - x[0]| = {abs(span)!r}: the coordinate after the last one is the first "
                "plus the period"
            )
        signed_period = math.copysign(option.period, span)
        wrap = signed_period - span
    # numpy's shortcut: evenly spaced coordinates are scalar spacing (here also across the wrap).
    if (diffx == diffx[0]).all() and (wrap is None or wdtype.type(wrap) == diffx[0]):
        h = _uniform_spacing(diffx[0], ax)
        regions = _uniform_regions(length, acc, periodic, h, data_dtype, out_dtype, deriv)
        return _plan.AxisPlan(ax, length, regions, uniform=True, accuracy=acc,
                              boundary=option.boundary, deriv=deriv)
    if periodic:
        regions = _periodic_coordinate_regions(x64, diffx, signed_period, acc, wdtype, ax,
                                               data_dtype, out_dtype, deriv)
    else:
        regions = _coordinate_regions(x64, acc, wdtype, ax, data_dtype, out_dtype, deriv)
    return _plan.AxisPlan(ax, length, regions, uniform=False, accuracy=acc,
                          boundary=option.boundary, deriv=deriv)


def _uniform_spacing(spacing: Any, ax: int) -> Any:
    """A real, finite, non-zero scalar spacing, kept as the object numpy would combine."""
    if _backend.is_device_array(spacing):
        raise TypeError(
            f"a 0-d device array is not accepted as the spacing of axis {ax}: pass a Python or "
            "numpy scalar"
        )
    value = spacing[()] if isinstance(spacing, np.ndarray) else spacing
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(
            f"the spacing of axis {ax} must be a real number with accuracy > 2 or a periodic "
            f"boundary, got {spacing!r}"
        )
    if isinstance(value, np.number) and value.dtype.kind not in "iuf":
        raise TypeError(f"the spacing of axis {ax} must be real, got {spacing!r} of dtype {value.dtype}")
    if not (math.isfinite(float(value)) and float(value) != 0):
        raise ValueError(f"the spacing of axis {ax} must be finite and non-zero, got {spacing!r}")
    return value


def _typed_weight(value: float, spacing: Any) -> Any:
    """A weight with the spacing's NEP 50 standing: a Python float for a Python number (weak),
    else a numpy scalar of the float dtype numpy's ``c / h`` would have (strong)."""
    if isinstance(spacing, (int, float)) and not isinstance(spacing, np.number):
        return value
    return np.result_type(spacing.dtype, 1.0).type(value)


def _uniform_regions(n, acc, periodic, h, data_dtype, out_dtype, deriv=1):
    m = acc // 2
    if deriv == 2:
        return _uniform_second_regions(n, acc, periodic, h, data_dtype, out_dtype)
    if periodic and acc == 2:
        divisor = 2.0 * h  # numpy's interior expression, so interior rows keep numpy's bits
        dtype = _plan._compute_dtype(data_dtype, out_dtype, divisor)
        return (_plan.Region(0, n, "diff", (1, -1), (divisor,), dtype, wrap=True),)
    hf = float(h)
    central = _weights.rational_weights(tuple(range(-m, m + 1)))
    offsets = tuple(o for k in range(1, m + 1) for o in (k, -k))
    weights = tuple(_typed_weight(_weights.scaled(central[m + k], hf), h) for k in range(1, m + 1))
    dtype = _plan._compute_dtype(data_dtype, out_dtype, *weights)
    if periodic:
        return (_plan.Region(0, n, "dsum", offsets, weights, dtype, wrap=True),)
    regions = [_plan.Region(m, n - m, "dsum", offsets, weights, dtype)]
    for i, window in _edge_rows(n, acc):
        rel = tuple(j - i for j in window)
        exact = _weights.rational_weights(rel)
        pairs = [(o, _typed_weight(_weights.scaled(w, hf), h)) for o, w in zip(rel, exact, strict=True)
                 if o != 0]
        regions.append(_dsum_row(i, pairs, data_dtype, out_dtype))
    return tuple(regions)


def _uniform_second_regions(n, acc, periodic, h, data_dtype, out_dtype):
    """Second derivatives: every row sums ``w_o * (f[i+o] - f[i])``, ``w = c / h**2``."""
    m, hf = acc // 2, float(h)

    def row_weights(rel):
        exact = _weights.rational_weights(tuple(rel), 2)
        return [(o, _typed_weight(_weights.scaled(w, hf, 2), h))
                for o, w in zip(rel, exact, strict=True) if o != 0]

    central = row_weights(range(-m, m + 1))
    if periodic:
        return (_dsum_region(0, n, central, data_dtype, out_dtype, wrap=True),)
    regions = [_dsum_region(m, n - m, central, data_dtype, out_dtype)]
    for i, window in _edge_rows(n, acc, acc + 2):
        regions.append(_dsum_row(i, row_weights([j - i for j in window]), data_dtype, out_dtype))
    return tuple(regions)


def _edge_rows(n: int, acc: int, width: int | None = None):
    """(row, window of ``width`` rows, p+1 by default) for the first and last p/2 rows."""
    m = acc // 2
    width = acc + 1 if width is None else width
    for i in range(m):
        yield i, range(0, width)
    for i in range(n - m, n):
        yield i, range(n - width, n)


def _dsum_row(i, pairs, data_dtype, out_dtype) -> _plan.Region:
    return _dsum_region(i, i + 1, pairs, data_dtype, out_dtype)


def _dsum_region(start, stop, pairs, data_dtype, out_dtype, wrap=False) -> _plan.Region:
    """``sum of w * (f[i+o] - f[i])`` over ``pairs`` of (o, w), in their order."""
    weights = tuple(w for _, w in pairs)
    offsets = tuple(v for o, _ in pairs for v in (o, 0))
    return _plan.Region(start, stop, "dsum", offsets, weights,
                        _plan._compute_dtype(data_dtype, out_dtype, *weights), wrap=wrap)


def _host_coordinates(coordinates: Any, ax: int) -> tuple[np.ndarray, np.dtype]:
    """The coordinates on the host, and the dtype numpy gives their coefficients."""
    if _backend.is_device_array(coordinates):
        # The weights are computed on the host in float64 (a small, one-off copy of n values).
        coordinates = coordinates.get()
    x = np.asarray(coordinates)
    if x.dtype.kind in "iub":
        x = x.astype(np.float64)  # numpy converts integer coordinates before differencing
    if x.dtype.kind != "f":
        raise TypeError(
            f"the coordinates of axis {ax} must be real numbers with accuracy > 2 or a periodic "
            f"boundary, got dtype {x.dtype}"
        )
    if not np.isfinite(x).all():
        raise ValueError(f"the coordinates of axis {ax} must be finite")
    return x, x.dtype


def _checked(weights: np.ndarray, ax: int) -> np.ndarray:
    if not np.isfinite(weights).all():
        raise ValueError(
            f"the coordinates of axis {ax} repeat a value within a stencil, so its weights are "
            "infinite: coordinates must be distinct"
        )
    return weights


def _coordinate_regions(x64, acc, wdtype, ax, data_dtype, out_dtype, deriv=1):
    n, m = len(x64), acc // 2
    rows = np.arange(m, n - m)
    rel = np.arange(-m, m + 1)
    nodes = x64[rows[:, None] + rel[None, :]] - x64[rows][:, None]
    w = _checked(_weights.fornberg(nodes, deriv), ax)
    pairs = [(int(o), w[:, k].astype(wdtype)) for k, o in enumerate(rel) if o != 0]
    weights = tuple(a for _, a in pairs)
    regions = [_plan.Region(m, n - m, "dsum", tuple(v for o, _ in pairs for v in (o, 0)), weights,
                            _plan._compute_dtype(data_dtype, out_dtype, *weights))]
    for i, window in _edge_rows(n, acc, acc + deriv):
        idx = np.asarray(window)
        row = _checked(_weights.fornberg((x64[idx] - x64[i])[None, :], deriv), ax)[0]
        pairs = [(int(j - i), wdtype.type(row[k])) for k, j in enumerate(idx) if j != i]
        regions.append(_dsum_row(i, pairs, data_dtype, out_dtype))
    return tuple(regions)


def _periodic_coordinate_regions(x64, diffx, period, acc, wdtype, ax, data_dtype, out_dtype,
                                 deriv=1):
    n, m = len(x64), acc // 2
    wrap = period - (x64[-1] - x64[0])
    if acc == 2 and deriv == 1:
        # numpy's three-point coordinate formula on every row, with the wrap distance at both ends;
        # rows 1..n-2 therefore equal numpy.gradient's interior bit for bit.
        edge = np.asarray([wrap], dtype=wdtype)
        dxe = np.concatenate([edge, diffx, edge])
        dx1, dx2 = dxe[:-1], dxe[1:]
        a = -(dx2) / (dx1 * (dx1 + dx2))
        b = (dx2 - dx1) / (dx1 * dx2)
        c = dx1 / (dx2 * (dx1 + dx2))
        return (_plan.Region(0, n, "comb", (-1, 0, 1), (a, b, c),
                             _plan._compute_dtype(data_dtype, out_dtype, a, b, c), wrap=True),)
    j = np.arange(n)[:, None] + np.arange(-m, m + 1)[None, :]
    extended = x64[j % n] + (j // n) * period
    w = _checked(_weights.fornberg(extended - x64[:, None], deriv), ax)
    pairs = [(o, w[:, k].astype(wdtype)) for k, o in enumerate(range(-m, m + 1)) if o != 0]
    weights = tuple(a for _, a in pairs)
    return (_plan.Region(0, n, "dsum", tuple(v for o, _ in pairs for v in (o, 0)), weights,
                         _plan._compute_dtype(data_dtype, out_dtype, *weights), wrap=True),)
