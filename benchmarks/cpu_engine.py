"""The compiled CPU engine (numba) against numpy.gradient, the NumPy backend, the copy floor.

    python benchmarks/cpu_engine.py               # measure and print
    python benchmarks/cpu_engine.py --repeat 15   # more samples per case

Side by side in one process, the implementations interleaved call by call (the order rotates every
round), each case repeated; min and median are printed. Every result is first compared with
numpy.gradient (bit for bit) or, for the accuracy orders numpy lacks, with the NumPy backend.

The copy floor: reading the input once and writing every output once at the machine's copy
bandwidth, measured here as the best of a one-thread ``np.copyto`` and a copy split over the
engine's threads (numpy copies with one thread).

Targets (issue 14): (a) 256^3 float32, all axes, scalar spacing, ``out=``: at most 1.6x the floor
and at least 8x numpy.gradient; (b) 192^3 float64, three coordinate arrays: at most 2.0x the floor
and faster than ``jax.jit(jnp.gradient)`` when jax is installed; (c) accuracy 4 and 8 at most 1.3x
accuracy 2; (s) small calls with ``out=`` no slower than numpy.gradient + a copy. Also the first
call's cost: in a fresh process with an empty numba cache (cold:
compilation) and with the cache filled (warm: loading it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

try:
    import cugrad
except ImportError:  # running from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import cugrad

from cugrad import _numba_backend, _numpy_backend


def _engine(name: str, fn):
    def call():
        os.environ["CUGRAD_CPU_ENGINE"] = name
        return fn()
    return call


def _time(calls: dict[str, Any], reps: int) -> dict[str, list[float]]:
    names = list(calls)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for call in calls.values():  # warm-up: compilation or cache load, thread start, page faults
        call()
    for rep in range(reps):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            calls[name]()
            samples[name].append(time.perf_counter() - t0)
    return samples


def copy_floor(f: np.ndarray, out_bytes: int, reps: int) -> float:
    """Seconds to read ``f`` once and write ``out_bytes`` at the measured copy bandwidth."""
    dst = np.empty_like(f)
    threads = _numpy_backend.thread_count()
    flat_src, flat_dst = f.reshape(-1), dst.reshape(-1)
    bounds = np.linspace(0, flat_src.size, threads * 8 + 1).astype(int)
    pool = ThreadPoolExecutor(threads)

    def threaded():
        def part(i):
            np.copyto(flat_dst[bounds[i]:bounds[i + 1]], flat_src[bounds[i]:bounds[i + 1]])

        list(pool.map(part, range(len(bounds) - 1)))

    best = min(min(_time({"one": lambda: np.copyto(dst, f), "threads": threaded}, reps).values(),
                   key=min))
    pool.shutdown()
    bandwidth = 2 * f.nbytes / best  # a copy reads and writes f.nbytes
    return (f.nbytes + out_bytes) / bandwidth


def _check(result, expected, what):
    result = result if isinstance(result, (tuple, list)) else [result]
    expected = expected if isinstance(expected, (tuple, list)) else [expected]
    for r, e in zip(result, expected, strict=True):
        if r.dtype != e.dtype or not np.array_equal(r.view(f"u{r.itemsize}"),
                                                    e.view(f"u{e.itemsize}")):
            raise SystemExit(f"{what}: not bit-identical")


def _row(name, samples, t_numpy, floor):
    lo, med = min(samples), statistics.median(samples)
    vs_numpy = f"{t_numpy / lo:6.2f}x" if t_numpy else "      -"
    print(f"  {name:<34} min {lo * 1e3:8.1f} ms  median {med * 1e3:8.1f} ms  "
          f"numpy/this {vs_numpy}  this/floor {lo / floor:5.2f}x")


def case_a(reps: int) -> None:
    rng = np.random.default_rng(1)
    f = rng.random((256,) * 3, dtype=np.float32)
    outs = tuple(np.empty_like(f) for _ in range(3))
    expected = np.gradient(f, 0.1)
    calls = {
        "numpy.gradient": lambda: np.gradient(f, 0.1),
        "cugrad NumPy backend, out=": _engine("numpy", lambda: cugrad.gradient(f, 0.1, out=outs)),
        "cugrad numba engine, out=": _engine("numba", lambda: cugrad.gradient(f, 0.1, out=outs)),
        "cugrad numba engine (allocating)": _engine("numba", lambda: cugrad.gradient(f, 0.1)),
    }
    for name, call in calls.items():
        _check(call(), expected, name)
    floor = copy_floor(f, 3 * f.nbytes, reps)
    samples = _time(calls, reps)
    t_np = min(samples["numpy.gradient"])
    print(f"(a) 256^3 float32, all axes, scalar spacing; copy floor {floor * 1e3:.1f} ms "
          "(target: numba engine with out= <= 1.6x floor, >= 8x numpy)")
    for name, s in samples.items():
        _row(name, s, t_np, floor)


def case_b(reps: int) -> None:
    rng = np.random.default_rng(2)
    f = rng.random((192,) * 3)
    xs = tuple(np.sort(rng.uniform(0.0, 192.0, 192)) for _ in range(3))
    outs = tuple(np.empty_like(f) for _ in range(3))
    expected = np.gradient(f, *xs)
    calls = {
        "numpy.gradient": lambda: np.gradient(f, *xs),
        "cugrad NumPy backend, out=": _engine("numpy", lambda: cugrad.gradient(f, *xs, out=outs)),
        "cugrad numba engine, out=": _engine("numba", lambda: cugrad.gradient(f, *xs, out=outs)),
        "cugrad numba engine (allocating)": _engine("numba", lambda: cugrad.gradient(f, *xs)),
    }
    for name, call in calls.items():
        _check(call(), expected, name)
    try:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        jf, jxs = jnp.asarray(f), tuple(jnp.asarray(x) for x in xs)
        jitted = jax.jit(jnp.gradient)
        calls["jax.jit(jnp.gradient) (not exact)"] = lambda: [
            a.block_until_ready() for a in jitted(jf, *jxs)]
        jax_note = ""
    except ImportError:
        jax_note = "; jax is not installed, so jax.jit(jnp.gradient) is not measured"
    floor = copy_floor(f, 3 * f.nbytes, reps)
    samples = _time(calls, reps)
    t_np = min(samples["numpy.gradient"])
    print(f"(b) 192^3 float64, three coordinate arrays; copy floor {floor * 1e3:.1f} ms "
          f"(target: numba engine with out= <= 2.0x floor, faster than jax){jax_note}")
    for name, s in samples.items():
        _row(name, s, t_np, floor)


def case_c(reps: int) -> None:
    rng = np.random.default_rng(3)
    f = rng.random((256,) * 3, dtype=np.float32)
    outs = tuple(np.empty_like(f) for _ in range(3))
    calls = {}
    for acc in (2, 4, 8):
        for engine in ("numba", "numpy"):
            calls[f"accuracy {acc}, {engine}"] = _engine(
                engine, lambda a=acc: cugrad.gradient(f, 0.1, out=outs, accuracy=a))
    for acc in (4, 8):
        os.environ["CUGRAD_CPU_ENGINE"] = "numpy"
        expected = [o.copy() for o in cugrad.gradient(f, 0.1, out=outs, accuracy=acc)]
        _check(calls[f"accuracy {acc}, numba"](), expected, f"accuracy {acc}")
    floor = copy_floor(f, 3 * f.nbytes, reps)
    samples = _time(calls, reps)
    print(f"(c) 256^3 float32, all axes, out=, accuracy 4 and 8 vs 2; copy floor {floor * 1e3:.1f} "
          "ms (target: at most 1.3x accuracy 2)")
    for engine in ("numba", "numpy"):
        base = min(samples[f"accuracy 2, {engine}"])
        for acc in (2, 4, 8):
            s = samples[f"accuracy {acc}, {engine}"]
            print(f"  {engine:<6} accuracy {acc}: min {min(s) * 1e3:8.1f} ms  median "
                  f"{statistics.median(s) * 1e3:8.1f} ms  vs accuracy 2 {min(s) / base:5.2f}x  "
                  f"this/floor {min(s) / floor:5.2f}x")


_FIRST_CALL = """
import time, numpy as np
t0 = time.perf_counter()
import cugrad
f = np.random.default_rng(0).random((64, 64, 64), dtype=np.float{bits})
cugrad.gradient(f, 0.1)
print(time.perf_counter() - t0)
"""


SMALL_BATCH = 200  # calls per sample: one small call is too short to time alone


def case_s(reps: int) -> None:
    """Small calls with out=: against numpy.gradient and numpy.gradient + a copy into out."""
    print("(s) small calls, float64, spacing 0.5, out= (target: no slower than numpy + a copy)")
    rng = np.random.default_rng(4)
    for shape in ((100,), (32, 32), (64, 64), (16, 16, 16)):
        f = rng.random(shape)
        outs = tuple(np.empty_like(f) for _ in shape)
        out = outs if len(shape) > 1 else outs[0]

        def numpy_and_copy(f=f, outs=outs):
            g = np.gradient(f, 0.5)
            for o, r in zip(outs, g if isinstance(g, tuple) else (g,), strict=True):
                np.copyto(o, r)

        calls = {name: (lambda fn=fn: [fn() for _ in range(SMALL_BATCH)]) for name, fn in {
            "numpy.gradient": lambda f=f: np.gradient(f, 0.5),
            "numpy.gradient + copy": numpy_and_copy,
            "cugrad.gradient(out=)": lambda f=f, out=out: cugrad.gradient(f, 0.5, out=out),
        }.items()}
        samples = _time(calls, reps)
        us = 1e6 / SMALL_BATCH
        row = "  ".join(f"{name} {min(t) * us:6.1f}/{statistics.median(t) * us:.1f}"
                        for name, t in samples.items())
        ratio = min(samples["cugrad.gradient(out=)"]) / min(samples["numpy.gradient + copy"])
        print(f"  {str(shape):<13} us min/median: {row}  cugrad/(numpy + copy) {ratio:.2f}x")


def first_calls() -> None:
    print("first call in a fresh process (import cugrad + one 64^3 call, numba engine):")
    env = dict(os.environ, CUGRAD_CPU_ENGINE="numba")
    with tempfile.TemporaryDirectory() as cache:
        env["NUMBA_CACHE_DIR"] = cache
        for bits in (32, 64):
            for label in ("cold (empty numba cache: compiles)", "warm (numba cache filled)"):
                out = subprocess.run([sys.executable, "-c", _FIRST_CALL.format(bits=bits)],
                                     env=env, capture_output=True, text=True, check=True)
                print(f"  float{bits} {label:<38} {float(out.stdout) * 1e3:9.0f} ms")
    env["CUGRAD_CPU_ENGINE"] = "numpy"
    out = subprocess.run([sys.executable, "-c", _FIRST_CALL.format(bits=32)], env=env,
                         capture_output=True, text=True, check=True)
    print(f"  NumPy backend for comparison                 {float(out.stdout) * 1e3:9.0f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9, help="samples per implementation")
    parser.add_argument("--cases", default="abcsf",
                        help="a, b, c (accuracy), s (small calls), f (first calls)")
    args = parser.parse_args(argv)
    if not _numba_backend.available():
        print('numba is not installed: pip install numba (or ".[cpu]" in a cugrad checkout)')
        return 1
    print(f"numpy {np.__version__}, cugrad {cugrad.__version__}, threads "
          f"{_numpy_backend.thread_count()}, load average {os.getloadavg()[0]:.2f} "
          f"(other processes may share these CPUs)")
    for key, run in (("a", case_a), ("b", case_b), ("c", case_c), ("s", case_s)):
        if key in args.cases:
            run(max(1, args.repeat))
    if "f" in args.cases:
        first_calls()
    return 0


if __name__ == "__main__":
    sys.exit(main())
