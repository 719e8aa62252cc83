"""Sweep the fast kernel's compile-time knobs on a GPU and print GB/s per configuration.

    python benchmarks/gpu_tune.py      # 512^3 float32 and float64: all axes, axis 0, axis -1
    python benchmarks/gpu_tune.py --json tune.json --budget-s 170

The knobs are ``cugrad._kernels.FastTuning(rows_per_thread, min_blocks_per_sm, block)``: each is a
``#define`` in front of the fast path's source and part of the kernel's name and of CuPy's cache
key, so every configuration is its own compiled kernel. Each configuration is checked bit for bit
against the default one (which is checked against numpy.gradient once per case) before it is timed
with CUDA events on the current stream; GB/s counts the input read once and every output written
once, and is also given as a fraction of a device-to-device copy measured in the same run.

Then, with the default knobs, accuracy 2, 4 and 8 with one-sided and periodic ends (issue #11's
target: accuracy 4 and 8 at least 85% of accuracy 2's GB/s), each checked against the NumPy
backend first.

Then each derived operator (gradient magnitude, divergence, curl, Laplacian; one fused launch each,
issue 12's target: 85% of the copy bandwidth for the bytes it must move, (k + 1) x n x itemsize for
k inputs and one output), checked bit for bit against the NumPy backend first.

Planned to finish within 3 minutes on an H200 (about 60 kernels to compile, 6 cases x 27
configurations to time); ``--budget-s`` stops timing new configurations when it runs out. Without a
usable GPU it says so and exits 0: there is nothing to measure.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import sys
import time
from typing import Any

import numpy as np

SIDE = 512
DTYPES = ("float32", "float64")
AXES = {"all": None, "axis0": 0, "axis-1": -1}
ROWS = (1, 2, 4)
MIN_BLOCKS = (1, 2, 4)
BLOCKS = (128, 256, 512)


def configurations(fast_tuning: Any) -> list[Any]:
    """Every valid combination of the knobs (FastTuning refuses impossible ones)."""
    configs = []
    for rows, min_blocks, block in itertools.product(ROWS, MIN_BLOCKS, BLOCKS):
        try:
            configs.append(fast_tuning(rows_per_thread=rows, min_blocks_per_sm=min_blocks,
                                       block=block))
        except ValueError:
            continue
    return configs


def _time(cp: Any, call: Any, reps: int) -> float:
    stream = cp.cuda.get_current_stream()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(reps):
        start.record(stream)
        call()
        stop.record(stream)
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)
    return statistics.median(times)


def copy_gbps(cp: Any, nbytes: int, reps: int) -> float:
    src = cp.ones(nbytes // 4, cp.float32)
    dst = cp.empty_like(src)
    cp.copyto(dst, src)
    t = _time(cp, lambda: cp.copyto(dst, src), reps)
    return 2 * nbytes / t / 1e9


def accuracy_costs(cp: Any, side: int, reps: int, copy: float) -> tuple[list[dict], int]:
    """GB/s of accuracy 2, 4 and 8 (one-sided and periodic ends) with the default knobs.

    Issue #11's target: accuracy 4 and 8 reach at least 85% of accuracy 2's GB/s. Each option is
    first checked bit for bit against the NumPy backend (its defined operation order) on 64^3.
    """
    import cugrad

    rows, mismatches = [], 0
    print("\naccuracy orders, default knobs, all axes (GB/s, and relative to accuracy 2):")
    for dtype in DTYPES:
        small = np.random.default_rng(1).standard_normal((64,) * 3).astype(dtype)
        big = cp.asarray(np.random.default_rng(2).standard_normal((side,) * 3).astype(dtype))
        outs = tuple(cp.empty_like(big) for _ in range(3))
        nbytes = big.nbytes * 4
        base = None
        for acc in (2, 4, 8):
            for boundary in ("edge", "periodic"):
                options = {"accuracy": acc, "boundary": boundary}
                want = cugrad.gradient(small, 0.5, backend="numpy", **options)
                got = cugrad.gradient(cp.asarray(small), 0.5, **options)
                exact = all(np.array_equal(cp.asnumpy(g), w) for g, w in zip(got, want,
                                                                             strict=True))
                mismatches += not exact
                t = _time(cp, lambda o=options, f=big, out=outs: cugrad.gradient(f, 0.5, out=out,
                                                                                  **o), reps)
                gbps = nbytes / t / 1e9
                base = gbps if (acc, boundary) == (2, "edge") else base
                row = {"dtype": dtype, "accuracy": acc, "boundary": boundary, "exact": exact,
                       "median_s": t, "gbps": gbps, "copy_fraction": gbps / copy,
                       "of_accuracy_2": gbps / base}
                rows.append(row)
                print(f"  {dtype:<8} acc {acc} {boundary:<8} {gbps:8.1f} GB/s "
                      f"{row['of_accuracy_2']:5.2f}{'' if exact else '  MISMATCH'}")
        del big, outs
        cp.get_default_memory_pool().free_all_blocks()
    return rows, mismatches


OPERATOR_TARGET = 0.85  # issue 12: each fused operator at 85% of the copy bandwidth


def operator_bytes(op: str, n: int, itemsize: int) -> int:
    """Bytes a fused operator must move: each of its k inputs read once and each output written
    once, (k + 1) x n x itemsize for the one-output operators (3-D curl: (3 + 3) x n x itemsize)."""
    from cugrad._selftest import OPERATOR_BENCH  # one table of what each operator moves

    sources, outputs = OPERATOR_BENCH[op]
    return (sources + outputs) * n * itemsize


def operator_costs(cp: Any, side: int, reps: int, copy: float) -> tuple[list[dict], int]:
    """GB/s of each derived operator (one fused launch each) against the device copy.

    Each is first checked bit for bit against the NumPy backend on 64^3 (the issue's
    definition), then timed on ``side``^3 with its result preallocated (out=).
    """
    import cugrad

    calls = {
        "gradient_magnitude": lambda F, **k: cugrad.gradient_magnitude(F[0], 0.5, **k),
        "divergence": lambda F, **k: cugrad.divergence(F, 0.5, **k),
        "curl": lambda F, **k: cugrad.curl(F, 0.5, stack=True, **k),
        "laplacian": lambda F, **k: cugrad.laplacian(F[0], 0.5, **k),
    }
    rows, mismatches = [], 0
    print(f"\nderived operators, one fused launch each, 3-D (GB/s of inputs read + outputs "
          f"written; target {OPERATOR_TARGET:.0%} of copy):")
    for dtype in DTYPES:
        rng = np.random.default_rng(3)
        small = [rng.standard_normal((64,) * 3).astype(dtype) for _ in range(3)]
        big = [cp.asarray(np.random.default_rng(4 + i).standard_normal((side,) * 3)
                          .astype(dtype)) for i in range(3)]
        for op, call in calls.items():
            want = call(small, backend="numpy")
            got = cp.asnumpy(call([cp.asarray(s) for s in small]))
            exact = bool(np.array_equal(got, want))
            mismatches += not exact
            out = cp.empty(((3,) if op == "curl" else ()) + big[0].shape, dtype)
            t = _time(cp, lambda c=call, f=big, o=out: c(f, out=o), reps)
            nbytes = operator_bytes(op, big[0].size, big[0].itemsize)
            gbps = nbytes / t / 1e9
            row = {"operator": op, "dtype": dtype, "side": side, "exact": exact, "median_s": t,
                   "bytes": nbytes, "gbps": gbps, "copy_fraction": gbps / copy,
                   "meets_target": gbps / copy >= OPERATOR_TARGET}
            rows.append(row)
            print(f"  {dtype:<8} {op:<19} {t * 1e3:8.3f} ms {gbps:8.1f} GB/s "
                  f"{row['copy_fraction']:5.2f} of copy"
                  f"{'' if row['meets_target'] else '  below target'}"
                  f"{'' if exact else '  MISMATCH'}")
            del out
        del big
        cp.get_default_memory_pool().free_all_blocks()
    return rows, mismatches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=SIDE, help="edge of the cube (default 512)")
    parser.add_argument("--reps", type=int, default=10, help="timed launches per configuration")
    parser.add_argument("--budget-s", type=float, default=170.0,
                        help="stop timing new configurations after this many seconds")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    from cugrad import _backend

    usable, reason = _backend.gpu_status()
    if not usable:
        print(f"gpu_tune needs a usable GPU, and there is none: {reason}. Nothing measured.")
        return 0
    try:
        from cugrad._kernels import DEFAULT_TUNING, FastTuning
    except ImportError:
        print("gpu_tune: this cugrad has no FastTuning knobs (cugrad._kernels.FastTuning)")
        return 1
    import cupy as cp

    from cugrad import _cupy_backend
    from cugrad._info import device_description
    from cugrad._plan import make_plan

    started = time.perf_counter()
    device = device_description(cp.cuda.Device().id)
    configs = configurations(FastTuning)
    print(f"device: {device}")
    print(f"{len(configs)} configurations of (rows per thread, min blocks per SM, block); "
          f"default {DEFAULT_TUNING}")
    copy = copy_gbps(cp, args.side**3 * 4, 20)
    print(f"device copy: {copy:.1f} GB/s")

    results: list[dict[str, Any]] = []
    mismatches = 0
    out_of_time = False
    for dtype, (axes_name, axis) in itertools.product(DTYPES, AXES.items()):
        shape = (args.side,) * 3
        host = np.random.default_rng(0).standard_normal(shape).astype(dtype)
        f = cp.asarray(host)
        plan = make_plan(f, (0.5,), axis, 1)
        outs = [cp.empty(shape, plan.out_dtype) for _ in plan.axes]
        nbytes = f.nbytes * (1 + len(outs))
        _cupy_backend.execute(plan, f, outs, tuning=DEFAULT_TUNING)
        expected = np.gradient(host, 0.5, axis=axis)
        expected = list(expected) if isinstance(expected, tuple) else [expected]
        reference = [o.copy() for o in outs]
        exact = all(np.array_equal(cp.asnumpy(o), e) for o, e in zip(outs, expected, strict=True))
        if not exact:
            print(f"MISMATCH: default tuning differs from numpy.gradient on {dtype} {axes_name}")
            mismatches += 1
        del expected
        case = f"{args.side}^3-{dtype}-{axes_name}"
        print(f"\n{case}  ({nbytes / 2**30:.2f} GiB moved per call)")
        print(f"  {'rows':>4} {'minB':>4} {'block':>5} {'ms':>9} {'GB/s':>8} {'of copy':>7}")
        for tuning in configs:
            if time.perf_counter() - started > args.budget_s:
                out_of_time = True
                break
            row: dict[str, Any] = {"case": case, "dtype": dtype, "axes": axes_name,
                                   "rows_per_thread": tuning.rows_per_thread,
                                   "min_blocks_per_sm": tuning.min_blocks_per_sm,
                                   "block": tuning.block}
            try:
                for o in outs:
                    o.fill(cp.nan)
                _cupy_backend.execute(plan, f, outs, tuning=tuning)  # compiles, then checks
                same = all(bool(cp.array_equal(o, r, equal_nan=True))
                           for o, r in zip(outs, reference, strict=True))
                if not same:
                    mismatches += 1
                    row["error"] = "differs from the default tuning"
                else:
                    t = _time(cp, lambda t=tuning, p=plan, f=f, o=outs: _cupy_backend.execute(
                        p, f, o, tuning=t), args.reps)
                    row.update(median_s=t, gbps=nbytes / t / 1e9, copy_fraction=nbytes / t / 1e9
                               / copy)
            except Exception as exc:  # noqa: BLE001 - one failing configuration ends nothing
                row["error"] = f"{type(exc).__name__}: {exc}"
            results.append(row)
            knobs = f"  {tuning.rows_per_thread:>4} {tuning.min_blocks_per_sm:>4} {tuning.block:>5}"
            if "error" in row:
                print(f"{knobs}  {row['error']}")
            else:
                print(f"{knobs} {row['median_s'] * 1e3:9.3f} {row['gbps']:8.1f} "
                      f"{row['copy_fraction']:7.2f}")
        del f, outs, reference
        cp.get_default_memory_pool().free_all_blocks()
        if out_of_time:
            print(f"\nbudget of {args.budget_s:.0f} s spent: the remaining configurations were "
                  "not timed")
            break

    timed = [r for r in results if "gbps" in r]
    best_overall = None
    if timed:
        print("\nbest per case:")
        for case in dict.fromkeys(r["case"] for r in timed):
            best = max((r for r in timed if r["case"] == case), key=lambda r: r["gbps"])
            print(f"  {case:<22} r{best['rows_per_thread']} m{best['min_blocks_per_sm']} "
                  f"b{best['block']}: {best['gbps']:.1f} GB/s ({best['copy_fraction']:.2f} of copy)")
        cases = set(r["case"] for r in timed)
        scores = {}
        for key, rows in itertools.groupby(
                sorted(timed, key=lambda r: (r["rows_per_thread"], r["min_blocks_per_sm"],
                                             r["block"])),
                key=lambda r: (r["rows_per_thread"], r["min_blocks_per_sm"], r["block"])):
            rows = list(rows)
            if {r["case"] for r in rows} == cases:  # timed on every case
                scores[key] = statistics.geometric_mean([r["gbps"] for r in rows])
        if scores:
            best_overall = max(scores, key=scores.get)
            print(f"best over every case (geometric mean of GB/s): rows_per_thread="
                  f"{best_overall[0]}, min_blocks_per_sm={best_overall[1]}, "
                  f"block={best_overall[2]} ({scores[best_overall]:.1f} GB/s)")
    accuracy_rows, accuracy_mismatches = accuracy_costs(cp, args.side, args.reps, copy)
    mismatches += accuracy_mismatches
    operator_rows, operator_mismatches = operator_costs(cp, args.side, args.reps, copy)
    mismatches += operator_mismatches
    elapsed = time.perf_counter() - started
    print(f"\n{len(timed)} timings, {mismatches} mismatches, {elapsed:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"device": device, "copy_gbps": copy, "side": args.side,
                       "default": dataclasses.asdict(DEFAULT_TUNING),
                       "best_overall": best_overall, "seconds": elapsed, "results": results,
                       "accuracy": accuracy_rows, "operators": operator_rows},
                      fh, indent=2)
        print(f"written to {args.json}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
