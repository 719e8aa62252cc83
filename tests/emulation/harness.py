"""Build cugrad's kernel sources for the CPU and call them on numpy buffers.

The translation unit is the shim (``cuda_shim.h``) followed by the very code strings the CuPy
backend compiles (``cugrad._kernels.fast_module_code()`` and ``general_preamble()``), followed by
``extern "C"`` entry points: one per fast-path instantiation (runs chosen blocks of a launch) and
one per general-path kernel (loops over the output elements, as the ElementwiseKernel does).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from cugrad import _kernels

SHIM = Path(__file__).with_name("cuda_shim.h")

# IEEE arithmetic as on the device: no contraction, no fast-math; type punning through unions and
# casts as the CUDA sources do it.
CXXFLAGS = (
    "-std=c++17", "-O1", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math",
    "-fno-strict-aliasing", "-w",
)

# The element type each dtype is stored as, as the kernels see it.
STORAGE = {
    np.dtype(np.bool_): "bool",
    np.dtype(np.float16): "unsigned short",
    np.dtype(np.complex64): "std::complex<float>",
    np.dtype(np.complex128): "std::complex<double>",
    **_kernels.C_TYPES,
}


def find_compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _fast_entry(v: _kernels.FastVariant) -> str:
    return (
        f'extern "C" void {v.name}(const void* params, long long grid, long long first, '
        "long long last) {\n"
        "    const cg_fast_params& p = *static_cast<const cg_fast_params*>(params);\n"
        f"    cg_emulate_launch((unsigned int)grid, CG_FAST_BLOCK, first, last, [&] {{ "
        f"{v.expression}(p); }});\n"
        "}\n"
    )


def _general_entry(v: _kernels.GeneralVariant) -> str:
    t_out, t_f = STORAGE[v.out_dtype], STORAGE[v.in_dtype]
    t_w = [STORAGE[d] for d in v.padded_slots]
    return (
        f'extern "C" void {v.name}(void* out, const long long* oshape, const long long* ostrides,\n'
        "        int ondim, void* f, const long long* fshape, const long long* fstrides,\n"
        "        int fndim, const long long* regs, const void* w0, const void* w1,\n"
        "        const void* w2,\n"
        "        const bool* flag, long long n, long long inner, long long orows, long long lo,\n"
        "        long long frows, long long fstart) {\n"
        f"    cg_emu_strided<{t_out}> o{{static_cast<{t_out}*>(out), oshape, ostrides, ondim}};\n"
        f"    cg_emu_strided<{t_f}> fa{{static_cast<{t_f}*>(f), fshape, fstrides, fndim}};\n"
        "    long long size = 1;\n"
        "    for (int d = 0; d < ondim; ++d) size *= oshape[d];\n"
        f"    const {t_w[0]}* a = static_cast<const {t_w[0]}*>(w0);\n"
        f"    const {t_w[1]}* b = static_cast<const {t_w[1]}*>(w1);\n"
        f"    const {t_w[2]}* c = static_cast<const {t_w[2]}*>(w2);\n"
        "    for (long long i = 0; i < size; ++i) {\n"
        f"        cg_general_point<{v.template_args}>(o[i], fa, regs, a, b, c, flag, i, n, inner,"
        " orows, lo, frows, fstart);\n"
        "    }\n"
        "}\n"
    )


_CONVERSIONS = """
extern "C" void cg_emu_float_to_half(const float* x, unsigned short* h, long long n) {
    for (long long i = 0; i < n; ++i) h[i] = cg_float_to_half(x[i]);
}
extern "C" void cg_emu_double_to_half(const double* x, unsigned short* h, long long n) {
    for (long long i = 0; i < n; ++i) h[i] = cg_double_to_half(x[i]);
}
extern "C" void cg_emu_half_to_float(const unsigned short* h, float* x, long long n) {
    for (long long i = 0; i < n; ++i) x[i] = cg_half_to_float(h[i]);
}
"""


def translation_unit(fast: list[_kernels.FastVariant],
                     general: list[_kernels.GeneralVariant]) -> str:
    """One library: the fast path's code string for the (one) tuning of ``fast``, the general
    path's preamble, and an entry point per variant."""
    tunings = {v.tuning for v in fast} or {_kernels.DEFAULT_TUNING}
    if len(tunings) != 1:
        raise ValueError("one emulation library holds the fast path of one tuning")
    parts = [
        f'#include "{SHIM.name}"',
        _kernels.fast_module_code(tunings.pop()),
        _kernels.general_preamble(),
        'extern "C" long long cg_emu_sizeof_params() { return sizeof(cg_fast_params); }',
        'extern "C" long long cg_emu_sizeof_axis() { return sizeof(cg_fast_axis); }',
        'extern "C" long long cg_emu_offsetof_f() { return offsetof(cg_fast_params, f); }',
        'extern "C" long long cg_emu_sizeof_rec() { return sizeof(cg_fast_rec); }',
        'extern "C" long long cg_emu_offsetof_rec_w() { return offsetof(cg_fast_rec, w); }',
        _CONVERSIONS,
    ]
    parts += [_fast_entry(v) for v in dict.fromkeys(fast)]
    parts += [_general_entry(v) for v in dict.fromkeys(general)]
    return "\n".join(parts)


class Emulator:
    """The compiled kernels of one build."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        for name, restype, argtypes in (
            ("cg_emu_sizeof_params", ctypes.c_longlong, []),
            ("cg_emu_sizeof_axis", ctypes.c_longlong, []),
            ("cg_emu_offsetof_f", ctypes.c_longlong, []),
            ("cg_emu_sizeof_rec", ctypes.c_longlong, []),
            ("cg_emu_offsetof_rec_w", ctypes.c_longlong, []),
            ("cg_emu_float_to_half", None, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_longlong]),
            ("cg_emu_double_to_half", None, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_longlong]),
            ("cg_emu_half_to_float", None, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_longlong]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes

    def convert(self, name: str, values: np.ndarray, out_dtype: Any) -> np.ndarray:
        """Run one of the header's float16 conversions over an array."""
        values = np.ascontiguousarray(values)
        out = np.empty(values.shape, out_dtype)
        getattr(self.lib, name)(values.ctypes.data, out.ctypes.data, values.size)
        return out

    def run_fast(self, variant: _kernels.FastVariant, params: np.ndarray, grid: int,
                 first_block: int = 0, last_block: int | None = None) -> None:
        fn = getattr(self.lib, variant.name)
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_longlong]
        fn(params.ctypes.data, grid, first_block, grid if last_block is None else last_block)

    def run_general(self, variant: _kernels.GeneralVariant, args: tuple[Any, ...],
                    out: np.ndarray) -> None:
        """Run the general kernel with the operands of ``_cupy_backend.general_args``."""
        f, regs, w0, w1, w2, flag, n, inner, orows, lo, frows, fstart = args
        fn = getattr(self.lib, variant.name)
        fn.restype = None
        ptr, ll = ctypes.c_void_p, ctypes.c_longlong
        fn.argtypes = [ptr, ptr, ptr, ctypes.c_int] * 2 + [ptr] * 5 + [ll] * 6
        keep = []

        def geometry(a: np.ndarray) -> list[Any]:
            shape = np.array(a.shape, np.int64)
            strides = np.array(a.strides, np.int64)
            keep.extend([shape, strides])
            return [a.ctypes.data, shape.ctypes.data, strides.ctypes.data, a.ndim]

        tables = [np.ascontiguousarray(t) for t in (regs, w0, w1, w2, flag)]
        assert tables[0].dtype == np.int64
        keep.extend(tables)
        fn(*geometry(out), *geometry(f), *[t.ctypes.data for t in tables],
           *[int(v) for v in (n, inner, orows, lo, frows, fstart)])


def build(workdir: Path, fast: list[_kernels.FastVariant],
          general: list[_kernels.GeneralVariant]) -> Emulator:
    """Compile the kernels (with the system C++ compiler) into a shared library and load it."""
    compiler = find_compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler found (tried $CXX, g++, c++, clang++)")
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(SHIM, workdir / SHIM.name)
    source = workdir / "cugrad_kernels_emulated.cpp"
    source.write_text(translation_unit(fast, general), encoding="utf-8")
    library = workdir / "cugrad_kernels_emulated.so"
    result = subprocess.run(
        [compiler, *CXXFLAGS, "-I", str(workdir), str(source), "-o", str(library)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"C++ build of the kernels failed:\n{result.stderr[-6000:]}")
    return Emulator(ctypes.CDLL(str(library)))
