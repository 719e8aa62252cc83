"""Speed and memory targets of cugrad's NumPy backend against numpy.gradient (issue #4).

    python benchmarks/cpu_backend.py            # measure and print
    python benchmarks/cpu_backend.py --check    # ... and exit 1 if a target is missed
    python benchmarks/cpu_backend.py --save     # ... and write results/cpu-<date>.txt and .json

Targets (ratio = numpy.gradient time / cugrad time, both measured side by side in this process):

(a) 256^3 float32, all axes, one scalar spacing: ratio >= 2.5
(b) 192^3 float64, three non-uniform coordinate arrays, all axes: ratio >= 1.8
(c) small inputs (1-D with 10, 100, 1000 elements; 2-D 32x32): ratio >= 0.9
(m) memory: peak traced bytes during a call on (a) and (b), minus the outputs, at most a quarter of
    one output (so no full-size temporary). NumPy reports its data allocations to tracemalloc.

Every result is first compared with numpy.gradient; a result that is not bit-identical fails its
target whatever its speed. As in timeit, a timed call includes dropping its result (for large
outputs, returning their pages to the system), which numpy.gradient and cugrad pay alike.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:
    import cugrad
except ImportError:  # running from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import cugrad

from cugrad import _bench

MEMORY_LIMIT = 0.25  # of one output's bytes


@dataclass(frozen=True)
class Target:
    """One side-by-side comparison."""

    name: str
    description: str
    make: Callable[[np.random.Generator], tuple[np.ndarray, tuple[Any, ...]]]
    min_ratio: float
    small: bool  # timed as batches of many calls (timeit style) instead of one call per sample
    memory: bool = False


def _cube(n: int, dtype: str, coords: bool) -> Callable[[np.random.Generator], Any]:
    def make(rng: np.random.Generator) -> tuple[np.ndarray, tuple[Any, ...]]:
        f = rng.random((n, n, n), dtype=np.dtype(dtype))
        if not coords:
            return f, (0.1,)
        # sorted random coordinates: non-uniform steps (numpy's uniform shortcut does not apply)
        return f, tuple(np.sort(rng.uniform(0.0, float(n), n)) for _ in range(3))

    return make


def _small(shape: tuple[int, ...]) -> Callable[[np.random.Generator], Any]:
    return lambda rng: (rng.random(shape), ())


TARGETS = (
    Target(
        "a",
        "256^3 float32, all axes, scalar spacing",
        _cube(256, "float32", False),
        2.5,
        small=False,
        memory=True,
    ),
    Target(
        "b",
        "192^3 float64, 3 coordinate arrays, all axes",
        _cube(192, "float64", True),
        1.8,
        small=False,
        memory=True,
    ),
    Target("c1", "1-D float64, 10 elements", _small((10,)), 0.9, small=True),
    Target("c2", "1-D float64, 100 elements", _small((100,)), 0.9, small=True),
    Target("c3", "1-D float64, 1000 elements", _small((1000,)), 0.9, small=True),
    Target("c4", "2-D float64, 32x32 elements", _small((32, 32)), 0.9, small=True),
)


def _as_list(result: Any) -> list[np.ndarray]:
    return list(result) if isinstance(result, (list, tuple)) else [result]


def _time_large(calls: dict[str, Callable[[], Any]], reps: int) -> dict[str, list[float]]:
    """Seconds per call, alternating the implementations (ABBA) so drift hits both alike."""
    names = list(calls)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            calls[name]()
            samples[name].append(time.perf_counter() - t0)
    return samples


def _time_small(calls: dict[str, Callable[[], Any]], reps: int) -> dict[str, list[float]]:
    """Seconds per call from batches of many calls (about 0.1 s each), alternating batches."""
    first = next(iter(calls.values()))
    number, elapsed = 1, 0.0
    while elapsed < 0.1:
        number *= 2
        t0 = time.perf_counter()
        for _ in range(number):
            first()
        elapsed = time.perf_counter() - t0
    names = list(calls)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            call = calls[name]
            t0 = time.perf_counter()
            for _ in range(number):
                call()
            samples[name].append((time.perf_counter() - t0) / number)
    return samples


def _peak_extra(call: Callable[[], Any]) -> tuple[int, int, int]:
    """(peak traced bytes during the call beyond its outputs, all outputs' bytes, one output's)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = _as_list(call())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out_bytes = sum(r.nbytes for r in result)
    return peak - base - out_bytes, out_bytes, result[0].nbytes


class Report:
    """Prints and keeps the text, so that --save writes exactly what was shown."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)


def measure(reps_large: int, reps_small: int, out: Report) -> dict[str, Any]:
    """Run every target; return the result document."""
    rng = np.random.default_rng(20240521)
    host = _bench.host_description()
    try:
        from cugrad import _numpy_backend

        threads: int | None = _numpy_backend.thread_count()
    except (ImportError, AttributeError):
        threads = None
    doc: dict[str, Any] = {
        "device": host,
        "commit": _bench.git_commit(_bench.find_repo_root(Path(__file__).resolve().parent)),
        "date": datetime.date.today().isoformat(),
        "numpy": np.__version__,
        "cugrad": getattr(cugrad, "__version__", "unknown"),
        "cugrad_threads": threads,
        "load_avg_before": [round(x, 2) for x in os.getloadavg()],
        "targets": [],
        "memory": [],
    }
    out(f"cugrad NumPy backend vs numpy.gradient on {host}")
    out(
        f"numpy {np.__version__}, cugrad {doc['cugrad']}, cugrad threads: {threads}, "
        f"commit {doc['commit']}, {doc['date']}"
    )
    out(f"load average before: {doc['load_avg_before']} (other processes share these CPUs)")
    out("ratio = numpy time / cugrad time (higher is better for cugrad)")
    out()
    out(
        f"{'target':<6} {'case':<46} {'numpy':>11} {'cugrad':>11} {'ratio':>7} {'goal':>6}  "
        f"{'result':<7} {'other':>7}"
    )
    for target in TARGETS:
        f, varargs = target.make(rng)
        calls = {
            "numpy": lambda f=f, v=varargs: np.gradient(f, *v),
            "cugrad": lambda f=f, v=varargs: cugrad.gradient(f, *v, backend="numpy"),
        }
        exact, worst, problem = _bench.compare(
            _as_list(calls["cugrad"]()), _as_list(calls["numpy"]())
        )
        row: dict[str, Any] = {
            "target": target.name,
            "case": target.description,
            "shape": list(f.shape),
            "dtype": str(f.dtype),
            "min_ratio": target.min_ratio,
            "exact": exact,
            "max_abs_diff": worst,
        }
        if problem or not exact:
            row.update(passed=False, error=problem or "not bit-identical to numpy.gradient")
            doc["targets"].append(row)
            out(
                f"{target.name:<6} {target.description:<46} {'':>11} {'':>11} {'':>7} "
                f"{target.min_ratio:>6.2f}  FAIL: {row['error']}"
            )
            continue
        if target.small:
            samples = _time_small(calls, reps_small)
            stat, other = min, statistics.median
            method = f"min over {reps_small} batches of many calls, per call"
        else:
            for call in calls.values():  # warm-up: thread pool start, page faults of a first call
                call()
            samples = _time_large(calls, reps_large)
            stat, other = statistics.median, min
            method = f"median of {reps_large} alternating calls"
        t_np, t_cg = stat(samples["numpy"]), stat(samples["cugrad"])
        ratio = t_np / t_cg
        row.update(
            numpy_s=t_np,
            cugrad_s=t_cg,
            ratio=ratio,
            method=method,
            numpy_samples_s=samples["numpy"],
            cugrad_samples_s=samples["cugrad"],
            other_ratio=other(samples["numpy"]) / other(samples["cugrad"]),
            other_stat=other.__name__,
            passed=ratio >= target.min_ratio,
        )
        doc["targets"].append(row)
        out(
            f"{target.name:<6} {target.description:<46} {_bench._fmt_time(t_np):>11} "
            f"{_bench._fmt_time(t_cg):>11} {ratio:>6.2f}x {target.min_ratio:>5.2f}x  "
            f"{'ok' if row['passed'] else 'MISSED':<7} {row['other_ratio']:>6.2f}x"
        )
        if target.memory:
            for name, call in calls.items():
                extra, out_bytes, one = _peak_extra(call)
                limited = name == "cugrad"  # numpy's own temporaries are shown, not judged
                doc["memory"].append(
                    {
                        "target": target.name,
                        "impl": name,
                        "peak_extra_bytes": extra,
                        "outputs_bytes": out_bytes,
                        "one_output_bytes": one,
                        "fraction_of_one_output": extra / one,
                        "limit": MEMORY_LIMIT if limited else None,
                        "passed": extra <= MEMORY_LIMIT * one if limited else None,
                    }
                )
    out()
    out(
        "timing: large cases median of alternating single calls after a warm-up; small cases the "
        "best of alternating batches (timeit style). 'other' is the ratio by the other statistic "
        "(min for large cases, median for small ones), shown because these CPUs may be shared."
    )
    out()
    out("peak memory beyond the outputs (tracemalloc), as a fraction of one output:")
    for m in doc["memory"]:
        verdict = ""
        if m["passed"] is not None:
            verdict = f"  limit {MEMORY_LIMIT:.2f}: {'ok' if m['passed'] else 'MISSED'}"
        out(
            f"  ({m['target']}) {m['impl']:<7} extra {m['peak_extra_bytes'] / 2**20:8.2f} MiB = "
            f"{m['fraction_of_one_output']:.3f} x one output ({m['one_output_bytes'] / 2**20:.0f} "
            f"MiB){verdict}"
        )
    failed = [r["target"] for r in doc["targets"] if not r["passed"]]
    failed += [f"memory({m['target']})" for m in doc["memory"] if m["passed"] is False]
    doc["failed"] = failed
    out()
    out("all targets met" if not failed else f"targets missed: {', '.join(failed)}")
    return doc


def _save(doc: dict[str, Any], text: str, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem, k = f"cpu-{doc['date']}", 2
    path = out_dir / f"{stem}.json"
    while path.exists() or path.with_suffix(".txt").exists():
        path, k = out_dir / f"{stem}-{k}.json", k + 1
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    path.with_suffix(".txt").write_text(text, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--repeat", type=int, default=9, help="samples per large case")
    parser.add_argument("--batches", type=int, default=7, help="batches per small case")
    parser.add_argument(
        "--save", action="store_true", help="write cpu-<date>.txt and .json into --out"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="directory for --save (default: benchmarks/results)",
    )
    args = parser.parse_args(argv)
    report = Report()
    doc = measure(max(1, args.repeat), max(1, args.batches), report)
    if args.save:
        path = _save(doc, "\n".join(report.lines) + "\n", args.out)
        print(f"saved {path} and {path.with_suffix('.txt').name}")
    return 1 if args.check and doc["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
