"""``obj.cugrad.differentiate`` against xarray's ``obj.differentiate``, and the accessor's overhead.

    python benchmarks/xarray_accessor.py                  # 256^3 float32, 7 rounds
    python benchmarks/xarray_accessor.py --n 128 --repeat 15 --chunk 32

Measured side by side in one process, interleaved (each round times every contestant once, in
turn), on a DataArray of ``n^3`` float32 with three float64 coordinates (x evenly spaced, y and z
not, so both of numpy's formulas are timed):

* in memory: ``da.cugrad.differentiate(dim)`` vs ``da.differentiate(dim)`` (numpy.gradient);
* dask-backed (chunks of ``--chunk`` along every dim): the same two, each followed by
  ``.compute()`` (the threaded scheduler), so the times include the graph and its execution;
* the accessor's overhead: ``da.cugrad.differentiate(dim)`` vs ``cugrad.gradient(da.values,
  coord, axis=...)`` on the bare array (target: under 5%); on a shared machine the difference of
  two ~100 ms timings is noisy, so the fixed cost per call is also measured on an 8^3 field (where
  the computation is negligible) and printed as a share of the full-size bare call.

Every result is compared with xarray's before anything is timed (bit for bit). Prints the minimum
and the median of each, and the ratios of the minima and of the medians.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

try:
    import cugrad
except ImportError:  # running from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import cugrad

import xarray as xr

import cugrad.xarray  # noqa: F401  (registers the accessor)


def make_field(n: int) -> xr.DataArray:
    rng = np.random.default_rng(0)
    coords = {
        "x": np.arange(n) * 0.25,
        "y": np.cumsum(rng.uniform(0.5, 1.5, n)),
        "z": np.cumsum(rng.uniform(0.5, 1.5, n)),
    }
    data = rng.standard_normal((n, n, n), dtype=np.float32)
    return xr.DataArray(data, dims=["z", "y", "x"], coords=coords, name="f", attrs={"units": "K"})


def interleaved(contestants: dict[str, object], repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for fn in contestants.values():  # one warm-up each
        fn()
    for _ in range(repeat):
        for name, fn in contestants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def report(title: str, times: dict[str, list[float]], base: str) -> None:
    print(f"\n{title}")
    print(f"  {'':34s} {'min ms':>9s} {'median ms':>10s} {'min ratio':>10s} {'median ratio':>13s}")
    bmin, bmed = min(times[base]), statistics.median(times[base])
    for name, t in times.items():
        tmin, tmed = min(t), statistics.median(t)
        print(
            f"  {name:34s} {tmin * 1e3:9.1f} {tmed * 1e3:10.1f} "
            f"{tmin / bmin:10.3f} {tmed / bmed:13.3f}"
        )


def check(actual: xr.DataArray, expected: xr.DataArray, what: str) -> None:
    xr.testing.assert_identical(actual, expected)
    np.testing.assert_array_equal(actual.values, expected.values, strict=True, err_msg=what)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="edge of the n^3 field (256)")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds (7)")
    parser.add_argument("--chunk", type=int, default=64, help="dask chunk edge (64)")
    parser.add_argument("--dims", default="z,y,x", help="dims to differentiate along (z,y,x)")
    args = parser.parse_args(argv)

    import dask

    da = make_field(args.n)
    lazy = da.chunk(args.chunk)
    dims = args.dims.split(",")
    print(
        f"cugrad {cugrad.__version__}, xarray {xr.__version__}, numpy {np.__version__}, "
        f"dask {dask.__version__}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs visible; field {args.n}^3 float32 "
        f"({da.nbytes / 2**20:.0f} MiB), dask chunks {args.chunk}^3, {args.repeat} rounds"
    )
    bare_ms: dict[str, float] = {}
    for dim in dims:
        expected = da.differentiate(dim)
        check(da.cugrad.differentiate(dim), expected, f"in-memory {dim}")
        check(lazy.cugrad.differentiate(dim).compute(), expected, f"dask {dim}")
        axis, coord = da.get_axis_num(dim), da[dim].values

        report(
            f"d/d{dim}, in memory",
            interleaved(
                {
                    "xarray differentiate": lambda dim=dim: da.differentiate(dim),
                    "cugrad accessor": lambda dim=dim: da.cugrad.differentiate(dim),
                },
                args.repeat,
            ),
            "xarray differentiate",
        )
        report(
            f"d/d{dim}, dask (graph + compute)",
            interleaved(
                {
                    "xarray differentiate": lambda dim=dim: lazy.differentiate(dim).compute(),
                    "cugrad accessor": lambda dim=dim: lazy.cugrad.differentiate(dim).compute(),
                },
                args.repeat,
            ),
            "xarray differentiate",
        )
        values = da.values
        overhead = interleaved(
            {
                "cugrad.gradient(bare array)": lambda a=axis, c=coord, v=values: cugrad.gradient(
                    v, c, axis=a
                ),
                "cugrad accessor": lambda dim=dim: da.cugrad.differentiate(dim),
            },
            args.repeat,
        )
        report(
            f"d/d{dim}, accessor overhead over cugrad.gradient on the bare array",
            overhead,
            "cugrad.gradient(bare array)",
        )
        bare_ms[dim] = statistics.median(overhead["cugrad.gradient(bare array)"]) * 1e3
    fixed_cost(make_field(8), bare_ms)
    return 0


def fixed_cost(small: xr.DataArray, bare_ms: dict[str, float], calls: int = 2000) -> None:
    """The accessor's cost per call beyond the gradient itself, as a share of the full-size work.

    On a tiny field the computation is negligible, so accessor minus bare call is the fixed cost
    (coordinate lookup, result assembly); the minimum of several batches resists other load.
    """
    print(f"\nfixed cost per call (8^3 field, min over 5 batches of {calls} calls)")
    for dim in bare_ms:
        axis, coord, values = small.get_axis_num(dim), small[dim].values, small.values
        batches = interleaved(
            {
                "bare": lambda a=axis, c=coord, v=values: [
                    cugrad.gradient(v, c, axis=a) for _ in range(calls)
                ],
                "accessor": lambda d=dim: [small.cugrad.differentiate(d) for _ in range(calls)],
            },
            5,
        )
        extra_ms = (min(batches["accessor"]) - min(batches["bare"])) / calls * 1e3
        print(
            f"  d/d{dim}: {extra_ms * 1e3:6.1f} us per call = "
            f"{extra_ms / bare_ms[dim] * 100:.2f}% of cugrad.gradient on the full field "
            f"({bare_ms[dim]:.1f} ms, median)"
        )


if __name__ == "__main__":
    sys.exit(main())
