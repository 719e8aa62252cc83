"""Benchmark harness (``cugrad bench``): cugrad.gradient against its peers and the copy ceiling.

One process measures everything, so every number in a result file shares one machine state:

* the ceiling: a large device-to-device copy (or, without a GPU, a host ``np.copyto``), counted as
  bytes read plus bytes written per second;
* every implementation on every case of its side: GPU implementations (``cugrad`` with the CuPy
  backend, ``cupy``, ``torch``, ``jax``) on GPU-sized cases, CPU implementations (``numpy``,
  ``cugrad-numpy``) on smaller CPU-sized cases (several names occur on both sides, e.g.
  ``3d-f32-256-uniform-all``);
* per-call host overhead (tiny input, many calls, one synchronisation at the end) and, for the
  CuPy-based implementations, first-call compile time with an empty and with a warm kernel cache.

An implementation's result is compared with ``numpy.gradient`` on the same input before its time
counts. ``cugrad`` must be bit-identical; peers are not numpy-exact by design, so they only need
to be within a tolerance, and their ``exact`` flag and largest absolute difference are recorded. A
wrong result is reported and not timed.

Only numpy and the standard library are imported here at module level: CuPy, PyTorch and JAX are
imported when an implementation that needs them is selected, so ``cugrad bench`` works anywhere.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IMPL_NAMES = ("cugrad", "cupy", "torch", "jax", "numpy", "cugrad-numpy")
# What each name measures, for the lines that say what was skipped.
IMPL_DESCRIPTIONS = {
    "cugrad": "cugrad on the GPU",
    "cupy": "cupy.gradient",
    "torch": "torch.gradient on CUDA",
    "jax": "jnp.gradient on a GPU",
    "numpy": "numpy.gradient",
    "cugrad-numpy": "cugrad's NumPy backend",
}
_REFERENCE_IMPL = {"gpu": "cugrad", "cpu": "cugrad-numpy"}
_SHORT_DTYPE = {"float32": "f32", "float64": "f64"}
# One scalar for every axis; not a power of two, so that a division and a multiplication by the
# reciprocal round differently and a shortcut of that kind shows up in the exactness check.
_UNIFORM_DX = 0.1
# Peers are compared with a tolerance relative to the largest reference magnitude (at least 1):
# about 800 float32 ulps, or 450_000 float64 ulps; far above reordering noise, far below a bug.
_PEER_TOLERANCE = {"float32": 1e-4, "float64": 1e-10}
_SEED = 20240521
_MiB = 1 << 20


# --------------------------------------------------------------------------------------------------
# cases


@dataclass(frozen=True)
class Case:
    """One measured configuration.

    ``kind`` is ``"gradient"`` (a timed call on a large input), ``"overhead"`` (wall time per call
    on a tiny input, many calls between synchronisations) or ``"compile-cold"`` /
    ``"compile-cached"`` (first call in a fresh process). ``side`` says which implementations run
    it.
    ``spacing`` is ``"none"`` (no varargs), ``"uniform"`` (one scalar) or ``"coords"`` (one
    non-uniform coordinate array per differentiated axis, in the data dtype).
    """

    name: str
    side: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    spacing: str = "uniform"
    axis: int | None = None
    edge_order: int = 1

    @property
    def axes(self) -> tuple[int, ...]:
        """Axes differentiated, in output order."""
        return tuple(range(len(self.shape))) if self.axis is None else (self.axis,)

    def with_size(self, size: int) -> Case:
        """Return the same case with every dimension set to ``size`` (tests, smoke runs)."""
        if self.kind != "gradient":
            return self
        return Case(
            self.name,
            self.side,
            self.kind,
            (size,) * len(self.shape),
            self.dtype,
            self.spacing,
            self.axis,
            self.edge_order,
        )


def _grad_case(
    side: str,
    ndim: int,
    dtype: str,
    n: int,
    spacing: str = "uniform",
    axis: int | None = None,
    edge_order: int = 1,
) -> Case:
    axes = "all" if axis is None else f"ax{axis}"
    suffix = "-e2" if edge_order == 2 else ""
    name = f"{ndim}d-{_SHORT_DTYPE[dtype]}-{n}-{spacing}-{axes}{suffix}"
    return Case(name, side, "gradient", (n,) * ndim, dtype, spacing, axis, edge_order)


def _overhead_case(side: str) -> Case:
    return Case("overhead-f32-16x16", side, "overhead", (16, 16), "float32", "none")


def _compile_cases() -> tuple[Case, Case]:
    shape = (64, 64, 64)
    return (
        Case("compile-cold-3d-f32-64", "gpu", "compile-cold", shape, "float32"),
        Case("compile-cached-3d-f32-64", "gpu", "compile-cached", shape, "float32"),
    )


def _gpu_cases(full: bool) -> list[Case]:
    g = _grad_case
    if not full:
        return [
            g("gpu", 3, "float32", 256),
            g("gpu", 2, "float32", 8192, "coords"),
            g("gpu", 3, "float32", 64),
            _overhead_case("gpu"),
        ]
    return [
        g("gpu", 2, "float32", 8192),
        g("gpu", 2, "float32", 8192, "coords"),
        g("gpu", 2, "float32", 16384),
        g("gpu", 2, "float32", 16384, "coords"),
        g("gpu", 2, "float32", 16384, axis=1),
        g("gpu", 3, "float32", 256),
        g("gpu", 3, "float32", 512),
        g("gpu", 3, "float32", 512, edge_order=2),
        g("gpu", 3, "float32", 512, "coords"),
        g("gpu", 3, "float32", 512, "coords", edge_order=2),
        g("gpu", 3, "float32", 512, axis=0),
        g("gpu", 3, "float32", 512, axis=2),
        g("gpu", 3, "float64", 256),
        g("gpu", 3, "float64", 256, "coords"),
        g("gpu", 3, "float64", 256, axis=0),
        g("gpu", 3, "float64", 256, edge_order=2),
        g("gpu", 3, "float64", 512),
        g("gpu", 3, "float32", 64),
        _overhead_case("gpu"),
        *_compile_cases(),
    ]


def _cpu_cases(full: bool) -> list[Case]:
    g = _grad_case
    if not full:
        return [
            g("cpu", 2, "float32", 1024),
            g("cpu", 3, "float64", 64, "coords"),
            g("cpu", 3, "float32", 64),
            _overhead_case("cpu"),
        ]
    return [
        g("cpu", 3, "float32", 256),
        g("cpu", 3, "float32", 256, edge_order=2),
        g("cpu", 3, "float32", 256, axis=0),
        g("cpu", 3, "float32", 256, axis=2),
        g("cpu", 3, "float64", 192, "coords"),
        g("cpu", 3, "float64", 192),
        g("cpu", 2, "float32", 1024),
        g("cpu", 2, "float32", 1024, "coords"),
        g("cpu", 3, "float32", 64),
        _overhead_case("cpu"),
    ]


def ideal_bytes(case: Case) -> int:
    """Bytes an ideal implementation moves: every input once and every output once."""
    itemsize = np.dtype(case.dtype).itemsize
    size = math.prod(case.shape)
    coords = sum(case.shape[ax] for ax in case.axes) * itemsize if case.spacing == "coords" else 0
    return size * itemsize + coords + len(case.axes) * size * itemsize


def _host_inputs(
    case: Case, nbuf: int, rng: np.random.Generator
) -> tuple[list[np.ndarray], tuple[Any, ...]]:
    """Fresh random buffers (never zeros, which some hardware compresses) and the spacing."""
    bufs = [rng.random(case.shape, dtype=np.dtype(case.dtype)) for _ in range(nbuf)]
    if case.spacing == "none":
        varargs: tuple[Any, ...] = ()
    elif case.spacing == "uniform":
        varargs = (_UNIFORM_DX,)
    else:
        # Well-conditioned non-uniform coordinates: steps between 0.5 and 1.5.
        varargs = tuple(
            np.cumsum(rng.uniform(0.5, 1.5, case.shape[ax])).astype(case.dtype) for ax in case.axes
        )
    return bufs, varargs


# --------------------------------------------------------------------------------------------------
# implementations


class Unavailable(Exception):
    """An implementation cannot run here; the message is the recorded reason."""


def _as_list(result: Any) -> list[Any]:
    return list(result) if isinstance(result, (list, tuple)) else [result]


class Runner:
    """How one implementation is called, synchronised and timed; subclasses per framework.

    ``exact_required`` marks cugrad's own implementations: anything but a bit-identical result is a
    failure. ``side`` picks the cases (``"gpu"`` or ``"cpu"``).
    """

    name = "?"
    side = "cpu"
    exact_required = False
    timer = "time.perf_counter around each call"

    def unsupported(self, case: Case) -> str | None:
        """Return why this implementation cannot run ``case``, or None."""
        return None

    def put(self, host: np.ndarray) -> Any:
        """Move a host array to where this implementation computes."""
        return host

    def spacing(self, varargs: tuple[Any, ...]) -> tuple[Any, ...]:
        """Convert host spacing arguments (scalars stay scalars)."""
        return tuple(v if np.isscalar(v) else self.put(v) for v in varargs)

    def call(self, x: Any, varargs: tuple[Any, ...], case: Case) -> Any:
        """Compute the gradient of ``x`` as ``case`` asks."""
        raise NotImplementedError

    def sync(self, result: Any = None) -> None:
        """Wait until all work issued so far (or ``result``) is complete."""

    def to_host(self, result: Any) -> list[np.ndarray]:
        """Return the result arrays as host ndarrays, one per axis."""
        return [np.asarray(r) for r in _as_list(result)]

    def measure(self, call: Callable[[int], Any], reps: int) -> list[float]:
        """Seconds of each of ``reps`` calls ``call(i)``."""
        times = []
        for i in range(reps):
            t0 = time.perf_counter()
            # As in timeit, the result is dropped inside the timing: freeing large host outputs
            # (page unmapping) is a cost every caller pays, and numpy.gradient pays it for its own
            # temporaries too.
            call(i)
            times.append(time.perf_counter() - t0)
        return times

    def measure_overhead(self, call: Callable[[], Any], ncalls: int) -> float:
        """Wall seconds per call over ``ncalls`` calls with one synchronisation at the end."""
        self.sync()
        t0 = time.perf_counter()
        result = None
        for _ in range(ncalls):
            result = call()
        self.sync(result)
        return (time.perf_counter() - t0) / ncalls

    def release(self) -> None:
        """Hand cached device memory back between cases."""


class NumpyRunner(Runner):
    """``numpy.gradient`` itself: the oracle, timed as the CPU baseline."""

    name = "numpy"

    def call(self, x, varargs, case):
        return np.gradient(x, *varargs, axis=case.axis, edge_order=case.edge_order)


class CugradNumpyRunner(Runner):
    """``cugrad.gradient(..., backend="numpy")``."""

    name = "cugrad-numpy"
    exact_required = True

    def __init__(self) -> None:
        import cugrad

        self._gradient = cugrad.gradient
        self._gradient(np.arange(4.0), backend="numpy")

    def call(self, x, varargs, case):
        return self._gradient(
            x, *varargs, axis=case.axis, edge_order=case.edge_order, backend="numpy"
        )


def _import_cupy() -> Any:
    if importlib.util.find_spec("cupy") is None:
        raise Unavailable("cupy is not installed")
    try:
        import cupy
    except Exception as exc:  # a broken CUDA install raises all sorts of things on import
        raise Unavailable(f"cupy failed to import: {type(exc).__name__}: {exc}") from exc
    if not cupy.is_available():
        raise Unavailable("no usable CUDA device (cupy.is_available() is False)")
    return cupy


class CupyEventRunner(Runner):
    """Shared parts of the CuPy-array implementations: events on the current stream."""

    side = "gpu"
    timer = "cupy.cuda.Event pair on the current stream"

    def __init__(self) -> None:
        self.cp = _import_cupy()

    def put(self, host):
        return self.cp.asarray(host)

    def sync(self, result=None):
        self.cp.cuda.get_current_stream().synchronize()

    def to_host(self, result):
        return [self.cp.asnumpy(r) for r in _as_list(result)]

    def measure(self, call, reps):
        cp = self.cp
        stream = cp.cuda.get_current_stream()
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        times = []
        for i in range(reps):
            start.record(stream)
            call(i)
            stop.record(stream)
            stop.synchronize()
            times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)
        return times

    def release(self):
        self.sync()
        self.cp.get_default_memory_pool().free_all_blocks()


class CugradCupyRunner(CupyEventRunner):
    """``cugrad.gradient(..., backend="cupy")`` on CuPy arrays."""

    name = "cugrad"
    exact_required = True

    def __init__(self) -> None:
        super().__init__()
        import cugrad

        self._gradient = cugrad.gradient
        # CuPy works here, so a cugrad that cannot use it is a failure, not a skip.
        probe = self._gradient(self.cp.arange(4.0), backend="cupy")
        if not isinstance(probe, self.cp.ndarray):
            raise TypeError(
                f"cugrad backend='cupy' returned {type(probe).__name__}, not a cupy.ndarray"
            )

    def call(self, x, varargs, case):
        return self._gradient(
            x, *varargs, axis=case.axis, edge_order=case.edge_order, backend="cupy"
        )


class CupyRunner(CupyEventRunner):
    """``cupy.gradient``."""

    name = "cupy"

    def call(self, x, varargs, case):
        return self.cp.gradient(x, *varargs, axis=case.axis, edge_order=case.edge_order)


class TorchRunner(Runner):
    """``torch.gradient`` on CUDA tensors, timed with ``torch.cuda.Event`` on torch's stream.

    torch.gradient takes the spacing as a keyword: one scalar, or a list of 1-D coordinate tensors
    (one per entry of ``dim``), and supports ``edge_order`` 1 and 2. ``device="cpu"`` exists so the
    argument mapping can be tested without a GPU; the harness only uses CUDA.
    """

    name = "torch"
    side = "gpu"
    timer = "torch.cuda.Event pair on torch's current stream"

    def __init__(self, device: str = "cuda") -> None:
        if importlib.util.find_spec("torch") is None:
            raise Unavailable("torch is not installed")
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            raise Unavailable(
                f"torch {torch.__version__} sees no CUDA device "
                "(torch.cuda.is_available() is False)"
            )
        self.torch = torch
        self.device = device

    def put(self, host):
        return self.torch.from_numpy(np.ascontiguousarray(host)).to(self.device)

    def call(self, x, varargs, case):
        kwargs: dict[str, Any] = {"edge_order": case.edge_order}
        if case.axis is not None:
            kwargs["dim"] = case.axis
        if case.spacing == "uniform":
            kwargs["spacing"] = varargs[0]
        elif case.spacing == "coords":
            kwargs["spacing"] = list(varargs)
        return self.torch.gradient(x, **kwargs)

    def sync(self, result=None):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def to_host(self, result):
        return [r.detach().cpu().numpy() for r in _as_list(result)]

    def measure(self, call, reps):
        if self.device != "cuda":
            return super().measure(call, reps)
        cuda = self.torch.cuda
        start, stop = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
        times = []
        for i in range(reps):
            start.record()
            call(i)
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop) / 1e3)
        return times

    def release(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()
            self.torch.cuda.empty_cache()


class JaxRunner(Runner):
    """``jax.jit(jnp.gradient)`` on a GPU device.

    What jnp.gradient supports is not assumed but probed per argument form on a tiny input, and an
    argument form it rejects is recorded as a skip with JAX's message. For reference: JAX 0.4-era
    sources accept scalar spacing only (coordinate arrays raise NotImplementedError); JAX 0.10.2
    (checked while writing this) accepts scalars and 1-D coordinate arrays. Every version read
    raises NotImplementedError for any ``edge_order`` that is not None, so ``edge_order=1`` cases
    are called without the argument (JAX's edges are numpy's first-order ones) and ``edge_order=2``
    is passed through, to be skipped when it raises. JAX exposes no CUDA events, so a call is timed
    as wall clock until ``block_until_ready``. ``platform="cpu"`` exists so the argument mapping
    can be tested without a GPU; the harness only uses ``"gpu"``.
    """

    name = "jax"
    side = "gpu"
    timer = "time.perf_counter around call + jax.block_until_ready"

    def __init__(self, platform: str = "gpu") -> None:
        if importlib.util.find_spec("jax") is None:
            raise Unavailable("jax is not installed")
        # JAX grabs 75% of the GPU at start-up by default, which would starve CuPy and PyTorch.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        import jax
        import jax.numpy as jnp

        # float64 cases must stay float64 (JAX silently computes in float32 otherwise).
        jax.config.update("jax_enable_x64", True)
        try:
            self.device = jax.devices(platform)[0]
        except RuntimeError as exc:
            raise Unavailable(f"jax {jax.__version__} has no {platform} device: {exc}") from exc
        self.jax = jax
        self._fn = jax.jit(jnp.gradient, static_argnames=("axis", "edge_order"))
        self._probed: dict[tuple[Any, ...], str | None] = {}

    def unsupported(self, case):
        key = (len(case.shape), case.dtype, case.spacing, case.axis, case.edge_order)
        if key not in self._probed:
            tiny = Case(
                case.name,
                case.side,
                case.kind,
                (5,) * len(case.shape),
                case.dtype,
                case.spacing,
                case.axis,
                case.edge_order,
            )
            bufs, varargs = _host_inputs(tiny, 1, np.random.default_rng(0))
            try:
                self.sync(self.call(self.put(bufs[0]), self.spacing(varargs), tiny))
                self._probed[key] = None
            except (NotImplementedError, TypeError, ValueError) as exc:
                self._probed[key] = f"jnp.gradient: {type(exc).__name__}: {exc}"
        return self._probed[key]

    def put(self, host):
        return self.jax.device_put(host, self.device)

    def call(self, x, varargs, case):
        if case.edge_order == 1:
            return self._fn(x, *varargs, axis=case.axis)
        return self._fn(x, *varargs, axis=case.axis, edge_order=case.edge_order)

    def sync(self, result=None):
        if result is not None:
            self.jax.block_until_ready(result)

    def measure(self, call, reps):
        times = []
        for i in range(reps):
            t0 = time.perf_counter()
            self.jax.block_until_ready(call(i))
            times.append(time.perf_counter() - t0)
        return times


# name -> factory; a factory raises Unavailable (or anything) when the implementation cannot run.
IMPLS: dict[str, Callable[[], Runner]] = {
    "cugrad": CugradCupyRunner,
    "cupy": CupyRunner,
    "torch": TorchRunner,
    "jax": JaxRunner,
    "numpy": NumpyRunner,
    "cugrad-numpy": CugradNumpyRunner,
}


def _load(name: str) -> tuple[Runner | None, str | None, bool]:
    """(runner, why not, whether "why not" is a failure rather than a missing prerequisite)."""
    try:
        return IMPLS[name](), None, False
    except Unavailable as exc:
        return None, str(exc), False
    except Exception as exc:
        return None, f"failed to load: {type(exc).__name__}: {exc}", True


# --------------------------------------------------------------------------------------------------
# checking against numpy.gradient


def _max_abs_diff(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest |got - ref| in float64, NaN matching NaN counting as 0, other NaNs as inf."""
    worst = 0.0
    g, r = got.reshape(-1), ref.reshape(-1)
    step = 1 << 22  # chunks keep the float64 temporaries small for gigabyte outputs
    for lo in range(0, g.size, step):
        a = g[lo : lo + step].astype(np.float64)
        b = r[lo : lo + step].astype(np.float64)
        d = np.abs(a - b)
        both_nan = np.isnan(a) & np.isnan(b)
        d[both_nan] = 0.0
        d[np.isnan(d)] = np.inf
        if d.size:
            worst = max(worst, float(d.max()))
    return worst


def compare(got: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> tuple[bool, float, str | None]:
    """Compare a result with numpy's: (bit-identical?, max abs diff, structural problem or None).

    Bit-identical means numpy.testing.assert_array_equal semantics (NaNs equal) plus equal dtype and
    shape of every array.
    """
    if len(got) != len(ref):
        return False, math.inf, f"{len(got)} arrays returned, numpy returns {len(ref)}"
    exact, worst = True, 0.0
    for g, r in zip(got, ref, strict=True):
        if g.shape != r.shape:
            return False, math.inf, f"shape {g.shape}, numpy gives {r.shape}"
        if g.dtype != r.dtype:
            exact = False
        if not np.array_equal(g, r, equal_nan=True):
            # only now pay for the float64 pass: equal arrays differ by 0 by definition
            exact = False
            worst = max(worst, _max_abs_diff(g, r))
    return exact, worst, None


def _check_input(
    case: Case, buf: np.ndarray, varargs: tuple[Any, ...], limit_bytes: int, edge: int = 160
) -> tuple[np.ndarray, tuple[Any, ...], str]:
    """Choose the input to check on: the timed buffer, or a corner block when it is too large."""
    if buf.nbytes <= limit_bytes:
        return buf, varargs, "full"
    block = tuple(slice(0, min(n, edge)) for n in buf.shape)
    sub = np.ascontiguousarray(buf[block])
    if case.spacing == "coords":
        varargs = tuple(c[: min(len(c), edge)] for c in varargs)
    return sub, varargs, "block " + "x".join(str(n) for n in sub.shape)


# --------------------------------------------------------------------------------------------------
# machine description


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def host_description() -> str:
    """CPU model name and logical CPU count, e.g. ``"AMD EPYC (2 logical CPUs)"``."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    return f"{model} ({os.cpu_count()} logical CPUs)"


def _cpu_slug() -> str:
    return "cpu-" + _slug(host_description().replace("logical CPUs", "cpu"))


def _last_level_cache_bytes() -> int:
    try:
        size = os.sysconf("SC_LEVEL3_CACHE_SIZE")
    except (ValueError, OSError, AttributeError):
        size = 0
    return size if size and size > 0 else 32 * _MiB


def _gpu_info(runners: dict[str, Runner]) -> dict[str, Any] | None:
    for runner in runners.values():
        if isinstance(runner, CupyEventRunner):
            cp = runner.cp
            dev = cp.cuda.Device()
            props = cp.cuda.runtime.getDeviceProperties(dev.id)
            name = props["name"]
            return {
                "name": name.decode() if isinstance(name, bytes) else str(name),
                "l2_bytes": int(props.get("l2CacheSize", 50 * _MiB)),
                "memory_bytes": int(props["totalGlobalMem"]),
                "compute_capability": f"{props['major']}.{props['minor']}",
                "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
                "cuda_driver": cp.cuda.runtime.driverGetVersion(),
            }
    for runner in runners.values():
        if isinstance(runner, TorchRunner) and runner.device == "cuda":
            props = runner.torch.cuda.get_device_properties(0)
            return {
                "name": props.name,
                "l2_bytes": int(getattr(props, "L2_cache_size", 50 * _MiB)),
                "memory_bytes": int(props.total_memory),
                "compute_capability": f"{props.major}.{props.minor}",
            }
    return None


def find_repo_root(start: Path | None = None) -> Path | None:
    """Return the cugrad checkout containing ``start`` (default: the working directory), if any."""
    here = (start or Path.cwd()).resolve()
    for path in (here, *here.parents):
        if (
            (path / "pyproject.toml").is_file()
            and (path / "benchmarks").is_dir()
            and (path / "src" / "cugrad").is_dir()
        ):
            return path
    return None


def git_commit(repo: Path | None) -> str:
    """``git rev-parse HEAD`` of ``repo`` (``"unknown"`` outside a repository or without git)."""
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo or Path.cwd(),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    head = proc.stdout.strip()
    return head if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", head) else "unknown"


def _git_dirty(repo: Path | None) -> bool | None:
    try:
        proc = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo or Path.cwd(),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(proc.stdout.strip()) if proc.returncode == 0 else None


def _cugrad_numpy_threads() -> int | None:
    try:
        from cugrad import _numpy_backend

        return int(_numpy_backend.thread_count())
    except Exception:  # an older or different NumPy backend: the number is only informative
        return None


def _versions(runners: dict[str, Runner]) -> dict[str, str]:
    import cugrad

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cugrad": getattr(cugrad, "__version__", "unknown"),
    }
    for module in ("cupy", "torch", "jax"):
        if module in sys.modules:
            versions[module] = getattr(sys.modules[module], "__version__", "unknown")
    return versions


# --------------------------------------------------------------------------------------------------
# the copy ceiling


def _copy_gbps_host(nbytes: int, reps: int) -> float:
    src = np.random.default_rng(1).random(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # first touch of dst's pages is not bandwidth
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return 2 * src.nbytes / statistics.median(times) / 1e9


def _copy_gbps_device(runner: Runner, nbytes: int, reps: int) -> tuple[float, str]:
    if isinstance(runner, CupyEventRunner):
        cp = runner.cp
        src = cp.random.random(nbytes // 4, dtype=cp.float32)
        dst = cp.empty_like(src)
        for _ in range(3):
            cp.copyto(dst, src)
        times = runner.measure(lambda i: cp.copyto(dst, src), reps)
        del src, dst
        runner.release()
        method = "cupy.copyto device-to-device"
    else:
        torch = runner.torch
        src = torch.rand(nbytes // 4, device="cuda", dtype=torch.float32)
        dst = torch.empty_like(src)
        for _ in range(3):
            dst.copy_(src)
        times = runner.measure(lambda i: dst.copy_(src), reps)
        del src, dst
        runner.release()
        method = "torch Tensor.copy_ device-to-device"
    return 2 * nbytes / statistics.median(times) / 1e9, method


# --------------------------------------------------------------------------------------------------
# compile time (fresh processes)

_COMPILE_PROBE = r"""
import json, sys, time
import numpy as np
import cupy
impl = sys.argv[1]
shape = tuple(int(n) for n in sys.argv[2].split("x"))
x = cupy.asarray(np.random.default_rng(0).random(shape, dtype=np.float32))
if impl == "cugrad":
    import cugrad
    call = lambda: cugrad.gradient(x, 0.1, backend="cupy")
else:
    call = lambda: cupy.gradient(x, 0.1)
cupy.cuda.Device().synchronize()
t0 = time.perf_counter(); call(); cupy.cuda.Device().synchronize(); t1 = time.perf_counter()
call(); cupy.cuda.Device().synchronize(); t2 = time.perf_counter()
print(json.dumps({"first_call_s": t1 - t0, "second_call_s": t2 - t1}))
"""


def _compile_probe(impl: str, shape: tuple[int, ...], cache_dir: str) -> dict[str, float]:
    env = dict(os.environ, CUPY_CACHE_DIR=cache_dir)
    env.pop("CUPY_CACHE_IN_MEMORY", None)
    proc = subprocess.run(
        [sys.executable, "-c", _COMPILE_PROBE, impl, "x".join(map(str, shape))],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"probe process failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _measure_compile(impl: str, shape: tuple[int, ...], reps: int) -> dict[str, list[float]]:
    """First-call seconds with an empty CuPy kernel cache ("cold") and with it filled ("cached")."""
    out: dict[str, list[float]] = {"compile-cold": [], "compile-cached": []}
    for _ in range(reps):
        cache_dir = tempfile.mkdtemp(prefix="cugrad-bench-cache-")
        try:
            out["compile-cold"].append(_compile_probe(impl, shape, cache_dir)["first_call_s"])
            out["compile-cached"].append(_compile_probe(impl, shape, cache_dir)["first_call_s"])
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
    return out


# --------------------------------------------------------------------------------------------------
# running


@dataclass
class Settings:
    """What ``run`` measures; built from the parsed arguments."""

    full: bool
    patterns: list[str]
    impls: list[str]
    repeat: int | None
    out: Path | None
    size_override: int | None = None
    check_limit_bytes: int = 1024 * _MiB


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _entry(case: Case, impl: str) -> dict[str, Any]:
    return {
        "case": case.name,
        "impl": impl,
        "median_s": None,
        "bytes": ideal_bytes(case),
        "kind": case.kind,
        "shape": list(case.shape),
        "dtype": case.dtype,
        "spacing": case.spacing,
        "axis": case.axis,
        "edge_order": case.edge_order,
    }


def _reps(settings: Settings, side: str) -> int:
    if settings.repeat is not None:
        return max(1, settings.repeat)
    if side == "gpu":
        return 30 if settings.full else 15
    return 7 if settings.full else 5


def _nbuf(case: Case, side: str, cache_bytes: int) -> int:
    """Input buffers to rotate so that the inputs together are about three caches big."""
    nbytes = np.dtype(case.dtype).itemsize * math.prod(case.shape)
    cap = 8 if side == "gpu" else 4
    nbuf = min(cap, max(1, math.ceil(3 * cache_bytes / max(nbytes, 1))))
    # the host generates and holds them; keep that bounded
    return max(1, min(nbuf, (2048 if side == "gpu" else 512) * _MiB // max(nbytes, 1)))


def _run_gradient_case(
    case: Case,
    runners: dict[str, Runner],
    settings: Settings,
    cache_bytes: int,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    rows = []
    live = {name: r for name, r in runners.items() if r is not None}
    nbuf = _nbuf(case, case.side, cache_bytes) if case.kind == "gradient" else 1
    bufs, host_varargs = _host_inputs(case, nbuf, rng)
    check_f, check_varargs, checked_on = _check_input(
        case, bufs[0], host_varargs, settings.check_limit_bytes
    )
    ref = [
        np.asarray(r)
        for r in _as_list(
            np.gradient(check_f, *check_varargs, axis=case.axis, edge_order=case.edge_order)
        )
    ]
    reps = _reps(settings, case.side)
    magnitude = max(max(abs(float(r.max())), abs(float(r.min()))) if r.size else 0.0 for r in ref)
    tol = _PEER_TOLERANCE[case.dtype] * (max(1.0, magnitude) if math.isfinite(magnitude) else 1.0)
    for name, runner in live.items():
        row = _entry(case, name)
        rows.append(row)
        try:
            reason = runner.unsupported(case)
            if reason:
                row["skipped_reason"] = reason
                continue
            xs = [runner.put(b) for b in bufs]
            varargs = runner.spacing(host_varargs)
            if checked_on == "full":
                first = runner.call(xs[0], varargs, case)
            else:
                first = runner.call(runner.put(check_f), runner.spacing(check_varargs), case)
            runner.sync(first)
            got = runner.to_host(first)
            del first
            exact, worst, problem = compare(got, ref)
            del got
            row.update(exact=exact, max_abs_diff=worst, checked_on=checked_on)
            if not runner.exact_required:
                row["tolerance"] = tol
            if problem or (runner.exact_required and not exact) or worst > tol:
                if problem:
                    why = problem
                elif runner.exact_required and not exact:
                    why = "not bit-identical to numpy.gradient"
                else:
                    why = f"max abs diff {worst:.3g} > tolerance {tol:.3g}"
                row["error"] = f"wrong result, not timed: {why}"
                continue
            if case.kind == "overhead":
                ncalls = 2000 if settings.full else 200
                for _ in range(3):
                    runner.sync(runner.call(xs[0], varargs, case))

                def one_call(runner=runner, x=xs[0], varargs=varargs):
                    return runner.call(x, varargs, case)

                samples = [runner.measure_overhead(one_call, ncalls) for _ in range(reps)]
                row.update(calls_per_sample=ncalls)
            else:
                for _ in range(2):
                    runner.sync(runner.call(xs[0], varargs, case))

                def rotating_call(i, runner=runner, xs=xs, varargs=varargs):
                    return runner.call(xs[i % nbuf], varargs, case)

                samples = runner.measure(rotating_call, reps)
                row.update(buffers=nbuf)
            row.update(
                median_s=statistics.median(samples),
                reps=len(samples),
                min_s=min(samples),
                timer=runner.timer,
            )
        except Exception as exc:  # one failing implementation must not end the run
            row["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            xs = varargs = None
            runner.release()
    return rows


def _run_compile_cases(
    cases: list[Case], runners: dict[str, Runner], settings: Settings
) -> list[dict[str, Any]]:
    rows = []
    kinds = {c.kind: c for c in cases}
    for name, runner in runners.items():
        if runner is None:
            continue
        entries = {kind: _entry(case, name) for kind, case in kinds.items()}
        rows.extend(entries.values())
        if name not in ("cugrad", "cupy"):
            for row in entries.values():
                row["skipped_reason"] = "compile time is measured for the CuPy-based impls only"
            continue
        try:
            shape = next(iter(kinds.values())).shape
            samples = _measure_compile(name, shape, min(3, _reps(settings, "gpu")))
            for kind, row in entries.items():
                row.update(
                    median_s=statistics.median(samples[kind]),
                    reps=len(samples[kind]),
                    min_s=min(samples[kind]),
                    timer="time.perf_counter around the first call + device sync, "
                    "fresh process, CUPY_CACHE_DIR empty (cold) or filled (cached)",
                )
        except Exception as exc:
            for row in entries.values():
                row["error"] = f"{type(exc).__name__}: {exc}"
    return rows


def _derive(
    rows: list[dict[str, Any]], copy_gbps: dict[str, float | None], sides: dict[str, str]
) -> None:
    """Add GB/s, fraction of copy bandwidth and time relative to cugrad to timed rows."""
    timed = {(r["case"], r["impl"]): r["median_s"] for r in rows if r["median_s"]}
    for row in rows:
        t = row["median_s"]
        if not t:
            continue
        side = sides[row["impl"]]
        if row["kind"] == "gradient":
            row["gbps"] = row["bytes"] / t / 1e9
            ceiling = copy_gbps.get(side)
            if ceiling:
                row["copy_fraction"] = row["gbps"] / ceiling
        ref_impl = _REFERENCE_IMPL[side]
        ref_t = timed.get((row["case"], ref_impl))
        if ref_t:
            row["vs"] = ref_impl
            row["time_vs_cugrad"] = t / ref_t


def _select_cases(full: bool, patterns: list[str], size_override: int | None) -> list[Case]:
    cases = _gpu_cases(full) + _cpu_cases(full)
    if patterns:
        cases = [c for c in cases if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
    if size_override:
        cases = [c.with_size(size_override) for c in cases]
    return cases


def _load_avg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def run_benchmarks(settings: Settings) -> dict[str, Any]:
    """Measure and return the result document (no printing of tables, no files)."""
    # Other processes on the CPUs change every CPU number (and GPU launch overhead): record it.
    load_before = _load_avg()
    cases = _select_cases(settings.full, settings.patterns, settings.size_override)
    runners: dict[str, Runner | None] = {}
    reasons: dict[str, str] = {}
    load_failed: dict[str, bool] = {}
    sides: dict[str, str] = {}
    for name in settings.impls:
        runner, reason, load_failed[name] = _load(name)
        runners[name] = runner
        if runner is None:
            reasons[name] = reason or "unavailable"  # said once, below the table
            sides[name] = "gpu" if name in ("cugrad", "cupy", "torch", "jax") else "cpu"
        else:
            sides[name] = runner.side
    live = {n: r for n, r in runners.items() if r is not None}
    cpu_engine = _cpu_engine_first_use() if "cugrad-numpy" in live else None
    gpu = _gpu_info(live)
    small = settings.size_override is not None

    copy_gbps: dict[str, float | None] = {"gpu": None, "cpu": None}
    copy_method = {}
    device_runner = next(
        (
            r
            for r in live.values()
            if isinstance(r, (CupyEventRunner, TorchRunner))
            and getattr(r, "device", "cuda") == "cuda"
        ),
        None,
    )
    if device_runner is not None and any(c.side == "gpu" for c in cases):
        nbytes = (4 if small else (1024 if settings.full else 256)) * _MiB
        copy_gbps["gpu"], copy_method["gpu"] = _copy_gbps_device(device_runner, nbytes, 20)
        _log(f"device copy: {copy_gbps['gpu']:.1f} GB/s ({copy_method['gpu']})")
    nbytes = (4 if small else (256 if settings.full else 64)) * _MiB
    copy_gbps["cpu"] = _copy_gbps_host(nbytes, 7 if settings.full else 5)
    copy_method["cpu"] = "np.copyto host memory"
    _log(f"host copy: {copy_gbps['cpu']:.1f} GB/s")

    rng = np.random.default_rng(_SEED)
    rows: list[dict[str, Any]] = []
    gpu_cache = gpu["l2_bytes"] if gpu else 50 * _MiB
    for side in ("gpu", "cpu"):
        side_cases = [c for c in cases if c.side == side]
        side_names = [n for n in settings.impls if sides[n] == side]
        if not side_cases or not side_names:
            continue
        for name in side_names:
            if runners[name] is None:
                for case in side_cases:
                    rows.append({**_entry(case, name), "skipped_reason": reasons[name]})
        side_runners = {n: runners[n] for n in side_names if runners[n] is not None}
        if not side_runners:
            continue
        cache = gpu_cache if side == "gpu" else _last_level_cache_bytes()
        compile_cases = [c for c in side_cases if c.kind.startswith("compile")]
        for case in side_cases:
            if case.kind.startswith("compile"):
                continue
            _log(f"[{side}] {case.name} ({'x'.join(map(str, case.shape))})")
            rows.extend(_run_gradient_case(case, side_runners, settings, cache, rng))
        if compile_cases:
            _log(f"[{side}] compile time (fresh processes)")
            rows.extend(_run_compile_cases(compile_cases, side_runners, settings))

    _derive(rows, copy_gbps, sides)
    repo = find_repo_root()
    host = host_description()
    load_after = _load_avg()
    return {
        "device": gpu["name"] if gpu else host,
        "commit": git_commit(repo),
        "commit_dirty": _git_dirty(repo),
        "date": datetime.date.today().isoformat(),
        "copy_gbps": copy_gbps["gpu"] if copy_gbps["gpu"] else copy_gbps["cpu"],
        "copy_method": copy_method["gpu"] if copy_gbps["gpu"] else copy_method["cpu"],
        "host_copy_gbps": copy_gbps["cpu"],
        "host": host,
        "host_load_avg": {"before": load_before, "after": load_after},
        "cugrad_numpy_threads": _cugrad_numpy_threads(),
        "cpu_engine": cpu_engine,
        "gpu": gpu,
        "mode": "full" if settings.full else "quick",
        "size_override": settings.size_override,
        "versions": _versions(live),
        "impls": {
            n: {
                "side": sides[n],
                "available": runners[n] is not None,
                "reason": reasons.get(n),
                "load_failed": load_failed[n],
                "timer": runners[n].timer if runners[n] is not None else None,
            }
            for n in settings.impls
        },
        "cases": rows,
    }


# --------------------------------------------------------------------------------------------------
# reporting


def _fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    if t >= 1:
        return f"{t:.3f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.3f} ms"
    return f"{t * 1e6:.2f} us"


_COLUMNS = (
    "case",
    "impl",
    "median",
    "GB/s",
    "% of copy",
    "time / cugrad",
    "exact",
    "max abs diff",
    "note",
)


def _table_rows(doc: dict[str, Any]) -> list[list[str]]:
    unavailable = {n for n, info in doc["impls"].items() if not info["available"]}
    out = []
    for r in doc["cases"]:
        if r["impl"] in unavailable:
            continue  # listed once below the table instead of once per case
        note = r.get("error") or r.get("skipped_reason") or ""
        if r["median_s"] and r.get("checked_on", "full") != "full":
            note = f"checked on {r['checked_on']}"
        exact = r.get("exact")
        out.append(
            [
                r["case"],
                r["impl"],
                _fmt_time(r["median_s"]),
                f"{r['gbps']:.1f}" if "gbps" in r else "-",
                f"{100 * r['copy_fraction']:.0f}%" if "copy_fraction" in r else "-",
                f"{r['time_vs_cugrad']:.2f}x" if "time_vs_cugrad" in r else "-",
                "-" if exact is None else ("yes" if exact else "no"),
                f"{r['max_abs_diff']:.2g}" if "max_abs_diff" in r else "-",
                note,
            ]
        )
    return out


def _header_lines(doc: dict[str, Any]) -> list[str]:
    lines = [
        f"device: {doc['device']}",
        f"host: {doc['host']}",
        f"commit: {doc['commit']}" + (" (uncommitted changes)" if doc["commit_dirty"] else ""),
        f"date: {doc['date']}   mode: {doc['mode']}   cugrad NumPy-backend threads: "
        f"{doc.get('cugrad_numpy_threads')}",
        f"load average (1, 5, 15 min) before: {doc['host_load_avg']['before']}, after: "
        f"{doc['host_load_avg']['after']} (includes this run)",
        f"copy ceiling: {doc['copy_gbps']:.1f} GB/s ({doc['copy_method']}); "
        f"host copy {doc['host_copy_gbps']:.1f} GB/s",
    ]
    engine = doc.get("cpu_engine")
    if engine and engine.get("seconds"):
        how = {True: "loaded from numba's disk cache", False: "compiled (the cache was empty)",
               None: "compiled or loaded"}[engine["cache_filled_before"]]
        lines.append(f"compiled CPU engine (numba {engine['numba']}): {how} in "
                     f"{sum(engine['seconds'].values()):.1f} s before timing ("
                     + ", ".join(f"{k} {v:.1f} s" for k, v in engine["seconds"].items()) + ")")
    elif engine:
        lines.append(f"compiled CPU engine: not used ({engine['reason']})")
    if doc.get("size_override"):
        lines.append(f"size override: every dimension = {doc['size_override']} (not a benchmark)")
    return lines


def _cpu_engine_first_use() -> dict[str, Any]:
    """Load or compile the compiled CPU engine before timing (its first use is not a sample).

    Returns what the header reports: numba's version, whether the disk cache held the code, and
    the seconds per compiled signature, or why the engine is not used.
    """
    from cugrad import _numba_backend

    try:
        facts = _numba_backend.info()
        if not facts["available"] or facts["engine"] == "numpy" or facts["load_error"]:
            reason = ("numba not installed" if not facts["available"] else
                      "CUGRAD_CPU_ENGINE=numpy" if facts["engine"] == "numpy" else
                      facts["load_error"])
            return {"numba": facts["numba"], "reason": reason}
        _log("[cpu] loading the compiled CPU engine (numba; compiles when its cache is empty)")
        seconds = _numba_backend.warm_up()
    except Exception as exc:  # noqa: BLE001 - reported, and the NumPy backend still runs
        return {"numba": None, "reason": f"{type(exc).__name__}: {exc}"}
    return {"numba": facts["numba"], "cache_filled_before": facts["cache_filled"],
            "seconds": seconds}


def _footer_lines(doc: dict[str, Any]) -> list[str]:
    lines = [
        "'time / cugrad' is this row's median over cugrad's on the same case "
        "(cugrad-numpy for CPU rows); GB/s counts each input and output once."
    ]
    return lines + skipped_lines(doc)


def skipped_lines(doc: dict[str, Any]) -> list[str]:
    """One line per reason: which implementations were skipped (and what they are), and why."""
    by_reason: dict[str, list[str]] = {}
    for name, info in doc["impls"].items():
        if not info["available"]:
            by_reason.setdefault(info["reason"], []).append(name)
    return [
        "skipped "
        + ", ".join(f"{n} ({IMPL_DESCRIPTIONS.get(n, n)})" for n in names)
        + f": {reason}"
        for reason, names in by_reason.items()
    ]


def format_text(doc: dict[str, Any]) -> str:
    """Format the result as an aligned plain-text table (what ``run`` prints)."""
    rows = [list(_COLUMNS)] + _table_rows(doc)
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    lines = _header_lines(doc) + [""]
    for k, row in enumerate(rows):
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        lines.append("  ".join(cells) + "  " + row[-1])
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  ----")
    return "\n".join(lines + [""] + _footer_lines(doc)) + "\n"


def format_markdown(doc: dict[str, Any]) -> str:
    """Format the result as markdown, with the same numbers as the text table."""
    lines = ["# cugrad benchmark: " + doc["device"], ""]
    lines += [f"- {line}" for line in _header_lines(doc)] + [""]
    lines.append("| " + " | ".join(_COLUMNS) + " |")
    lines.append("|" + "|".join("---" for _ in _COLUMNS) + "|")
    for row in _table_rows(doc):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    lines += [""] + [f"- {line}" for line in _footer_lines(doc)]
    return "\n".join(lines) + "\n"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _finite(obj: Any) -> Any:
    """Replace inf/NaN (e.g. the difference to a NaN) by None: strict JSON has no such numbers."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def save(doc: dict[str, Any], out: Path) -> Path:
    """Write the result as JSON plus a ``.md`` table beside it; return the JSON path.

    ``out`` is an existing directory (the files are named ``<device-slug>-<date>[-k].json`` and
    never overwrite anything) or a ``.json`` file name in an existing directory (refused if it or
    its ``.md`` exists). No directory is ever created.
    """
    path = _result_path(doc, out)
    text = json.dumps(_finite(doc), indent=2, default=_json_default, allow_nan=False)
    for target, content in ((path, text + "\n"), (path.with_suffix(".md"), format_markdown(doc))):
        # "x": exclusive creation, so that a file that appeared meanwhile is never replaced.
        with open(target, "x", encoding="utf-8") as fh:
            fh.write(content)
    return path


def _result_path(doc: dict[str, Any], out: Path) -> Path:
    if out.is_dir():
        slug = _slug(doc["gpu"]["name"]) if doc.get("gpu") else _cpu_slug()
        stem = f"{slug}-{doc['date']}"
        path, k = out / f"{stem}.json", 2
        while path.exists() or path.with_suffix(".md").exists():
            path, k = out / f"{stem}-{k}.json", k + 1
        return path
    problem = check_out(out)
    if problem:
        raise OutError(problem)
    return out


class OutError(ValueError):
    """``--out`` names a place the results cannot be written to; the message says why."""


def check_out(out: Path) -> str | None:
    """Why results cannot be written to ``out`` (an existing directory or a new .json), or None."""
    if out.is_dir():
        return None
    if out.suffix != ".json":
        if out.exists():
            return (
                f"--out {out} exists and is not a directory; give a directory or a new .json file"
            )
        return (
            f"--out {out}: no such directory (cugrad bench creates none); give an existing "
            "directory or a .json file name"
        )
    for target in (out, out.with_suffix(".md")):
        if os.path.lexists(target):
            return f"--out {out}: {target} exists; choose another name (results never overwrite)"
    parent = out.parent
    if not parent.is_dir():
        return f"--out {out}: directory {parent} does not exist (cugrad bench creates none)"
    return None


# --------------------------------------------------------------------------------------------------
# command line


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the benchmark options to ``parser`` (a parser or a ``cugrad bench`` subparser)."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_true",
        help="a few small cases, seconds (the default unless --cases is given)",
    )
    mode.add_argument("--full", action="store_true", help="every case (minutes)")
    parser.add_argument(
        "--cases",
        metavar="PATTERN",
        default=None,
        help="comma-separated fnmatch patterns on case names, e.g. '3d-f32-*'; "
        "chosen from the full list unless --quick is given",
    )
    parser.add_argument(
        "--impls",
        default=",".join(IMPL_NAMES),
        help="comma-separated implementations (default: %(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="N",
        help="timed repetitions per case (default: 15/30 GPU, 5/7 CPU)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR|FILE.json",
        help="save the results: into an existing directory as <device>-<date>.json and .md, or "
        "as FILE.json and FILE.md (new files in an existing directory); default: print only",
    )
    parser.add_argument(
        "--no-save", action="store_true", help="print only, even when --out is given"
    )
    # For tests and smoke runs: shrink every gradient case, and the limit for full-array checks.
    parser.add_argument("--size-override", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--check-limit-mb", type=float, default=1024, help=argparse.SUPPRESS)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed ``args``; return the exit code.

    Exit codes: 0 when every selected cugrad implementation that could run gave numpy's exact
    result (peers may be skipped or wrong: that is reported, not a failure); 1 when a cugrad
    implementation was wrong or raised, or nothing at all could be timed; 2 for bad options.
    """
    impls = [s.strip() for s in str(getattr(args, "impls", "")).split(",") if s.strip()]
    unknown = [n for n in impls if n not in IMPLS]
    if not impls or unknown:
        what = f"unknown implementation(s) {', '.join(unknown)}" if unknown else "no implementation"
        return _usage_error(f"--impls: {what}; choose from {', '.join(IMPLS)}")
    patterns = [p.strip() for p in (getattr(args, "cases", None) or "").split(",") if p.strip()]
    full = bool(getattr(args, "full", False)) or (
        bool(patterns) and not getattr(args, "quick", False)
    )
    if getattr(args, "repeat", None) is not None and args.repeat < 1:
        return _usage_error(f"--repeat must be at least 1, got {args.repeat}")
    save_to = None if getattr(args, "no_save", False) else getattr(args, "out", None)
    if save_to is not None:
        problem = check_out(save_to)
        if problem:  # before minutes of measuring, not after
            return _usage_error(problem)
    settings = Settings(
        full=full,
        patterns=patterns,
        impls=impls,
        repeat=getattr(args, "repeat", None),
        out=getattr(args, "out", None),
        size_override=getattr(args, "size_override", None),
        check_limit_bytes=int(getattr(args, "check_limit_mb", 1024) * _MiB),
    )
    if not _select_cases(full, patterns, None):
        return _usage_error(f"--cases: no case matches {', '.join(patterns)}")
    doc = run_benchmarks(settings)
    sys.stdout.write(format_text(doc))
    if save_to is not None:
        try:
            path = save(doc, save_to)
        except (OutError, OSError) as exc:
            print(f"cugrad: error: cannot save the results: {exc}", file=sys.stderr)
            return 1
        print(f"saved {path} and {path.with_suffix('.md').name}")
    elif not getattr(args, "no_save", False):
        print("not saved (add --out DIR or --out FILE.json to keep the results)")
    bad = [
        r
        for r in doc["cases"]
        if r["impl"] in _REFERENCE_IMPL.values() and r["median_s"] is None and "error" in r
    ]
    for r in bad:
        print(f"cugrad: error: {r['impl']} FAILED on {r['case']}: {r['error']}", file=sys.stderr)
    broken = [
        n
        for n, info in doc["impls"].items()
        if n in _REFERENCE_IMPL.values() and info["load_failed"]
    ]
    for n in broken:
        print(f"cugrad: error: {n} FAILED: {doc['impls'][n]['reason']}", file=sys.stderr)
    if bad or broken or not any(r["median_s"] for r in doc["cases"]):
        return 1
    return 0


def _usage_error(message: str) -> int:
    print(f"cugrad: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python benchmarks/run.py``.

    Unlike ``cugrad bench``, the script saves by default: into ``benchmarks/results`` of the
    checkout it is run from, the folder the benchmark log (``benchmarks/NOTES.md``) refers to.
    """
    parser = configure_parser(
        argparse.ArgumentParser(
            prog="benchmarks/run.py", description="Benchmark cugrad.gradient against its peers."
        )
    )
    repo = find_repo_root(Path(__file__).resolve().parent)
    results = repo / "benchmarks" / "results" if repo else None
    if results is not None and results.is_dir():
        parser.set_defaults(out=results)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
