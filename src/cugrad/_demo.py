"""``cugrad demo``: differentiate a field whose gradient is known, and show what cugrad promises.

The field is ``f = sin(x) cos(2y) exp(z/2)`` on ``[-1, 2.5] x [0.5, 2] x [-1, 1]``, sampled on 1-D
coordinate arrays (``y`` deliberately non-uniform), at two resolutions N and 2N. The demo prints
the time of cugrad next to numpy.gradient's measured in the same run, checks that both give the same
bits, and measures the error against the exact gradient so that a user sees the convergence order of
each ``edge_order`` as measured, not as advertised: with ``edge_order=1`` the one-sided edges are
first-order accurate and they dominate the maximum error, the interior is second order.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import cugrad
from cugrad import _backend, _info
from cugrad._cli import CommandError, atomic_path

BOX = ((-1.0, 2.5), (0.5, 2.0), (-1.0, 1.0))
# What the demo calls, as a user would write it (the arrays are the ones built below).
CALL_TEXT = "dfdx, dfdy, dfdz = cugrad.gradient(f, x, y, z, edge_order=e)"
AXIS_NAMES = ("x", "y", "z")
EDGE_ORDERS = (1, 2)
DEFAULT_SIZE = 64
MIN_SIZE = 4  # edge_order=2 needs 3 points; one more so the interior is not all edges
PLOT_HINT = 'pip install matplotlib (or, in a cugrad checkout, pip install ".[plot]")'
# Two timings differ only when both the fastest and the median run say so by more than this.
NOISE = 0.10


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``cugrad demo`` to ``parser``."""
    parser.add_argument(
        "--backend",
        choices=_backend.BACKENDS,
        default=None,
        help="backend to run cugrad with (default: auto, i.e. the GPU when one is usable, "
        "else NumPy; CUGRAD_BACKEND sets the default)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=DEFAULT_SIZE,
        metavar="N",
        help=f"points per axis of the coarse grid; the fine grid has 2N (default: {DEFAULT_SIZE})",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        metavar="R",
        help="timed calls of each implementation, interleaved; the minimum and the median are "
        "shown (default: 5)",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw a slice of the field, its gradient magnitude and the error map; the "
        "format follows the extension (.png, .pdf, .svg, ...) "
        "(needs matplotlib)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit 1 if cugrad and numpy.gradient disagree anywhere."""
    if args.size < MIN_SIZE:
        raise CommandError(f"--size must be at least {MIN_SIZE}, got {args.size}")
    if args.repeat < 1:
        raise CommandError(f"--repeat must be at least 1, got {args.repeat}")
    if args.plot is not None:
        _check_plot_path(args.plot)  # fail before minutes of work, not after

    device = _Device.choose(args.backend)
    print("cugrad demo: f(x, y, z) = sin(x) cos(2y) exp(z/2)")
    print(f"  box {_box_text()}; x and z uniform, y stretched (non-uniform)")
    print(f"  coordinates passed as 1-D arrays; float64; grids {_grid_text(args.size)}")
    print("  f[i, j, k] = f(x[i], y[j], z[k]): array axis 0 is x, axis 1 is y, axis 2 is z")
    print(f"  the call: {CALL_TEXT}  (edge_order 1 and 2)")
    print(f"  backend: {device.description}")
    print()

    sizes = (args.size, 2 * args.size)
    results: dict[tuple[int, int], _Result] = {}
    identical = True
    for n in sizes:
        grid = _Grid.build(n)
        for edge_order in EDGE_ORDERS:
            result = _differentiate(grid, edge_order, device)
            results[n, edge_order] = result
            identical &= result.identical
        if n == sizes[-1]:
            _print_timings(grid, device, args.repeat)
            if args.plot is not None:
                _plot(grid, results[n, 2].gradient, args.plot)
        del grid

    print()
    if identical:
        print("same bits as numpy.gradient: yes (both grids, edge_order 1 and 2, all axes)")
    else:
        print("same bits as numpy.gradient: NO (see above); please report this bug")
    print()
    _print_errors(results, sizes)
    print()
    _print_accuracy_orders(sizes, device)
    if args.plot is not None:
        print(f"\nplot written to {args.plot}")
    return 0 if identical else 1


# --- the problem -------------------------------------------------------------------------------


@dataclass
class _Grid:
    n: int
    coords: tuple[np.ndarray, np.ndarray, np.ndarray]
    field: np.ndarray
    exact: tuple[np.ndarray, np.ndarray, np.ndarray]

    @classmethod
    def build(cls, n: int) -> _Grid:
        s = np.linspace(0.0, 1.0, n)
        (x0, x1), (y0, y1), (z0, z1) = BOX
        x = x0 + (x1 - x0) * s
        # A smooth monotone stretch (its slope stays between 0.7 and 1.5): cells grow and shrink
        # along y, so numpy's non-uniform formula is exercised, not its uniform shortcut.
        y = y0 + (y1 - y0) * (s + 0.15 * np.sin(np.pi * s) * (1.0 - 2.0 * s))
        z = z0 + (z1 - z0) * s
        sx, cx = np.sin(x)[:, None, None], np.cos(x)[:, None, None]
        c2y, s2y = np.cos(2 * y)[None, :, None], np.sin(2 * y)[None, :, None]
        ez = np.exp(z / 2)[None, None, :]
        field = sx * c2y * ez
        exact = (cx * c2y * ez, -2.0 * sx * s2y * ez, 0.5 * field)
        return cls(n, (x, y, z), field, exact)


@dataclass
class _Result:
    gradient: tuple[np.ndarray, ...]
    identical: bool
    max_error: tuple[float, ...]
    interior_error: tuple[float, ...]


def _differentiate(grid: _Grid, edge_order: int, device: _Device) -> _Result:
    field, coords = device.put(grid.field), tuple(device.put(c) for c in grid.coords)
    got = cugrad.gradient(field, *coords, edge_order=edge_order, backend=device.backend)
    got = tuple(device.get(g) for g in got)
    expected = np.gradient(grid.field, *grid.coords, edge_order=edge_order)
    identical = all(_same_bits(g, e) for g, e in zip(got, expected, strict=True))
    if not identical:
        print(f"  N={grid.n} edge_order={edge_order}: cugrad and numpy.gradient differ")
    errors = [np.abs(g - e) for g, e in zip(got, grid.exact, strict=True)]
    interior = [_interior(err, axis) for axis, err in enumerate(errors)]
    return _Result(
        gradient=got,
        identical=identical,
        max_error=tuple(float(err.max()) for err in errors),
        interior_error=tuple(float(err.max()) for err in interior),
    )


def _interior(a: np.ndarray, axis: int) -> np.ndarray:
    # Drop only the boundary planes the one-sided formula of this axis touches.
    index = [slice(None)] * a.ndim
    index[axis] = slice(1, -1)
    return a[tuple(index)]


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and a.tobytes(order="C") == np.ascontiguousarray(b).tobytes(order="C")
    )


# --- where cugrad runs ---------------------------------------------------------------------------


@dataclass
class _Device:
    """Where the demo's arrays live for cugrad: the host (NumPy) or a GPU (CuPy)."""

    backend: str | None
    description: str
    xp: Any = np

    @classmethod
    def choose(cls, requested: str | None) -> _Device:
        try:
            name = _backend.requested_backend(requested)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        usable, reason = _backend.gpu_status()
        if name == "cupy" and not usable:
            raise CommandError(f'backend "cupy" needs a usable GPU: {reason}')
        if name == "numpy" or not usable:
            return cls(backend=name, description=_info.numpy_backend_description())
        import cupy  # only reached when gpu_status() found CuPy usable

        gpu = _info.device_description(cupy.cuda.Device().id)
        # The arrays are put on the GPU, so "auto" there means the CuPy backend.
        return cls(backend=name, description=f"cupy on {gpu}", xp=cupy)

    @property
    def on_gpu(self) -> bool:
        return self.xp is not np

    def put(self, a: np.ndarray) -> Any:
        return self.xp.asarray(a) if self.on_gpu else a

    def get(self, a: Any) -> np.ndarray:
        return a.get() if self.on_gpu else a

    def synchronize(self) -> None:
        if self.on_gpu:
            self.xp.cuda.get_current_stream().synchronize()


# --- output -----------------------------------------------------------------------------------


def _print_timings(grid: _Grid, device: _Device, repeat: int) -> None:
    field, coords = device.put(grid.field), tuple(device.put(c) for c in grid.coords)

    def run_cugrad() -> None:
        cugrad.gradient(field, *coords, backend=device.backend)
        device.synchronize()

    def run_numpy() -> None:
        np.gradient(grid.field, *grid.coords)

    ours, theirs = _interleaved_seconds(run_cugrad, run_numpy, repeat)
    where = "GPU, including kernel launch and sync" if device.on_gpu else "CPU"
    print(f"time for the gradient of the {grid.n}^3 field, all 3 axes, edge_order=1")
    print(
        f"({repeat} calls of each, interleaved, after one warm-up call each; cugrad on the "
        f"{where}):"
    )
    print(f"  {'':16}{'min':>12}{'median':>12}")
    print(f"  {'cugrad':16}{_ms(min(ours))}{_ms(statistics.median(ours))}")
    print(f"  {'numpy.gradient':16}{_ms(min(theirs))}{_ms(statistics.median(theirs))}")
    print(f"  {verdict(ours, theirs)}")


def verdict(ours: list[float], theirs: list[float]) -> str:
    """Compare two lists of timings honestly: a ratio only when min and median agree on it."""
    best = _ratio(min(theirs), min(ours))
    typical = _ratio(statistics.median(theirs), statistics.median(ours))
    low, high = sorted((best, typical))
    if low > 1 + NOISE:
        return f"cugrad is {low:.1f}x to {high:.1f}x faster than numpy.gradient here"
    if high < 1 / (1 + NOISE):
        return f"cugrad is {1 / high:.1f}x to {1 / low:.1f}x slower than numpy.gradient here"
    return (
        "cugrad and numpy.gradient take about the same time here (within this machine's "
        "run-to-run noise)"
    )


def _ratio(numerator: float, denominator: float) -> float:
    if denominator <= 0:
        return math.inf if numerator > 0 else 1.0
    return numerator / denominator


def _interleaved_seconds(
    first: Callable[[], None], second: Callable[[], None], repeat: int
) -> tuple[list[float], list[float]]:
    """Time ``first`` and ``second`` alternately, so that a busy machine slows both alike."""
    first()  # warm-up: first-call costs (kernel compilation, thread pool start) are not the subject
    second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for call, samples in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            call()
            samples.append(time.perf_counter() - start)
    return times


def _print_errors(results: dict[tuple[int, int], _Result], sizes: tuple[int, int]) -> None:
    coarse, fine = sizes
    # Cell size is proportional to 1 / (points - 1) on every axis (the y stretch scales with it).
    h_ratio = (fine - 1) / (coarse - 1)
    print("max |cugrad - exact gradient| over the whole grid, edges included:")
    print(f"  edge_order  axis  {'N=' + str(coarse):>10}  {'N=' + str(fine):>10}  order")
    for edge_order in EDGE_ORDERS:
        for axis, name in enumerate(AXIS_NAMES):
            e0 = results[coarse, edge_order].max_error[axis]
            e1 = results[fine, edge_order].max_error[axis]
            print(
                f"  {edge_order:>10}  {name:>4}  {e0:10.3e}  {e1:10.3e}  "
                f"{_order(e0, e1, h_ratio):>5}"
            )
    coarse_interior = results[coarse, 1].interior_error
    fine_interior = results[fine, 1].interior_error
    interior = ", ".join(
        f"{name} {_order(coarse_interior[a], fine_interior[a], h_ratio)}"
        for a, name in enumerate(AXIS_NAMES)
    )
    print(
        "order = log(error ratio) / log(cell size ratio). edge_order=1 uses first-order one-sided\n"
        "differences at the edges, which dominate the maximum; without the edge points the order\n"
        f"with edge_order=1 is: {interior}. With edge_order=2 the edges are second order too."
    )


ACCURACIES = (2, 4, 6)


def _print_accuracy_orders(sizes: tuple[int, int], device: _Device) -> None:
    """cugrad's accuracy orders on the same field and grids: error and measured order."""
    coarse, fine = sizes
    h_ratio = (fine - 1) / (coarse - 1)
    errors: dict[tuple[int, int], float] = {}
    for n in sizes:
        grid = _Grid.build(n)
        field, coords = device.put(grid.field), tuple(device.put(c) for c in grid.coords)
        for acc in ACCURACIES:
            if n < acc + 1:
                continue
            got = cugrad.gradient(field, *coords, accuracy=acc, backend=device.backend)
            errors[n, acc] = max(float(np.abs(device.get(g) - e).max())
                                 for g, e in zip(got, grid.exact, strict=True))
        del grid, field
    print("cugrad.gradient(f, x, y, z, accuracy=p): max error over all axes, edges included")
    print(f"  accuracy  {'N=' + str(coarse):>10}  {'N=' + str(fine):>10}  order")
    for acc in ACCURACIES:
        if (coarse, acc) not in errors:
            print(f"  {acc:>8}  (needs at least {acc + 1} points per axis)")
            continue
        e0, e1 = errors[coarse, acc], errors[fine, acc]
        print(f"  {acc:>8}  {e0:10.3e}  {e1:10.3e}  {_order(e0, e1, h_ratio):>5}")
    print("accuracy 2 is numpy.gradient (edge_order=1 edges); accuracy p >= 4 uses stencils of p+1\n"
          "points everywhere, off-centre at the edges, so every row, the edges too, has order p.")


def _order(coarse_error: float, fine_error: float, h_ratio: float) -> str:
    if coarse_error <= 0 or fine_error <= 0:
        return "exact"
    return f"{math.log(coarse_error / fine_error) / math.log(h_ratio):.2f}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.2f} ms"


def _box_text() -> str:
    return " x ".join(f"[{lo:g}, {hi:g}]" for lo, hi in BOX)


def _grid_text(n: int) -> str:
    return f"{n}^3 and {2 * n}^3 points"


def _check_plot_path(path: str) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise CommandError(f"--plot needs matplotlib: {PLOT_HINT}")
    if os.path.isdir(path):
        raise CommandError(f"--plot {path} is a directory; give a file name such as demo.png")
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise CommandError(f"cannot write {path}: its directory does not exist")
    suffix = _plot_format(path)
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix not in formats:
        raise CommandError(
            f"--plot {path}: unknown image format {suffix!r}; use one of "
            f"{', '.join('.' + name for name in sorted(formats))}"
        )


def _plot_format(path: str) -> str:
    return os.path.splitext(path)[1].lstrip(".").lower() or "png"


def _plot(grid: _Grid, gradient: tuple[np.ndarray, ...], path: str) -> None:
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure  # optional dependency, checked before the run

    k = grid.n // 2
    x, y, z = grid.coords
    magnitude = np.sqrt(sum(g[:, :, k] ** 2 for g in gradient))
    error = np.sqrt(
        sum((g[:, :, k] - e[:, :, k]) ** 2 for g, e in zip(gradient, grid.exact, strict=True))
    )
    positive = error[error > 0]
    # The error spans decades (edges against interior): a log scale shows both; exact zeros
    # (if any) are drawn as the smallest positive error.
    floor = float(positive.min()) if positive.size else 1e-300
    error_norm = LogNorm(vmin=floor, vmax=max(float(error.max()), floor * 10))
    panels = (
        ("f(x, y, z)", grid.field[:, :, k], "viridis", None, "f"),
        ("|grad f| (cugrad, edge_order=2)", magnitude, "magma", None, "|grad f|"),
        (
            "|cugrad - exact| (edge_order=2)",
            np.maximum(error, floor),
            "inferno",
            error_norm,
            "|error| (log scale)",
        ),
    )
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    for ax, (title, data, cmap, norm, label) in zip(fig.subplots(1, 3), panels, strict=True):
        mesh = ax.pcolormesh(x, y, data.T, shading="nearest", cmap=cmap, norm=norm)
        ax.set_title(title)
        ax.set_xlabel("x (array axis 0)")
        ax.set_ylabel("y (array axis 1, non-uniform)")
        ax.set_aspect("equal")
        fig.colorbar(mesh, ax=ax, label=label, shrink=0.6)
    fig.suptitle(f"slice z = {z[k]:.3f} (array axis 2, index {k}) of the {grid.n}^3 grid")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=_plot_format(path), dpi=110)
