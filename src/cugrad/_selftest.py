"""``cugrad selftest``: evidence, in minutes, that this installation computes numpy.gradient.

It prints ``cugrad info``, then:

* always, the CPU part: a parity sample of the NumPy backend against numpy.gradient (every dtype x
  layout x spacing form x edge order on small shapes, one 256^3 case, ``out=`` and ``stack=``);
* without a usable GPU, also an NVRTC compile of every kernel for the architectures the installed
  NVRTC supports (when NVRTC is installed), and it says plainly that the GPU part was skipped and
  why (exit status 0);
* with a usable GPU, the GPU part: every kernel compiled for the present device through CuPy (timed;
  this fills CuPy's kernel cache), the same parity sample on the device (plus a non-default stream,
  device coordinates, torch CUDA tensors when torch is installed, and which kernel path each case
  took), a second and a third process that reuse a fresh kernel cache (the third must compile
  nothing), and the quick GPU benchmark (cugrad against cupy.gradient and a device copy, 256^3 and
  512^3, float32 and float64, GB/s and fraction of copy bandwidth; the four derived operators on
  256^3).

``--json PATH`` writes the whole report; the exit status is 1 on any mismatch or failure.

The parts that need no GPU are plain Python over an ``xp`` module (numpy or cupy): the case list,
the inputs of a case, the comparison and the report, so the CPU tests check them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import cugrad
from cugrad import _backend

# ------------------------------------------------------------------------------------------------
# The parity sample: plain data
# ------------------------------------------------------------------------------------------------

DTYPES = ("float16", "float32", "float64", "complex64", "complex128", "int8", "int16", "int32",
          "int64", "uint8", "uint16", "uint32", "uint64", "bool")
LAYOUTS = ("c", "fortran", "negative-strides", "strided-view", "transposed")
SPACINGS = ("none", "scalar", "numpy-scalar", "per-axis", "coords", "even-coords", "mixed")
EDGE_ORDERS = (1, 2)
SMALL_SHAPE = (6, 14, 9)
LARGE_SHAPE = (256, 256, 256)
# Modes: "plain" (a returned tuple), "out" (into given arrays), "stack" (one stacked array); on a
# device also "stream" (on a non-default stream), "device-coords" (coordinates as device arrays)
# and "torch" (torch CUDA tensors in and out).
HOST_MODES = ("plain", "out", "stack")
DEVICE_MODES = HOST_MODES + ("stream", "device-coords", "torch")


@dataclass(frozen=True)
class ParityCase:
    """One call of the parity sample, compared bit for bit with numpy.gradient."""

    dtype: str
    layout: str
    spacing: str
    edge_order: int
    mode: str = "plain"
    shape: tuple[int, ...] = SMALL_SHAPE
    axis: int | None = None

    @property
    def name(self) -> str:
        size = "" if self.shape == SMALL_SHAPE else "-" + "x".join(map(str, self.shape))
        axis = "" if self.axis is None else f"-axis{self.axis}"
        return (f"{self.dtype}-{self.layout}-{self.spacing}-e{self.edge_order}-{self.mode}"
                f"{axis}{size}")


def parity_cases(device: bool) -> list[ParityCase]:
    """The sample: the full dtype x layout x spacing x edge-order grid, then the other modes."""
    cases = [ParityCase(d, lay, s, e) for d in DTYPES for lay in LAYOUTS for s in SPACINGS
             for e in EDGE_ORDERS]
    for mode in ("out", "stack"):
        cases += [ParityCase(d, lay, s, e, mode) for d in ("float16", "float32", "float64",
                                                             "complex64", "int32")
                  for lay in ("c", "fortran") for s in ("per-axis", "coords") for e in EDGE_ORDERS]
    cases += [ParityCase("float32", "c", s, 2, axis=ax) for s in ("scalar", "coords")
              for ax in (0, -1)]
    cases.append(ParityCase("float32", "c", "per-axis", 2, shape=LARGE_SHAPE))
    if device:
        cases += [ParityCase(d, lay, "mixed", e, "stream") for d in ("float32", "float64",
                                                                     "complex128")
                  for lay in ("c", "transposed") for e in EDGE_ORDERS]
        cases += [ParityCase(d, lay, s, e, "device-coords")
                  for d in ("float16", "float32", "float64", "complex64", "int16")
                  for lay in ("c", "fortran") for s in ("coords", "even-coords", "mixed")
                  for e in EDGE_ORDERS]
        cases += [ParityCase(d, lay, s, e, "torch") for d in ("float32", "float64", "complex64")
                  for lay in ("c", "transposed") for s in ("per-axis", "coords")
                  for e in EDGE_ORDERS]
    return cases


def _rng(*key: Any) -> np.random.Generator:
    import zlib

    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def base_data(case: ParityCase) -> np.ndarray:
    """The C-ordered host data of a case, before its layout (reproducible)."""
    rng = _rng(case.dtype, case.shape, case.layout, case.spacing)
    dtype = np.dtype(case.dtype)
    if dtype.kind == "b":
        return rng.random(case.shape) > 0.5
    if dtype.kind in "iu":
        return rng.integers(0, 100, case.shape).astype(dtype)
    if case.shape == LARGE_SHAPE:
        values = rng.standard_normal(case.shape, dtype=np.float32)
    else:
        values = rng.standard_normal(case.shape) * 10.0 ** rng.integers(-3, 4, case.shape)
    if dtype.kind == "c":
        values = values + 1j * rng.standard_normal(case.shape)
    return values.astype(dtype)


def apply_layout(a: Any, layout: str) -> Any:
    """The same view of numpy or CuPy data: the strides match between host and device."""
    if layout == "c":
        return a
    if layout == "fortran":
        return a.copy(order="F")
    if layout == "negative-strides":
        return a[::-1, :, ::-1]
    if layout == "strided-view":
        return a[:, ::2, :]
    if layout == "transposed":
        return a.transpose(2, 0, 1)
    raise ValueError(f"unknown layout {layout!r}")


def _coords(n: int, key: str, even: bool) -> np.ndarray:
    if even:
        return np.arange(n) * 0.375
    return np.cumsum(_rng("coords", n, key).random(n) + 0.25)


def host_spacing(case: ParityCase, shape: tuple[int, ...]) -> tuple[Any, ...]:
    """numpy.gradient's spacing arguments of a case (host objects), for an array of ``shape``."""
    axes = list(range(len(shape))) if case.axis is None else [case.axis % len(shape)]
    s = case.spacing
    if s == "none":
        return ()
    if s == "scalar":
        return (0.5,)
    if s == "numpy-scalar":
        return (np.float32(0.25),)
    per_axis = [(0.5, 1.25, np.float64(2.0))[k % 3] for k in range(len(axes))]
    if s == "per-axis":
        return tuple(per_axis)
    if s in ("coords", "even-coords"):
        return tuple(_coords(shape[ax], case.name, s == "even-coords") for ax in axes)
    if s == "mixed":
        forms = [1.5, None, np.float32(0.25)]
        return tuple(_coords(shape[ax], case.name, False) if forms[k % 3] is None else forms[k % 3]
                     for k, ax in enumerate(axes))
    raise ValueError(f"unknown spacing form {s!r}")


def call_kwargs(case: ParityCase) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"edge_order": case.edge_order}
    if case.axis is not None:
        kwargs["axis"] = case.axis
    return kwargs


# ------------------------------------------------------------------------------------------------
# Comparison
# ------------------------------------------------------------------------------------------------


def public_exception_type(exc: BaseException) -> type[BaseException]:
    """The type a caller catches: AxisError, else the nearest builtin exception class."""
    import builtins

    if isinstance(exc, np.exceptions.AxisError):
        return np.exceptions.AxisError
    for cls in type(exc).__mro__:
        if getattr(builtins, cls.__name__, None) is cls:
            return cls
    return type(exc)


def _arrays(result: Any) -> list[np.ndarray]:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    if want.dtype.kind == "c":
        return _same_bits(got.real, want.real) and _same_bits(got.imag, want.imag)
    if want.dtype.kind != "f":
        return bool(np.array_equal(got, want))
    nan = np.isnan(want)
    # NaN payloads may differ (GPUs produce a canonical NaN); the sign of zero may not.
    return bool(np.array_equal(np.isnan(got), nan)
                and np.array_equal(got[~nan], want[~nan])
                and np.array_equal(np.signbit(got[~nan]), np.signbit(want[~nan])))


def compare(got: Any, expected: Any) -> str | None:
    """None when ``got`` is numpy.gradient's ``expected`` bit for bit, else what differs."""
    if isinstance(expected, tuple) != isinstance(got, tuple):
        return f"numpy returns {type(expected).__name__}, cugrad {type(got).__name__}"
    want, have = _arrays(expected), _arrays(got)
    if len(want) != len(have):
        return f"{len(have)} arrays, numpy gives {len(want)}"
    for i, (g, w) in enumerate(zip(have, want, strict=True)):
        g = np.asarray(g)
        if g.dtype != w.dtype:
            return f"result[{i}] has dtype {g.dtype}, numpy gives {w.dtype}"
        if g.shape != w.shape:
            return f"result[{i}] has shape {g.shape}, numpy gives {w.shape}"
        if not _same_bits(g, w):
            bad = int(np.count_nonzero(~np.isclose(g, w, rtol=0, atol=0, equal_nan=True)))
            return f"result[{i}] differs from numpy.gradient in {bad} of {w.size} elements"
    return None


@dataclass
class CaseResult:
    case: str
    ok: bool
    problem: str | None = None
    path: str | None = None  # the kernel path on a GPU ("fast", "general", "fast+general")


@dataclass
class ParityReport:
    results: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def mismatches(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> dict[str, Any]:
        paths: dict[str, int] = {}
        for r in self.results:
            if r.path:
                paths[r.path] = paths.get(r.path, 0) + 1
        return {
            "cases": len(self.results),
            "mismatches": [dataclasses.asdict(r) for r in self.mismatches],
            "kernel_paths": paths,
            "seconds": round(self.seconds, 3),
        }


# ------------------------------------------------------------------------------------------------
# The run loop (any xp)
# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _cugrad_own_numpy_path() -> Iterator[None]:
    """Small host arrays normally go straight to numpy.gradient; the sample must test cugrad."""
    from cugrad import _api

    saved = getattr(_api, "NUMPY_GRADIENT_BELOW", None)
    if saved is not None:
        _api.NUMPY_GRADIENT_BELOW = 0
    try:
        yield
    finally:
        if saved is not None:
            _api.NUMPY_GRADIENT_BELOW = saved


def _quiet() -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    stack.enter_context(np.errstate(all="ignore"))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def _is_numpy(xp: Any) -> bool:
    return xp is np


def _to_host(xp: Any, a: Any) -> np.ndarray:
    if _is_numpy(xp):
        return np.asarray(a)
    return xp.asnumpy(a)


def _result_to_host(xp: Any, result: Any) -> Any:
    if isinstance(result, tuple):
        return tuple(_to_host(xp, r) for r in result)
    return _to_host(xp, result)


def run_case(case: ParityCase, xp: Any, torch: Any = None) -> CaseResult:
    """Run one case with ``xp`` (numpy: the NumPy backend; cupy: on the device)."""
    base = base_data(case)
    f_host = apply_layout(base, case.layout)
    varargs = host_spacing(case, f_host.shape)
    kwargs = call_kwargs(case)
    with _quiet():
        try:
            expected, expected_error = np.gradient(f_host, *varargs, **kwargs), None
        except Exception as exc:  # noqa: BLE001 - numpy's exception is the expected outcome
            expected, expected_error = None, exc
    path = None
    try:
        with _quiet():
            got, path = _call(case, xp, torch, base, varargs, kwargs, expected)
    except Exception as exc:  # noqa: BLE001 - compared with numpy's below
        if expected_error is None:
            return CaseResult(case.name, False, f"raised {type(exc).__name__}: {exc}", path)
        if public_exception_type(exc) is not public_exception_type(expected_error):
            return CaseResult(case.name, False,
                              f"raised {type(exc).__name__}, numpy raises "
                              f"{type(expected_error).__name__}", path)
        return CaseResult(case.name, True, None, path)
    if expected_error is not None:
        return CaseResult(case.name, False,
                          f"returned a result, numpy raises {type(expected_error).__name__}", path)
    problem = compare(got, expected)
    return CaseResult(case.name, problem is None, problem, path)


def _call(case: ParityCase, xp: Any, torch: Any, base: np.ndarray, varargs: tuple[Any, ...],
          kwargs: dict[str, Any], expected: Any) -> tuple[Any, str | None]:
    if case.mode == "torch":
        return _call_torch(case, torch, base, varargs, kwargs), None
    on_device = not _is_numpy(xp)
    f = apply_layout(xp.asarray(base) if on_device else base, case.layout)
    if case.mode == "device-coords" and on_device:
        varargs = tuple(xp.asarray(v) if isinstance(v, np.ndarray) and v.ndim == 1 else v
                        for v in varargs)
    # Named, so that a CUGRAD_BACKEND in the environment cannot change what is tested.
    backend = "cupy" if on_device else "numpy"
    path = _kernel_path(f, varargs, kwargs) if on_device else None
    if case.mode in ("out", "stack") and expected is not None:
        arrays = _arrays(expected)
        if case.mode == "stack":
            out = xp.full((len(arrays),) + arrays[0].shape, np.nan, arrays[0].dtype)
            result = cugrad.gradient(f, *varargs, out=out, stack=True, backend=backend, **kwargs)
            if result is not out:
                raise AssertionError("stack=True with out= did not return out")
            stacked = _to_host(xp, out)
            return (stacked[0] if len(arrays) == 1 else tuple(stacked)), path
        outs = [xp.full(a.shape, np.nan, a.dtype) for a in arrays]
        given = tuple(outs) if isinstance(expected, tuple) else outs[0]
        result = cugrad.gradient(f, *varargs, out=given, backend=backend, **kwargs)
        if any(r is not o for r, o in zip(_arrays(result), _arrays(given), strict=True)):
            raise AssertionError("out= arrays were not returned")
        return _result_to_host(xp, result), path
    if case.mode == "stream" and on_device:
        xp.cuda.Device().synchronize()  # the data is ready before the non-blocking stream reads
        stream = xp.cuda.Stream(non_blocking=True)
        with stream:
            result = cugrad.gradient(f, *varargs, backend=backend, **kwargs)
            done = stream.record()
        done.synchronize()
        return _result_to_host(xp, result), path
    result = cugrad.gradient(f, *varargs, backend=backend, **kwargs)
    return _result_to_host(xp, result), path


def _kernel_path(f: Any, varargs: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Which kernel path(s) a device call takes; None when that cannot be told."""
    try:
        from cugrad import _cupy_backend
        from cugrad._plan import make_plan

        plan = make_plan(f, varargs, kwargs.get("axis"), kwargs["edge_order"])
        info = _cupy_backend.ArrayInfo.of(f)
        outs = [dataclasses.replace(info, dtype=np.dtype(plan.out_dtype), c_contiguous=True,
                                    nbytes=int(np.prod(plan.shape)) * plan.out_dtype.itemsize)
                for _ in plan.axes]
        launches, general = _cupy_backend.select_paths(plan, info, outs)
    except Exception:  # noqa: BLE001 - informational only; the result check is what counts
        return None
    names = (["fast"] if launches else []) + (["general"] if general else [])
    return "+".join(names) or None


def _call_torch(case: ParityCase, torch: Any, base: np.ndarray, varargs: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
    t = torch.from_numpy(np.ascontiguousarray(base)).cuda()
    if case.layout == "transposed":
        t = t.permute(2, 0, 1)  # the view apply_layout makes of numpy data
    elif case.layout != "c":
        raise ValueError("torch cases use the c and transposed layouts")
    spacing = tuple(torch.from_numpy(v).cuda() if isinstance(v, np.ndarray) else v
                    for v in varargs)
    with torch.no_grad():
        result = cugrad.gradient(t, *spacing, backend="cupy", **kwargs)
    torch.cuda.synchronize()
    if isinstance(result, tuple):
        return tuple(r.cpu().numpy() for r in result)
    return result.cpu().numpy()


def run_parity(cases: list[ParityCase], xp: Any, torch: Any = None,
               progress: Callable[[str], None] | None = None) -> ParityReport:
    """Run every case with ``xp``; a case that cannot run on this ``xp`` is left out."""
    report = ParityReport()
    start = time.perf_counter()
    with _cugrad_own_numpy_path():
        for k, case in enumerate(cases):
            if _is_numpy(xp) and case.mode not in HOST_MODES:
                continue
            if case.mode == "torch" and torch is None:
                continue
            report.results.append(run_case(case, xp, torch))
            if progress and (k + 1) % 200 == 0:
                progress(f"  {k + 1}/{len(cases)} cases")
    report.seconds = time.perf_counter() - start
    return report


# ------------------------------------------------------------------------------------------------
# GPU-only checks
# ------------------------------------------------------------------------------------------------

# Run twice with the same fresh CUPY_CACHE_DIR: the second run must compile nothing (CuPy >= 14.2
# reloads the fast path's name_expressions kernels; the general path's ElementwiseKernels always
# were). Compilations are counted where CuPy hands a source to NVRTC after a cache miss.
CACHE_REUSE_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import cupy
    from cupy.cuda import compiler

    count = [0]
    name = ("_compile_using_nvrtc_no_warning"
            if hasattr(compiler, "_compile_using_nvrtc_no_warning") else "compile_using_nvrtc")
    real = getattr(compiler, name)

    def counting(*args, **kwargs):
        count[0] += 1
        return real(*args, **kwargs)

    setattr(compiler, name, counting)
    import cugrad

    rng = np.random.default_rng(0)
    x = np.cumsum(rng.random(16) + 0.5)
    for dtype in ("float32", "float64", "float16", "complex64", "int32"):
        host = (rng.standard_normal((8, 16, 12)) * 10).astype(dtype)
        for f in (cupy.asarray(host), cupy.asfortranarray(cupy.asarray(host))):
            for edge_order in (1, 2):
                cugrad.gradient(f, 0.5, x, np.float32(2.0), edge_order=edge_order)
                cugrad.gradient(f, axis=-1, edge_order=edge_order)
    cupy.cuda.Device().synchronize()
    print(json.dumps({"compiles": count[0], "counted": name}))
    """
)


def kernel_cache_reuse(cache_dir: str, timeout: float = 600.0) -> dict[str, Any]:
    """Run the cache-reuse script twice in fresh processes sharing ``cache_dir``.

    Returns the compile counts of both runs (``first`` fills the cache, ``second`` must be 0).
    """
    env = dict(os.environ, CUPY_CACHE_DIR=cache_dir)
    env.pop("CUPY_CACHE_IN_MEMORY", None)
    counts = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", CACHE_REUSE_SCRIPT], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"the cache-reuse process failed:\n{proc.stderr[-2000:]}")
        counts.append(json.loads(proc.stdout.strip().splitlines()[-1])["compiles"])
    return {"first": counts[0], "second": counts[1]}


BENCH_CASES = ("3d-f32-256-uniform-all", "3d-f32-512-uniform-all", "3d-f64-256-uniform-all",
               "3d-f64-512-uniform-all")


def gpu_benchmark() -> dict[str, Any]:
    """cugrad against cupy.gradient and a device copy (through ``cugrad._bench``)."""
    from cugrad import _bench

    settings = _bench.Settings(full=True, patterns=list(BENCH_CASES), impls=["cugrad", "cupy"],
                               repeat=None, out=None)
    doc = _bench.run_benchmarks(settings)
    rows = []
    for r in doc["cases"]:
        rows.append({k: r.get(k) for k in ("case", "impl", "median_s", "gbps", "copy_fraction",
                                           "exact", "error", "skipped_reason")})
    import cupy

    rows.extend(operator_benchmark(cupy, doc.get("copy_gbps")))
    return {"device": doc.get("device"), "copy_gbps": doc.get("copy_gbps"),
            "copy_method": doc.get("copy_method"), "rows": rows}


#: The derived operators the GPU benchmark times (one fused launch each), with how many arrays
#: each reads and writes: GB/s counts (inputs + outputs) x n x itemsize (issue 12's target is 85%
#: of the device copy).
OPERATOR_BENCH = {"gradient_magnitude": (1, 1), "divergence": (3, 1), "curl": (3, 3),
                  "laplacian": (1, 1)}


def operator_benchmark(cp: Any, copy_gbps: float | None, side: int = 256,
                       reps: int = 10) -> list[dict[str, Any]]:
    """Time each derived operator on ``side``^3 float32 and float64 CuPy arrays, out= given.

    Their bits are checked by the options section (``run_options``); here only their speed:
    the median of ``reps`` launches timed with CUDA events, after one warm-up launch.
    """
    import cugrad

    calls = {
        "gradient_magnitude": lambda F, out: cugrad.gradient_magnitude(F[0], 0.5, out=out),
        "divergence": lambda F, out: cugrad.divergence(F, 0.5, out=out),
        "curl": lambda F, out: cugrad.curl(F, 0.5, stack=True, out=out),
        "laplacian": lambda F, out: cugrad.laplacian(F[0], 0.5, out=out),
    }
    rows = []
    for dtype in ("float32", "float64"):
        shape = (side,) * 3
        F = [cp.asarray(_rng("operator benchmark", dtype, i).standard_normal(shape).astype(dtype))
             for i in range(3)]
        for op, call in calls.items():
            sources, outputs = OPERATOR_BENCH[op]
            out = cp.empty(((3,) if outputs == 3 else ()) + shape, dtype)
            call(F, out)  # compiles, or loads the kernel from CuPy's cache
            start, stop = cp.cuda.Event(), cp.cuda.Event()
            times = []
            for _ in range(reps):
                start.record()
                call(F, out)
                stop.record()
                stop.synchronize()
                times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)
            median = statistics.median(times)
            gbps = (sources + outputs) * F[0].size * F[0].itemsize / median / 1e9
            rows.append({"case": f"{op}-{dtype}-{side}", "impl": "cugrad", "median_s": median,
                         "gbps": gbps, "copy_fraction": gbps / copy_gbps if copy_gbps else None,
                         "exact": None, "error": None, "skipped_reason": None})
            del out
        del F
    return rows


def format_benchmark(bench: dict[str, Any]) -> list[str]:
    lines = [f"  copy: {_num(bench.get('copy_gbps'))} GB/s ({bench.get('copy_method')})"]
    for r in bench["rows"]:
        if r.get("median_s"):
            frac = r.get("copy_fraction")
            lines.append(f"  {r['case']:<26} {r['impl']:<7} {r['median_s'] * 1e3:9.3f} ms "
                         f"{_num(r.get('gbps')):>8} GB/s "
                         f"{'' if frac is None else f'{frac:.2f} of copy'}")
        else:
            lines.append(f"  {r['case']:<26} {r['impl']:<7} "
                         f"{r.get('error') or r.get('skipped_reason') or 'not timed'}")
    return lines


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.1f}"


# ------------------------------------------------------------------------------------------------
# The report and the command
# ------------------------------------------------------------------------------------------------


@dataclass
class Section:
    name: str
    status: str  # "ok", "FAIL" or "skipped"
    seconds: float = 0.0
    detail: str = ""
    data: Any = None


@dataclass
class Report:
    started: str
    info: dict[str, Any]
    gpu_ran: bool = False
    gpu_skipped_reason: str | None = None
    sections: list[Section] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.status != "FAIL" for s in self.sections)

    def to_json(self) -> dict[str, Any]:
        return _finite({
            "cugrad": cugrad.__version__,
            "started": self.started,
            "ok": self.ok,
            "gpu": {"ran": self.gpu_ran, "skipped_reason": self.gpu_skipped_reason},
            "info": self.info,
            "sections": [dataclasses.asdict(s) for s in self.sections],
        })


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        return _finite(obj.item())
    return obj


def _section(report: Report, name: str, work: Callable[[], tuple[str, str, Any]]) -> Section:
    """Run one part, print its line, record it; an exception is a failure with its traceback."""
    print(f"{name} ...", flush=True)
    start = time.perf_counter()
    try:
        status, detail, data = work()
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none ends the run
        status, detail, data = "FAIL", f"{type(exc).__name__}: {exc}", traceback.format_exc()
    section = Section(name, status, round(time.perf_counter() - start, 3), detail, data)
    report.sections.append(section)
    print(f"[{status}] {name} ({section.seconds:.1f} s): {detail}", flush=True)
    return section


def _parity_section(cases: list[ParityCase], xp: Any, torch: Any = None
                    ) -> tuple[str, str, Any]:
    parity = run_parity(cases, xp, torch, progress=lambda m: print(m, flush=True))
    summary = parity.summary()
    bad = parity.mismatches
    for r in bad[:20]:
        print(f"  MISMATCH {r.case}: {r.problem}", flush=True)
    paths = ", ".join(f"{k}: {v}" for k, v in sorted(summary["kernel_paths"].items()))
    detail = (f"{len(parity.results)} cases, {len(bad)} mismatches"
              + (f" (kernel paths: {paths})" if paths else ""))
    return ("FAIL" if bad else "ok"), detail, summary


# --------------------------------------------------------------------------------------------------
# Accuracy orders, periodic boundaries and derived operators: the device against the NumPy backend
# --------------------------------------------------------------------------------------------------

OPTION_SHAPE = (12, 20, 18)  # every axis long enough for accuracy 8 (9 points)
OPTION_DTYPES = ("float16", "float32", "float64", "complex128", "int32")
OPTIONS = tuple(
    {"accuracy": acc, "boundary": boundary} for acc in (2, 4, 6, 8)
    for boundary in ("edge", "periodic")
)


def option_cases() -> list[tuple[str, str, str, dict[str, Any], str]]:
    """(name, dtype, layout, options, spacing kind) for the gradient with cugrad's options."""
    cases = []
    for options in OPTIONS:
        for dtype in OPTION_DTYPES:
            for layout in ("c", "fortran"):
                for spacing in ("scalar", "coords"):
                    name = (f"gradient-acc{options['accuracy']}-{options['boundary']}-{dtype}-"
                            f"{layout}-{spacing}")
                    cases.append((name, dtype, layout, options, spacing))
    return cases


def _option_inputs(dtype: str, spacing: str, boundary: str) -> tuple[np.ndarray, tuple, dict]:
    rng = _rng("options", dtype, spacing)
    values = rng.standard_normal(OPTION_SHAPE)
    if np.dtype(dtype).kind == "c":
        values = values + 1j * rng.standard_normal(OPTION_SHAPE)
    f = (values * 100 if np.dtype(dtype).kind == "i" else values).astype(dtype)
    if spacing == "scalar":
        return f, (0.5,), {}
    coords = tuple(np.cumsum(rng.uniform(0.5, 1.5, n)) for n in OPTION_SHAPE)
    extra = {"period": tuple(float(c[-1] - c[0]) + 1.0 for c in coords)} if boundary == \
        "periodic" else {}
    return f, coords, extra


def run_options(xp: Any) -> tuple[list[CaseResult], float]:
    """Every option case and each derived operator with ``xp`` against the NumPy backend.

    There is no numpy reference for cugrad's options: the NumPy backend is the defined one (its
    operation order is the README's), and a GPU must give the same bits.
    """
    import cugrad

    device = {} if _is_numpy(xp) else {"backend": "cupy"}
    start = time.perf_counter()
    results = []
    for name, dtype, layout, options, spacing in option_cases():
        f, sp, extra = _option_inputs(dtype, spacing, options["boundary"])
        expected = cugrad.gradient(f, *sp, backend="numpy", **options, **extra)
        on = apply_layout(xp.asarray(f) if not _is_numpy(xp) else f, layout)
        try:
            got = _result_to_host(xp, cugrad.gradient(on, *sp, **device, **options, **extra))
            problem = compare(got, expected)
        except Exception as exc:  # noqa: BLE001 - a failure is a mismatch, reported
            problem = f"{type(exc).__name__}: {exc}"
        results.append(CaseResult(name, problem is None, problem))
    operators = {
        "gradient_magnitude": lambda F, **k: cugrad.gradient_magnitude(F[0], 0.5, **k),
        "divergence": lambda F, **k: cugrad.divergence(F, 0.5, **k),
        "curl": lambda F, **k: cugrad.curl(F, 0.5, **k),
        "laplacian": lambda F, **k: cugrad.laplacian(F[0], 0.5, **k),
    }
    for op, call in operators.items():
        for dtype in ("float32", "float64"):
            for options in ({}, {"accuracy": 4, "boundary": "periodic"}):
                F = [_option_inputs(dtype, "scalar", "edge")[0] + i for i in range(3)]
                expected = call(F, backend="numpy", **options)
                name = f"{op}-{dtype}-{'default' if not options else 'acc4-periodic'}"
                try:
                    on = F if _is_numpy(xp) else [xp.asarray(c) for c in F]
                    got = _result_to_host(xp, call(on, **device, **options))
                    problem = compare(got, expected)
                except Exception as exc:  # noqa: BLE001
                    problem = f"{type(exc).__name__}: {exc}"
                results.append(CaseResult(name, problem is None, problem))
    return results, time.perf_counter() - start


def _options_section(xp: Any) -> tuple[str, str, Any]:
    results, seconds = run_options(xp)
    bad = [r for r in results if not r.ok]
    for r in bad[:20]:
        print(f"  MISMATCH {r.case}: {r.problem}", flush=True)
    return (("FAIL" if bad else "ok"), f"{len(results)} cases, {len(bad)} mismatches",
            {"cases": len(results), "mismatches": [r.case for r in bad], "seconds": seconds})


def _nvrtc_section() -> tuple[str, str, Any]:
    from cugrad import _compile

    try:
        nvrtc = _compile.NVRTC()
    except _compile.NVRTCError as exc:
        return "skipped", f"NVRTC is not installed ({exc})", None
    archs = _compile.default_archs(nvrtc)
    print(f"  {len(archs)} architectures x 2 programs on {os.cpu_count() or 1} CPUs; NVRTC takes "
          "tens of seconds per program and architecture", flush=True)
    report = _compile.compile_with_nvrtc(archs, nvrtc)
    return ("ok", f"{len(report.variants)} kernels compiled for {', '.join(report.archs)} in "
            f"{report.seconds:.1f} s", {"archs": report.archs, "variants": len(report.variants)})


def _device_compile_section() -> tuple[str, str, Any]:
    from cugrad import _compile

    report = _compile.fill_cupy_cache()
    return ("ok", f"{len(report.variants)} kernels for {', '.join(report.archs)} in "
            f"{report.seconds:.1f} s (now in CuPy's kernel cache)",
            {"variants": len(report.variants), "seconds": report.seconds})


def _cache_reuse_section() -> tuple[str, str, Any]:
    with tempfile.TemporaryDirectory(prefix="cugrad-selftest-cache-") as cache:
        counts = kernel_cache_reuse(cache)
    ok = counts["second"] == 0 and counts["first"] > 0
    return (("ok" if ok else "FAIL"),
            f"a fresh process compiled {counts['first']} kernels into an empty cache; the next "
            f"one compiled {counts['second']} (must be 0)", counts)


def _benchmark_section() -> tuple[str, str, Any]:
    bench = gpu_benchmark()
    for line in format_benchmark(bench):
        print(line, flush=True)
    wrong = [r for r in bench["rows"] if r["impl"] == "cugrad"
             and (r.get("error") or r.get("skipped_reason"))]
    return ("FAIL" if wrong else "ok"),\
        f"{sum(1 for r in bench['rows'] if r.get('median_s'))} timings", bench


def _torch_cuda() -> Any:
    try:
        import torch
    except Exception:  # noqa: BLE001 - torch is optional
        return None
    try:
        return torch if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        return None


def run(json_path: str | None) -> int:
    """Run the self-test; print as it goes; write the JSON report; return the exit status."""
    from cugrad import _info

    facts = _info.collect()
    print(_info.format_report(facts))
    print()
    report = Report(datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    facts)
    usable, reason = _backend.gpu_status()

    _section(report, "NumPy backend parity sample",
             lambda: _parity_section(parity_cases(device=False), np))
    if not usable:
        report.gpu_skipped_reason = reason
        _section(report, "NVRTC compile for the supported architectures", _nvrtc_section)
    else:
        import cupy

        report.gpu_ran = True
        _section(report, "compile every kernel for this GPU", _device_compile_section)
        torch = _torch_cuda()
        _section(report, "device parity sample",
                 lambda: _parity_section(parity_cases(device=True), cupy, torch))
        _section(report, "accuracy orders, periodic ends and derived operators vs the NumPy "
                 "backend", lambda: _options_section(cupy))
        _section(report, "second process reuses the kernel cache", _cache_reuse_section)
        _section(report, "GPU benchmark (cugrad, cupy.gradient, device copy)", _benchmark_section)

    print()
    if not usable:
        print(f"GPU part SKIPPED: {reason}. Only the CPU part ran; run cugrad selftest on a "
              "machine with a usable NVIDIA GPU for the GPU part.")
    failed = [s.name for s in report.sections if s.status == "FAIL"]
    print(f"cugrad selftest: {'FAILED: ' + ', '.join(failed) if failed else 'passed'}")
    if json_path:
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump(report.to_json(), fh, indent=2, default=str, allow_nan=False)
            fh.write("\n")
        print(f"report written to {json_path}")
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m cugrad._selftest [--json PATH]`` (the CLI is ``cugrad selftest``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="cugrad selftest")
    parser.add_argument("--json", metavar="PATH", default=None)
    return run(parser.parse_args(argv).json)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
