"""Streamed offload of host arrays through a GPU, against the PCIe bandwidth and numpy.gradient.

    python benchmarks/offload.py                       # 1 GiB float32, all axes
    python benchmarks/offload.py --mib 4096 --dtype float64 --budget-mib 512

Measured side by side in one process:

* pinned host->device and device->host bandwidth (``cudaMemcpyAsync`` of one large pinned buffer,
  timed with CUDA events), and both directions at once on two streams;
* ``cugrad.gradient(f, backend="cupy")`` on a host array: the input crosses the bus once and each
  output once, so the fastest possible time is ``max(in_bytes / h2d, out_bytes / d2h)`` when the two
  directions overlap perfectly (and the staging copies are hidden); the script prints the offload
  time as a fraction of that bound;
* numpy.gradient and cugrad's NumPy backend on the same array (wall clock, median).

Every result is first compared with numpy.gradient; a result that is not bit-identical is reported
and not timed. Runs only where CuPy sees a GPU; elsewhere it prints why and exits 0.
"""

from __future__ import annotations

import argparse
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

from cugrad import _backend, _offload
from cugrad._plan import make_plan


def pinned_bandwidth(nbytes: int, repeat: int) -> dict[str, float]:
    """GB/s of pinned host<->device copies, one direction at a time and both at once."""
    import cupy
    import cupyx

    host_a = cupyx.empty_pinned(nbytes, np.uint8)
    host_b = cupyx.empty_pinned(nbytes, np.uint8)
    host_a[:] = 1
    dev_a = cupy.empty(nbytes, np.uint8)
    dev_b = cupy.empty(nbytes, np.uint8)
    runtime = cupy.cuda.runtime
    s1, s2 = cupy.cuda.Stream(non_blocking=True), cupy.cuda.Stream(non_blocking=True)

    def timed(copies) -> float:
        times = []
        for i in range(repeat + 1):
            cupy.cuda.Device().synchronize()
            start = time.perf_counter()
            for dst, src, kind, stream in copies:
                runtime.memcpyAsync(dst, src, nbytes, kind, stream.ptr)
            for *_, stream in copies:
                stream.synchronize()
            if i:  # the first round is a warm-up
                times.append(time.perf_counter() - start)
        return statistics.median(times)

    h2d = (dev_a.data.ptr, host_a.ctypes.data, runtime.memcpyHostToDevice, s1)
    d2h = (host_b.ctypes.data, dev_b.data.ptr, runtime.memcpyDeviceToHost, s2)
    return {
        "h2d": nbytes / timed([h2d]) / 1e9,
        "d2h": nbytes / timed([d2h]) / 1e9,
        "both": 2 * nbytes / timed([h2d, d2h]) / 1e9,
    }


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up: CUDA context, kernel compilation, pinned pool
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def same(result, expected) -> bool:
    pairs = zip(result, expected, strict=True) if isinstance(expected, tuple) else [(result,
                                                                                     expected)]
    return all(r.dtype == e.dtype and np.array_equal(r, e, equal_nan=True) for r, e in pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="input size in MiB (default 1024)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--axis", default="all", help='"all" or one axis index (default all)')
    parser.add_argument("--budget-mib", type=int, default=None,
                        help="device budget for the offload (default: its own default)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    usable, reason = _backend.gpu_status()
    if not usable:
        print(f"SKIP: the offload benchmark needs a GPU: {reason}")
        return 0
    import cupy

    dtype = np.dtype(args.dtype)
    inner = (512, 256)
    rows = max(3, (args.mib << 20) // (dtype.itemsize * inner[0] * inner[1]))
    shape = (rows, *inner)
    axis = None if args.axis == "all" else int(args.axis)
    n_axes = 3 if axis is None else 1
    rng = np.random.default_rng(0)
    f = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
    in_bytes = f.nbytes
    out_bytes = in_bytes * n_axes
    budget = None if args.budget_mib is None else args.budget_mib << 20

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    print(f"device: {props['name'].decode()}; input {shape} {dtype} = {in_bytes / 2**20:.0f} MiB, "
          f"{n_axes} output(s) = {out_bytes / 2**20:.0f} MiB")

    bw = pinned_bandwidth(min(in_bytes, 1 << 30), args.repeat)
    print(f"pinned copies: h2d {bw['h2d']:.1f} GB/s, d2h {bw['d2h']:.1f} GB/s, "
          f"both directions at once {bw['both']:.1f} GB/s")

    expected = np.gradient(f, axis=axis)

    def offload():
        plan = make_plan(f, (), axis, 1)
        outs = [np.empty_like(f) for _ in plan.axes]
        _offload.offload_gradient(plan, f, outs, budget=budget)
        return outs[0] if len(outs) == 1 else tuple(outs)

    if not same(offload(), expected):
        print("FAIL: the offload result is not bit-identical to numpy.gradient; not timed")
        return 1
    if not same(cugrad.gradient(f, axis=axis, backend="numpy"), expected):
        print("FAIL: the NumPy backend result is not bit-identical to numpy.gradient; not timed")
        return 1

    t_offload = median_time(offload, args.repeat)
    t_numpy = median_time(lambda: np.gradient(f, axis=axis), args.repeat)
    t_cpu = median_time(lambda: cugrad.gradient(f, axis=axis, backend="numpy"), args.repeat)
    bound = max(in_bytes / (bw["h2d"] * 1e9), out_bytes / (bw["d2h"] * 1e9))
    serial = in_bytes / (bw["h2d"] * 1e9) + out_bytes / (bw["d2h"] * 1e9)

    print(f"offload (backend='cupy'): {t_offload * 1e3:9.1f} ms  "
          f"{(in_bytes + out_bytes) / t_offload / 1e9:6.1f} GB/s over the bus")
    print(f"  bus bound, directions overlapped: {bound * 1e3:9.1f} ms -> offload reaches "
          f"{bound / t_offload:.0%} of it")
    print(f"  bus bound, directions in series:  {serial * 1e3:9.1f} ms -> ratio "
          f"{serial / t_offload:.2f}")
    print(f"numpy.gradient:            {t_numpy * 1e3:9.1f} ms -> offload speed-up "
          f"{t_numpy / t_offload:.2f}x")
    print(f"cugrad NumPy backend:      {t_cpu * 1e3:9.1f} ms -> offload speed-up "
          f"{t_cpu / t_offload:.2f}x")
    threshold = _backend.offload_threshold_bytes()
    print("auto threshold (CUGRAD_OFFLOAD_MIN_BYTES): "
          + ("unset: backend='auto' keeps host arrays on the CPU" if threshold is None
             else f"{threshold} bytes"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
