"""What the accuracy orders and periodic boundaries cost on the CPU (issue #11).

    python benchmarks/accuracy.py            # measure and print
    python benchmarks/accuracy.py --check    # ... and exit 1 if a target is missed
    python benchmarks/accuracy.py --save     # ... and write results/accuracy-<date>.json and .txt

One process measures, side by side and interleaved (each round runs every configuration once, the
order alternating between rounds), cugrad.gradient of a 256^3 float32 field along all axes with a
scalar spacing and preallocated outputs (``out=``), at accuracy 2 (numpy.gradient's formulas), 4, 6
and 8, with one-sided and with periodic ends, and numpy.gradient itself. It prints the minimum and
the median of each, and their ratios to accuracy 2 with one-sided ends.

Target (issue #11): accuracy 4 takes at most 2x accuracy 2's time. Memory: the peak of traced
allocations during an accuracy-8 call, beyond the outputs, stays under 5% of one output (no
full-size temporary).

Every configuration is checked before it is timed: accuracy 2 against numpy.gradient bit for bit,
the others against the exact derivative of a polynomial field of their degree.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
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
SPACING = 0.1
TARGET_ACC4 = 2.0
MEMORY_LIMIT = 0.05  # slab-sized work buffers only: no full-size temporary


def configurations() -> list[tuple[str, dict]]:
    configs = []
    for acc in (2, 4, 6, 8):
        configs.append((f"acc{acc}-edge", {"accuracy": acc}))
    for acc in (2, 4, 8):
        configs.append((f"acc{acc}-periodic", {"accuracy": acc, "boundary": "periodic"}))
    return configs


def check(configs: list[tuple[str, dict]]) -> None:
    """Accuracy 2 is numpy.gradient's bits; accuracy p differentiates degree-p polynomials."""
    rng = np.random.default_rng(11)
    f = rng.random((40, 30, 20), dtype=np.float32)
    for ours, theirs in zip(cugrad.gradient(f, SPACING, accuracy=2), np.gradient(f, SPACING),
                            strict=True):
        assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32)), "accuracy 2 != numpy"
    x = np.arange(30) * SPACING
    for name, options in configs:
        if options.get("boundary") == "periodic" or options["accuracy"] == 2:
            continue  # accuracy 2 with one-sided ends is numpy's (checked above)
        acc = options["accuracy"]
        poly = np.polynomial.Polynomial(np.linspace(1, 2, acc + 1))
        g = cugrad.gradient(poly(x), SPACING, **options)
        assert np.allclose(g, poly.deriv()(x), rtol=1e-8, atol=1e-8), name


def measure(repeat: int) -> dict:
    configs = configurations()
    check(configs)
    f = np.random.default_rng(0).random((N, N, N), dtype=np.float32)
    outs = tuple(np.empty_like(f) for _ in range(3))

    def run(options: dict) -> None:
        cugrad.gradient(f, SPACING, out=outs, **options)

    calls = {name: (lambda o=options: run(o)) for name, options in configs}
    calls["numpy.gradient"] = lambda: np.gradient(f, SPACING)
    for call in calls.values():  # warm up: thread pool, page faults of the outputs
        call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for rnd in range(repeat):
        for name in names if rnd % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            calls[name]()
            samples[name].append(time.perf_counter() - t0)

    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    run({"accuracy": 8})
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()

    ref_min = min(samples["acc2-edge"])
    ref_med = statistics.median(samples["acc2-edge"])
    rows = []
    for name in names:
        s = samples[name]
        rows.append({
            "name": name,
            "min_s": min(s),
            "median_s": statistics.median(s),
            "ratio_min_to_acc2": min(s) / ref_min,
            "ratio_median_to_acc2": statistics.median(s) / ref_med,
        })
    acc4 = next(r for r in rows if r["name"] == "acc4-edge")
    return {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": len(__import__("os").sched_getaffinity(0)),
        "cpu_engine": __import__("os").environ.get("CUGRAD_CPU_ENGINE", "auto"),
        "shape": [N, N, N],
        "dtype": "float32",
        "repeat": repeat,
        "rows": rows,
        "memory_extra_bytes_acc8": peak,
        "memory_fraction_of_one_output": peak / f.nbytes,
        "targets": {
            "acc4_at_most_2x_acc2 (min)": acc4["ratio_min_to_acc2"] <= TARGET_ACC4,
            "acc4_at_most_2x_acc2 (median)": acc4["ratio_median_to_acc2"] <= TARGET_ACC4,
            "memory_under_5pct": peak / f.nbytes < MEMORY_LIMIT,
        },
    }


def report(doc: dict) -> str:
    lines = [
        f"cugrad.gradient, {N}^3 float32, all axes, scalar spacing, out= "
        f"({doc['cpus']} CPUs, CUGRAD_CPU_ENGINE={doc['cpu_engine']}, {doc['repeat']} interleaved "
        "rounds)",
        f"{'configuration':<18}{'min ms':>9}{'median ms':>11}{'min/acc2':>10}{'median/acc2':>13}",
    ]
    for r in doc["rows"]:
        lines.append(
            f"{r['name']:<18}{r['min_s'] * 1e3:9.1f}{r['median_s'] * 1e3:11.1f}"
            f"{r['ratio_min_to_acc2']:10.2f}{r['ratio_median_to_acc2']:13.2f}"
        )
    lines.append(
        f"memory beyond the outputs during accuracy 8: {doc['memory_extra_bytes_acc8'] / 2**20:.2f} "
        f"MiB = {doc['memory_fraction_of_one_output']:.4f} of one output"
    )
    for name, ok in doc["targets"].items():
        lines.append(f"target {name}: {'met' if ok else 'MISSED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--save", action="store_true",
                        help="write accuracy-<date>.json and .txt into benchmarks/results")
    args = parser.parse_args(argv)
    doc = measure(max(1, args.repeat))
    text = report(doc)
    print(text)
    if args.save:
        out = Path(__file__).resolve().parent / "results"
        stem = out / f"accuracy-{doc['cpu_engine']}-{doc['date']}"
        stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        stem.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
        print(f"saved {stem.with_suffix('.json').name} and {stem.with_suffix('.txt').name}")
    return 1 if args.check and not all(doc["targets"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
