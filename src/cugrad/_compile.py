"""Compile every cugrad kernel ahead of time: ``cugrad.compile_kernels`` and ``cugrad compile``.

Two uses:

* With ``archs`` (for example ``(75, 80, 90)``, or ``"supported"`` for every architecture cugrad
  targets that the installed NVRTC supports, from ``nvrtcGetSupportedArchs``) it needs no GPU and no
  driver, only the NVRTC library (the ``nvidia-cuda-nvrtc-cu12`` wheel, the ``nvrtc`` extra, or a
  CUDA toolkit): NVRTC is driven directly through ctypes, every fast-path instantiation and the
  device code of every general-path kernel are compiled for each architecture, and any error is
  reported with NVRTC's log. This proves that the kernels compile; it does not fill CuPy's kernel
  cache (CuPy keys its cache on its own code strings, options and NVRTC, and compiles for the
  device it runs on). CI uses it to check the kernels on machines without a GPU.
* Without ``archs`` on a GPU machine it fills CuPy's kernel cache for the present device, through
  CuPy and the backend's own kernel factory (so the cache keys are the ones later calls look up):
  every fast-path function is compiled, and every general-path ElementwiseKernel is built by
  launching it once on tiny arrays. With CuPy >= 14.2 later processes then start without compiling.

The options are the ones the backend gives CuPy (``cugrad._kernels.COMPILE_OPTIONS``) plus the
architecture, as CuPy passes it (``-arch=sm_XX``).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import importlib.util
import os
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cugrad import _kernels

# The GPU generations cugrad targets, Volta to Blackwell. Each check compiles only those the
# installed NVRTC supports (nvrtcGetSupportedArchs): CUDA 13's NVRTC and ptxas dropped sm_70 and
# sm_72, and sm_100/sm_120 arrived with CUDA 12.8.
TARGET_ARCHS: tuple[int, ...] = (70, 75, 80, 86, 89, 90, 100, 120)
SUPPORTED = "supported"  # as an --arch value: every target architecture this NVRTC supports


# ------------------------------------------------------------------------------------------------
# NVRTC through ctypes
# ------------------------------------------------------------------------------------------------


class NVRTCError(RuntimeError):
    """NVRTC could not be loaded, or a compilation failed (the message holds NVRTC's log)."""


def nvrtc_candidates() -> list[str]:
    """Where libnvrtc may be, most specific first: the pip wheel, the loader path, CUDA_PATH."""
    candidates: list[str] = []
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        for sub in ("cuda_nvrtc/lib", "cu13/lib", "cu12/lib"):
            lib_dir = Path(root) / sub
            candidates += sorted(str(p) for p in lib_dir.glob("libnvrtc.so*")
                                 if "builtins" not in p.name and "alt" not in p.name)
            candidates += sorted(str(p) for p in lib_dir.glob("nvrtc64_*.dll"))
    found = ctypes.util.find_library("nvrtc")
    if found:
        candidates.append(found)
    for env in ("CUDA_PATH", "CUDA_HOME"):
        base = os.environ.get(env)
        if base:
            for pattern in ("lib64/libnvrtc.so*", "lib/libnvrtc.so*", "bin/nvrtc64_*.dll"):
                candidates += sorted(str(p) for p in Path(base).glob(pattern)
                                     if "builtins" not in p.name)
    return list(dict.fromkeys(candidates))


class NVRTC:
    """The few NVRTC entry points cugrad needs."""

    def __init__(self, path: str | None = None) -> None:
        errors = []
        for candidate in [path] if path else nvrtc_candidates():
            try:
                self.lib = ctypes.CDLL(candidate)
                self.path = candidate
                break
            except OSError as exc:
                errors.append(f"{candidate}: {exc}")
        else:
            tried = "; ".join(errors) or "no candidate found"
            raise NVRTCError(
                "cannot load the NVRTC library (" + tried + "); install it with "
                'pip install ".[nvrtc]" in a cugrad checkout (the nvidia-cuda-nvrtc-cu12 wheel) '
                "or set CUDA_PATH"
            )
        lib = self.lib
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        lib.nvrtcCreateProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p,
                                           ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p,
                                           ctypes.c_void_p]
        lib.nvrtcCompileProgram.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_char_p)]
        lib.nvrtcGetProgramLogSize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        lib.nvrtcGetProgramLog.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.nvrtcGetPTXSize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        lib.nvrtcGetPTX.argtypes = [ctypes.c_void_p, ctypes.c_char_p]

    def version(self) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)))
        return major.value, minor.value

    def supported_archs(self) -> list[int]:
        count = ctypes.c_int()
        self._check(self.lib.nvrtcGetNumSupportedArchs(ctypes.byref(count)))
        archs = (ctypes.c_int * count.value)()
        self._check(self.lib.nvrtcGetSupportedArchs(archs))
        return list(archs)

    def _check(self, status: int) -> None:
        if status != 0:
            raise NVRTCError(self.lib.nvrtcGetErrorString(status).decode())

    def compile(self, source: str, options: Sequence[str], name: str = "cugrad.cu") -> str:
        """Compile one program; return NVRTC's log (warnings), raise NVRTCError with it on error."""
        return self._build(source, options, name, want_ptx=False)[0]

    def ptx(self, source: str, options: Sequence[str], name: str = "cugrad.cu") -> str:
        """Compile one program for a ``-arch=compute_XX`` and return its PTX."""
        return self._build(source, options, name, want_ptx=True)[1]

    def _build(self, source: str, options: Sequence[str], name: str,
               want_ptx: bool) -> tuple[str, str]:
        prog = ctypes.c_void_p()
        self._check(self.lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(),
                                                name.encode(), 0, None, None))
        try:
            opts = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
            status = self.lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            self.lib.nvrtcGetProgramLog(prog, log)
            text = log.value.decode(errors="replace")
            if status != 0:
                reason = self.lib.nvrtcGetErrorString(status).decode()
                raise NVRTCError(f"{name} ({' '.join(options)}): {reason}\n{text}")
            ptx = ""
            if want_ptx:
                self._check(self.lib.nvrtcGetPTXSize(prog, ctypes.byref(size)))
                buffer = ctypes.create_string_buffer(size.value)
                self._check(self.lib.nvrtcGetPTX(prog, buffer))
                ptx = buffer.value.decode(errors="replace")
            return text, ptx
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


def default_archs(nvrtc: NVRTC | None = None) -> list[int]:
    """The target architectures (:data:`TARGET_ARCHS`) that the installed NVRTC can compile for.

    Raises :class:`NVRTCError` if NVRTC cannot be loaded.
    """
    supported = set((nvrtc or NVRTC()).supported_archs())
    return [a for a in TARGET_ARCHS if a in supported]


# ------------------------------------------------------------------------------------------------
# The harness: every variant instantiated in code NVRTC can compile without CuPy's headers
# ------------------------------------------------------------------------------------------------

# Stand-ins for what CuPy's ElementwiseKernel provides: a raw strided array indexed like CArray,
# and a complex element type with real(), imag() and a (re, im) constructor like thrust::complex.
_GENERAL_SUPPORT = """
template <class T>
struct cg_check_complex {
    T re_, im_;
    __device__ cg_check_complex() {}
    __device__ cg_check_complex(T re, T im) : re_(re), im_(im) {}
    __device__ T real() const { return re_; }
    __device__ T imag() const { return im_; }
};
template <class T>
struct cg_check_array {
    T* data;
    long long shape[4];
    long long strides[4];
    int ndim;
    __device__ T& operator[](long long i) const {
        long long off = 0;
        for (int d = ndim - 1; d > 0; --d) {
            off += strides[d] * (i % shape[d]);
            i /= shape[d];
        }
        off += strides[0] * i;
        return *reinterpret_cast<T*>(reinterpret_cast<char*>(data) + off);
    }
};
"""

_CHECK_STORAGE = {
    np.dtype(np.bool_): "bool",
    np.dtype(np.float16): "unsigned short",
    np.dtype(np.complex64): "cg_check_complex<float>",
    np.dtype(np.complex128): "cg_check_complex<double>",
    **_kernels.C_TYPES,
}


def fast_harness() -> str:
    """The fast path's code string with every instantiation made explicit."""
    lines = [_kernels.fast_module_code()]
    for v in _kernels.all_fast_variants():
        lines.append(f"template __global__ void {v.expression}(const cg_fast_params);")
    return "\n".join(lines)


def general_harness(variants: Iterable[_kernels.GeneralVariant] | None = None) -> str:
    """The general path's device code, one kernel per variant, around ``cg_general_point``."""
    lines = [_kernels.general_preamble(), _GENERAL_SUPPORT]
    for v in variants if variants is not None else _kernels.representative_general_variants():
        s = {k: _CHECK_STORAGE[d] for k, d in (("f", v.in_dtype), ("o", v.out_dtype))}
        w = [_CHECK_STORAGE[d] for d in v.padded_slots]
        lines.append(
            f'extern "C" __global__ void {v.name}(cg_check_array<{s["o"]}> out, '
            f'cg_check_array<{s["f"]}> f, const long long* regs, const {w[0]}* w0, '
            f'const {w[1]}* w1, const {w[2]}* w2, const bool* flag, long long size, long long n, '
            "long long inner, long long orows, long long lo, long long frows, long long fstart) {\n"
            "    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;\n"
            "         i += (long long)gridDim.x * blockDim.x) {\n"
            f"        cg_general_point<{v.template_args}>(out[i], f, regs, w0, w1, w2, flag, i, n,"
            " inner, orows, lo, frows, fstart);\n"
            "    }\n"
            "}"
        )
    return "\n".join(lines)


@dataclass
class CompileReport:
    """What was built, for which architectures, and NVRTC's warnings."""

    archs: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _arch_option(arch: int | str) -> tuple[str, str]:
    text = str(arch).strip().lower()
    for prefix in ("sm_", "compute_"):
        if text.startswith(prefix):
            return f"-arch={text}", text
    return f"-arch=sm_{int(text)}", f"sm_{int(text)}"


@dataclass(frozen=True)
class ProgramResult:
    """One program (the fast path or the general path) compiled for one architecture."""

    program: str
    arch: str
    log: str
    error: str | None  # None when it compiled


def compile_programs(archs: Iterable[int | str], nvrtc: NVRTC | None = None,
                     workers: int | None = None) -> list[ProgramResult]:
    """Compile both programs for every architecture, on ``workers`` threads (NVRTC drops the GIL).

    Every job runs to the end; failures are returned, not raised.
    """
    nvrtc = nvrtc or NVRTC()
    programs = {"fast": fast_harness(), "general": general_harness()}
    jobs = [(name, *_arch_option(arch)) for arch in archs for name in programs]

    def one(job: tuple[str, str, str]) -> ProgramResult:
        name, option, label = job
        try:
            log = nvrtc.compile(programs[name], (option, *_kernels.COMPILE_OPTIONS),
                                name=f"cugrad_{name}_{label}.cu")
        except NVRTCError as exc:
            return ProgramResult(name, label, "", str(exc))
        return ProgramResult(name, label, log, None)

    workers = workers or max(1, min(len(jobs), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, jobs))


def compile_with_nvrtc(archs: Iterable[int | str], nvrtc: NVRTC | None = None,
                       workers: int | None = None) -> CompileReport:
    """Compile every variant for every architecture with NVRTC (no GPU needed).

    Raises :class:`NVRTCError` naming each program and architecture that failed, with NVRTC's
    log.
    """
    start = time.perf_counter()
    results = compile_programs(archs, nvrtc, workers)
    failures = [r for r in results if r.error is not None]
    if failures:
        raise NVRTCError("\n\n".join(f"{r.program} kernels for {r.arch}: {r.error}"
                                      for r in failures))
    report = CompileReport()
    report.archs = list(dict.fromkeys(r.arch for r in results))
    report.variants = [v.name for v in _kernels.all_fast_variants()] + [
        v.name for v in _kernels.representative_general_variants()
    ]
    report.warnings = sorted({line for r in results for line in r.log.splitlines()
                              if line.strip()})
    report.seconds = time.perf_counter() - start
    return report


def fill_cupy_cache() -> CompileReport:
    """Compile every variant through CuPy for the current device (fills CuPy's kernel cache)."""
    import cupy

    from cugrad import _cupy_backend

    start = time.perf_counter()
    report = CompileReport(archs=[f"device {cupy.cuda.Device().id} "
                                  f"(sm_{cupy.cuda.Device().compute_capability})"])
    for v in _kernels.all_fast_variants():
        _kernels.fast_kernel(v)
        report.variants.append(v.name)
    for v in _kernels.representative_general_variants():
        for ndim in (1, 2, 3):
            shape = (3,) * ndim
            f = cupy.zeros(shape, v.in_dtype)
            out = cupy.zeros(shape, v.out_dtype)
            args = (_cupy_backend._bits(f), *_cupy_backend.general_dummy_tables(v, cupy),
                    3, 1, 3, 0, 3, 0)
            _kernels.call_general(v, args, _cupy_backend._bits(out))
        report.variants.append(v.name)
    cupy.cuda.Device().synchronize()  # surface launch errors here, not in a later call
    report.seconds = time.perf_counter() - start
    return report


def compile_kernels(archs: Iterable[int | str] | None = None) -> CompileReport:
    """Compile every cugrad kernel ahead of time.

    Parameters
    ----------
    archs : iterable of int or str, or "supported", optional
        GPU architectures such as ``(75, 80, 90)`` or ``("sm_90",)``, or ``"supported"`` for every
        architecture of :data:`TARGET_ARCHS` that the installed NVRTC supports. Given, the kernels
        are compiled with NVRTC alone (no GPU, no driver, no CuPy needed): a check that they
        compile, which does not fill CuPy's kernel cache. Omitted, CuPy compiles them for the
        current GPU and stores them in its kernel cache, where later calls (and, with CuPy >= 14.2,
        later processes) find them.

    Returns
    -------
    CompileReport
        The architectures, the variant names, NVRTC's warnings and the time taken.

    Raises
    ------
    NVRTCError
        If NVRTC cannot be loaded or a kernel fails to compile (the message holds NVRTC's log).
    RuntimeError
        Without ``archs``, if CuPy or a usable GPU is missing (the message says what ``archs``
        does instead).

    Examples
    --------
    >>> import cugrad
    >>> report = cugrad.compile_kernels(archs=(90,))  # doctest: +SKIP
    >>> report.archs  # doctest: +SKIP
    ['sm_90']
    """
    if archs is not None:
        if isinstance(archs, str) and archs.strip().lower() == SUPPORTED:
            archs = [SUPPORTED]
        archs = list(archs)
        if any(isinstance(a, str) and a.strip().lower() == SUPPORTED for a in archs):
            nvrtc = NVRTC()
            return compile_with_nvrtc(default_archs(nvrtc), nvrtc)
        return compile_with_nvrtc(archs)
    from cugrad import _backend

    usable, reason = _backend.gpu_status()
    if not usable:
        raise RuntimeError(no_gpu_message(reason))
    return fill_cupy_cache()


def no_gpu_message(reason: str) -> str:
    """What ``cugrad compile`` without ``--arch`` says where no GPU is usable."""
    return (
        "without --arch, cugrad compile fills CuPy's kernel cache for this machine's GPU (so that "
        "later calls and processes start without compiling); that needs CuPy and a usable GPU, "
        f"and none is usable here: {reason}. Run it where the GPU is (in a container: at "
        "container start, with CUPY_CACHE_DIR on a volume). --arch LIST (e.g. --arch 80,90), or "
        "--arch alone for every architecture this NVRTC supports, only checks with NVRTC that "
        "every kernel compiles: no GPU needed, and CuPy's cache is not filled"
    )


# ------------------------------------------------------------------------------------------------
# cugrad compile
# ------------------------------------------------------------------------------------------------


def _parse_archs(text: str) -> list[str]:
    if text.strip().lower() == SUPPORTED:
        return [SUPPORTED]
    archs = [a.strip() for a in text.split(",") if a.strip()]
    if not archs:
        raise argparse.ArgumentTypeError("give architectures such as 75,80,90, or 'supported'")
    for a in archs:
        digits = a.lower().removeprefix("sm_").removeprefix("compute_")
        if not digits.isdigit() or not 2 <= len(digits) <= 3:
            raise argparse.ArgumentTypeError(f"not an architecture: {a!r} (use e.g. 80 or sm_80)")
    return archs


def _unsupported_archs(archs: list[str]) -> str | None:
    """Why this NVRTC cannot compile for ``archs`` (asked before any work), or None."""
    if archs == [SUPPORTED]:
        return None
    supported = NVRTC().supported_archs()
    unknown = [
        a for a in archs
        if int(a.lower().removeprefix("sm_").removeprefix("compute_")) not in supported
    ]  # fmt: skip
    if not unknown:
        return None
    return (
        f"--arch: NVRTC cannot compile for {', '.join(unknown)}; it supports "
        f"{', '.join(str(n) for n in supported)} (--arch supported means all of them)"
    )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cugrad compile``."""
    parser.description = (
        "Compile every cugrad kernel. Without --arch, CuPy compiles them for this machine's GPU "
        "and stores them in its kernel cache (CUPY_CACHE_DIR), so later calls and processes start "
        "without compiling; this needs the GPU. With --arch, NVRTC alone compiles them for those "
        "architectures: a check that needs no GPU and does not fill CuPy's cache."
    )
    parser.add_argument(
        "--arch", type=_parse_archs, default=None, nargs="?", const=[SUPPORTED], metavar="LIST",
        help="check with NVRTC for these comma-separated architectures, e.g. 80,90; alone (or "
        "'supported'): every architecture of " + ",".join(map(str, TARGET_ARCHS))
        + " that the installed NVRTC supports. Without --arch: fill CuPy's cache for this GPU",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")


def run(args: argparse.Namespace) -> int:
    """Run ``cugrad compile``; 0 when every kernel compiled, 1 if one did not, 2 for a bad --arch."""
    try:
        problem = _unsupported_archs(args.arch) if args.arch is not None else None
        if problem:  # at once, not after compiling for the architectures that do exist
            print(f"cugrad: error: {problem}", file=sys.stderr)
            return 2
        report = compile_kernels(args.arch)
    except (NVRTCError, RuntimeError, ImportError) as exc:
        # One line, as every cugrad error; NVRTC's first log line names the problem.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        lines = lines or [type(exc).__name__]
        more = f" (and {len(lines) - 1} more lines of NVRTC's log)" if len(lines) > 1 else ""
        print(f"cugrad: error: {lines[0]}{more}", file=sys.stderr)
        return 1
    if not getattr(args, "quiet", False):
        for name in report.variants:
            print(f"{name}: {', '.join(report.archs)}")
        for line in report.warnings:
            print(f"warning: {line}")
    print(f"cugrad compile: {len(report.variants)} kernels x {len(report.archs)} "
          f"architecture(s) ({', '.join(report.archs)}) compiled in {report.seconds:.1f} s")
    if args.arch is not None:
        print("cugrad compile: a compile check with NVRTC; CuPy's kernel cache is filled only by "
              "`cugrad compile` without --arch, on the GPU machine")
    else:
        print(f"cugrad compile: stored in CuPy's kernel cache ({_cache_dir()})")
    return 0


def _cache_dir() -> str:
    return os.path.expanduser(os.environ.get("CUPY_CACHE_DIR") or "~/.cupy/kernel_cache")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cugrad compile")
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
