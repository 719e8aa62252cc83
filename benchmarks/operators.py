"""Derived operators against their numpy compositions on the CPU (issue #12).

    python benchmarks/operators.py            # measure and print
    python benchmarks/operators.py --check    # ... and exit 1 if a target is missed
    python benchmarks/operators.py --save     # ... and write results/operators-<date>.json and .txt

For a 256^3 float32 field (three of them for divergence and curl), one process times each cugrad
operator (writing into a preallocated result) and the numpy composition the docs define (over
numpy.gradient), interleaved round by round with the order alternating, and prints the minimum and
median of each and the speed-up. Before timing, each result is compared with the composition bit
for bit. Peak traced memory beyond the inputs and the result is measured once per implementation.

Targets (issue #12): each operator at least 2x faster than its composition, with at most one
result's worth of extra memory.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

try:
    import cugrad
except ImportError:  # running from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import cugrad

N = 256
H = 0.1


def cases(f, F):
    def mag_np():
        g = np.gradient(f, H)
        return np.sqrt((g[0] * g[0] + g[1] * g[1]) + g[2] * g[2])

    def div_np():
        return (np.gradient(F[0], H, axis=0) + np.gradient(F[1], H, axis=1)) + np.gradient(
            F[2], H, axis=2)

    def curl_np():
        def d(i, ax):
            return np.gradient(F[i], H, axis=ax)
        return (d(2, 1) - d(1, 2), d(0, 2) - d(2, 0), d(1, 0) - d(0, 1))

    out1 = np.empty_like(f)
    out3 = tuple(np.empty_like(f) for _ in range(3))
    return {
        "gradient_magnitude": (lambda: cugrad.gradient_magnitude(f, H, out=out1), mag_np),
        "divergence": (lambda: cugrad.divergence(F, H, out=out1), div_np),
        "curl (3 outputs)": (lambda: cugrad.curl(F, H, out=out3), curl_np),
    }


def peak_extra(call) -> int:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    result = call()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del result
    return peak


def measure(repeat: int) -> dict:
    rng = np.random.default_rng(12)
    f = rng.random((N, N, N), dtype=np.float32)
    F = [rng.random((N, N, N), dtype=np.float32) for _ in range(3)]
    rows = []
    for name, (ours, theirs) in cases(f, F).items():
        a, b = ours(), theirs()
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,),
                        strict=True):
            assert np.array_equal(x.view(np.uint32), y.view(np.uint32)), name
        del a, b
        samples = {"cugrad": [], "numpy": []}
        for rnd in range(repeat):
            order = [("cugrad", ours), ("numpy", theirs)]
            for impl, call in order if rnd % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                call()
                samples[impl].append(time.perf_counter() - t0)
        outputs = 3 if name.startswith("curl") else 1
        # cugrad writes into preallocated results; numpy's returned results are not "extra"
        mem_ours = peak_extra(ours)
        mem_numpy = peak_extra(theirs) - outputs * f.nbytes
        rows.append({
            "name": name,
            "cugrad_min_s": min(samples["cugrad"]),
            "cugrad_median_s": statistics.median(samples["cugrad"]),
            "numpy_min_s": min(samples["numpy"]),
            "numpy_median_s": statistics.median(samples["numpy"]),
            "speedup_min": min(samples["numpy"]) / min(samples["cugrad"]),
            "speedup_median": statistics.median(samples["numpy"]) / statistics.median(
                samples["cugrad"]),
            "cugrad_extra_bytes": mem_ours,
            "numpy_extra_bytes": mem_numpy,
            "one_result_bytes": f.nbytes,
        })
    from cugrad import _numba_backend

    engine = _numba_backend.info()
    return {
        "date": datetime.date.today().isoformat(),
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_engine": engine["engine"],
        "numba": engine["numba"],
        "shape": [N, N, N],
        "dtype": "float32",
        "repeat": repeat,
        "rows": rows,
        "targets_met": all(r["speedup_min"] >= 2.0 and r["cugrad_extra_bytes"] <= r[
            "one_result_bytes"] for r in rows),
    }


def report(doc: dict) -> str:
    lines = [
        f"derived operators, {N}^3 float32, scalar spacing ({doc['cpus']} CPUs, {doc['repeat']} "
        "interleaved rounds; cugrad writes into preallocated results)",
        f"cugrad CPU engine: CUGRAD_CPU_ENGINE={doc['cpu_engine']}, numba "
        f"{doc['numba'] or 'not installed'}",
        f"{'operator':<20}{'cugrad min/med ms':>20}{'numpy min/med ms':>20}{'speed-up min/med':>18}"
        f"{'extra MiB cugrad/numpy':>24}",
    ]
    for r in doc["rows"]:
        lines.append(
            f"{r['name']:<20}{r['cugrad_min_s'] * 1e3:10.0f}/{r['cugrad_median_s'] * 1e3:<9.0f}"
            f"{r['numpy_min_s'] * 1e3:10.0f}/{r['numpy_median_s'] * 1e3:<9.0f}"
            f"{r['speedup_min']:9.2f}/{r['speedup_median']:<8.2f}"
            f"{r['cugrad_extra_bytes'] / 2**20:12.1f}/{r['numpy_extra_bytes'] / 2**20:<11.1f}"
        )
    lines.append("targets (>= 2x, <= one result of extra memory): "
                 + ("met" if doc["targets_met"] else "MISSED"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--save", action="store_true",
                        help="write operators-<date>.json and .txt into benchmarks/results")
    args = parser.parse_args(argv)
    doc = measure(max(1, args.repeat))
    text = report(doc)
    print(text)
    if args.save:
        stem = Path(__file__).resolve().parent / "results" / f"operators-{doc['date']}"
        stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        stem.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
        print(f"saved {stem.with_suffix('.json').name} and {stem.with_suffix('.txt').name}")
    return 1 if args.check and not doc["targets_met"] else 0


if __name__ == "__main__":
    sys.exit(main())
