"""The CUDA sources in ``cugrad.kernels`` and the memoised CuPy objects compiled from them.

Kernel sources are files (``kernels/*.cu``, ``kernels/*.cuh``), read once and concatenated into one
code string per module: CuPy's disk cache hashes the code string, not the files an ``#include``
would pull in, so concatenation keeps the cache honest when a header changes. Every compiled object
is cached per device behind one lock, so that concurrent first calls from several threads compile
each kernel once and never race.

Names spell every specialisation, as cupyx does
(``cugrad_gradient_fast_f32_calcf64_v4_i32_r2_m2_b256``: input, compute dtype, access width, index
width and the tuning knobs; ``cugrad_gradient_general_f16_df16_cf64_f16_of16``: input, data,
compute dtypes of the regions, output): profiles and ``cugrad compile`` listings read like
sentences.

Nothing here imports CuPy at module level; the pure-Python parts (sources, names, variant lists)
are what the NVRTC and emulation tests use on machines without a GPU.
"""

from __future__ import annotations

import functools
import importlib.resources
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

KERNEL_PACKAGE = "cugrad.kernels"
STENCILS_FILE = "gradient_stencils.cuh"
GENERAL_FILE = "gradient_general.cuh"
FAST_FILE = "gradient_fast.cu"
OPERATORS_FILE = "operators.cuh"
KERNEL_FILES = (STENCILS_FILE, GENERAL_FILE, FAST_FILE, OPERATORS_FILE)

# --fmad=false: no contraction into fused multiply-adds (numpy rounds after every operation). The
# kernels also use explicit .rn PTX for every float operation, which survives CuPy's -ftz=true.
COMPILE_OPTIONS: tuple[str, ...] = ("--std=c++17", "--fmad=false")

# Mirrors of the constants in gradient_fast.cu and gradient_stencils.cuh (checked against the
# sources by the tests).
FAST_MAX_PLANE_AXES = 2
FAST_RMAX = 4  # reach of a fast-path body stencil
FAST_MAX_EDGE = 8  # non-body rows per side on the fast path
MAX_TERMS = 10  # 9 pairs: one-sided second derivatives at accuracy 8 (the Laplacian)
MAX_OFFSETS = 20
KIND_CODES = {"diff": 0, "comb": 1, "dsum": 2}
FORM_DIFF, FORM_COMB3, FORM_DSYM, FORM_DCOORD = 0, 1, 2, 3
GENERAL_MAX_SLOTS = 3  # compute dtypes of one axis's regions on the general path
# operators.cuh's CG_OP_*: how the terms of one output of a derived operator combine.
COMBINE_CODES = {"sum": 0, "difference": 1, "magnitude": 2}


# block * min_blocks_per_sm at most this: at least 64 registers per thread under the launch bound.
MAX_RESIDENT_THREADS = 1024


@dataclass(frozen=True)
class FastTuning:
    """The compile-time knobs of the fast path (``#define`` lines in front of its source).

    Each is part of the kernel's name and of the code string CuPy hashes, so that a sweep over them
    (``benchmarks/gpu_tune.py``) compiles and caches every configuration separately.

    Attributes
    ----------
    rows_per_thread : int
        Rows of a vector tile (``CG_FAST_ROWS``): rows a thread computes per tile decode.
    min_blocks_per_sm : int
        ``__launch_bounds__`` minimum of resident blocks per SM (``CG_FAST_MIN_BLOCKS``): caps the
        registers per thread at ``65536 / (block * min_blocks_per_sm)``, which must stay at 64 or
        more (``block * min_blocks_per_sm <= 1024``) so that no variant spills.
    block : int
        Threads per block (``CG_FAST_BLOCK``), a multiple of 32 up to 1024.
    """

    rows_per_thread: int = 2
    min_blocks_per_sm: int = 2
    block: int = 256

    def __post_init__(self) -> None:
        for name in ("rows_per_thread", "min_blocks_per_sm", "block"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"FastTuning.{name} must be a positive int, got {value!r}")
        if self.block % 32 or self.block > 1024:
            raise ValueError(
                f"FastTuning.block must be a multiple of 32 up to 1024, got {self.block}")
        if self.block * self.min_blocks_per_sm > MAX_RESIDENT_THREADS:
            # The register cap 65536 / (block * min_blocks) would fall below 64; the variants
            # need 40-68 (ptxas, sm_80/sm_90), and at 32 they spill hundreds of bytes.
            raise ValueError(
                f"FastTuning: {self.min_blocks_per_sm} resident blocks of {self.block} threads cap "
                f"the registers at {65536 // (self.block * self.min_blocks_per_sm)} per thread, "
                f"which makes the fast path spill; keep block * min_blocks_per_sm <= "
                f"{MAX_RESIDENT_THREADS}"
            )

    @property
    def suffix(self) -> str:
        """The part of a kernel name that spells the tuning (``r2_m2_b256``)."""
        return f"r{self.rows_per_thread}_m{self.min_blocks_per_sm}_b{self.block}"

    def defines(self) -> str:
        return (f"#define CG_FAST_ROWS {self.rows_per_thread}\n"
                f"#define CG_FAST_MIN_BLOCKS {self.min_blocks_per_sm}\n"
                f"#define CG_FAST_BLOCK {self.block}\n")


DEFAULT_TUNING = FastTuning()
# The defaults, as the fast path's source states them when no tuning is defined.
FAST_ROWS = DEFAULT_TUNING.rows_per_thread
FAST_BLOCK = DEFAULT_TUNING.block
FAST_MIN_BLOCKS = DEFAULT_TUNING.min_blocks_per_sm

# numpy dtype -> C type of the stored element
C_TYPES: dict[np.dtype, str] = {
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
    np.dtype(np.int8): "signed char",
    np.dtype(np.int16): "short",
    np.dtype(np.int32): "int",
    np.dtype(np.int64): "long long",
    np.dtype(np.uint8): "unsigned char",
    np.dtype(np.uint16): "unsigned short",
    np.dtype(np.uint32): "unsigned int",
    np.dtype(np.uint64): "unsigned long long",
}

# numpy dtype -> kind of gradient_stencils.cuh (how values of that dtype are computed)
KINDS: dict[np.dtype, str] = {
    np.dtype(np.float16): "cg_half",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
    np.dtype(np.complex64): "cg_complex<float>",
    np.dtype(np.complex128): "cg_complex<double>",
}

FAST_INPUT_DTYPES: tuple[np.dtype, ...] = tuple(C_TYPES)
INDEX_TYPES = {"i32": "int", "i64": "long long"}


def short_name(dtype: Any) -> str:
    """``f32``, ``c128``, ``i16``, ``u8``...: a dtype in a kernel name."""
    dtype = np.dtype(dtype)
    return f"{dtype.kind}{dtype.itemsize * 8}"


@functools.cache
def kernel_source(name: str) -> str:
    """The text of one file of ``kernels/`` (shipped as the package ``cugrad.kernels``)."""
    if name not in KERNEL_FILES:
        raise ValueError(f"unknown kernel file {name!r}; cugrad ships {', '.join(KERNEL_FILES)}")
    return importlib.resources.files(KERNEL_PACKAGE).joinpath(name).read_text(encoding="utf-8")


@functools.cache
def numpy_cmul_is_fused() -> bool:
    """Whether this numpy computes complex products with fused multiply-adds.

    numpy's SIMD complex multiply (``npyv_muladdsub``) is fused on FMA hardware and rounds twice
    elsewhere; with a real coefficient the two agree except where a product underflows. The
    kernels follow whichever this process's numpy does. The operands make the difference visible:
    ``x * x - 1`` with ``x = 1 + 2**-30`` keeps its ``2**-60`` term only when fused.
    """
    x = 1.0 + 2.0**-30
    a = np.full(64, complex(x, 1.0))
    product = a * a
    return bool(product[0].real != 2.0**-29)


def defines() -> str:
    """The ``#define`` lines that configure the sources for this process."""
    return f"#define CUGRAD_CMUL_FMA {int(numpy_cmul_is_fused())}\n"


def fast_module_code(tuning: FastTuning = DEFAULT_TUNING) -> str:
    """The code string of the RawModule of the fast path for one tuning.

    The tuning's ``#define`` lines come first, so CuPy's cache key (a hash of this string) differs
    per tuning; the default tuning is spelled out too, so every cache entry says what it holds.
    """
    return "\n".join((defines(), tuning.defines(), kernel_source(STENCILS_FILE),
                      kernel_source(FAST_FILE)))


def general_preamble() -> str:
    """The ElementwiseKernel preamble of the general path."""
    return "\n".join((defines(), kernel_source(STENCILS_FILE), kernel_source(GENERAL_FILE)))


def operator_preamble() -> str:
    """Return the fused operators' ElementwiseKernel preamble (general path's + operators.cuh)."""
    return "\n".join((general_preamble(), kernel_source(OPERATORS_FILE)))


# ------------------------------------------------------------------------------------------------
# Variants
# ------------------------------------------------------------------------------------------------


def fast_vector_widths(in_dtype: Any) -> tuple[int, ...]:
    """Elements per access of the fast path: 16 bytes for float and double data, else one.

    Integer input is converted to float64 in the kernel; its loads are narrower than its stores,
    and it is not worth twice the instantiations.
    """
    dtype = np.dtype(in_dtype)
    if dtype.kind == "f":
        return (1, 16 // dtype.itemsize)
    return (1,)


def fast_compute_dtypes(in_dtype: Any) -> tuple[np.dtype, ...]:
    """Compute dtypes the fast path has for an input dtype (at least the data dtype)."""
    if np.dtype(in_dtype) == np.float32:
        return (np.dtype(np.float32), np.dtype(np.float64))
    return (np.dtype(np.float64),)


@dataclass(frozen=True)
class FastVariant:
    """One instantiation of ``cugrad_gradient_fast`` (stencils and edges are launch parameters)."""

    in_dtype: np.dtype
    compute_dtype: np.dtype
    vec: int
    index: str  # "i32" or "i64"
    tuning: FastTuning = DEFAULT_TUNING

    @property
    def name(self) -> str:
        return (
            f"cugrad_gradient_fast_{short_name(self.in_dtype)}_calc{short_name(self.compute_dtype)}"
            f"_v{self.vec}_{self.index}_{self.tuning.suffix}"
        )

    @property
    def expression(self) -> str:
        """The C++ name expression given to NVRTC (``name_expressions``)."""
        return (
            f"cugrad_gradient_fast<{C_TYPES[self.in_dtype]}, {KINDS[self.compute_dtype]}, "
            f"{self.vec}, {INDEX_TYPES[self.index]}>"
        )


def all_fast_variants(tuning: FastTuning = DEFAULT_TUNING) -> list[FastVariant]:
    """Every instantiation the backend may launch with one tuning."""
    variants = []
    for in_dtype in FAST_INPUT_DTYPES:
        for compute, vec, index in itertools.product(
            fast_compute_dtypes(in_dtype), fast_vector_widths(in_dtype), ("i32", "i64")
        ):
            variants.append(FastVariant(in_dtype, compute, vec, index, tuning))
    return variants


@dataclass(frozen=True)
class GeneralVariant:
    """One ElementwiseKernel of the general path: the dtypes of every operand.

    ``slots`` are the compute dtypes of the axis's regions (numpy may compute the interior and the
    edges of one axis in different dtypes), each with its weight table; at most
    ``GENERAL_MAX_SLOTS``. Kinds, offsets, row ranges and weights are launch operands.
    """

    in_dtype: np.dtype  # what f holds (float16 travels as uint16 bits)
    data_dtype: np.dtype
    slots: tuple[np.dtype, ...]
    out_dtype: np.dtype

    def __post_init__(self) -> None:
        if not 1 <= len(self.slots) <= GENERAL_MAX_SLOTS:
            raise ValueError(f"a general kernel has 1 to {GENERAL_MAX_SLOTS} compute dtypes")

    @property
    def name(self) -> str:
        slots = "_".join(short_name(d) for d in self.slots)
        return (
            f"cugrad_gradient_general_{short_name(self.in_dtype)}_d{short_name(self.data_dtype)}"
            f"_c{slots}_o{short_name(self.out_dtype)}"
        )

    @property
    def padded_slots(self) -> tuple[np.dtype, np.dtype, np.dtype]:
        """Three slot dtypes (unused slots repeat the first; the kernel never reads them)."""
        return tuple(self.slots) + (self.slots[0],) * (GENERAL_MAX_SLOTS - len(self.slots))

    @property
    def template_args(self) -> str:
        """``KD, NS, K0, K1, K2, KO`` of ``cg_general_point``."""
        k0, k1, k2 = (KINDS[d] for d in self.padded_slots)
        return (f"{KINDS[self.data_dtype]}, {len(self.slots)}, {k0}, {k1}, {k2}, "
                f"{KINDS[self.out_dtype]}")

    def param_types(self) -> dict[str, str]:
        """CuPy type names of the kernel's array operands (float16 as uint16 bits)."""

        def cupy_name(dtype: np.dtype) -> str:
            return "uint16" if dtype == np.float16 else dtype.name

        t = {"f": cupy_name(self.in_dtype), "out": cupy_name(self.out_dtype)}
        for k, d in enumerate(self.padded_slots):
            t[f"w{k}"] = cupy_name(d)
        return t

    def in_params(self) -> str:
        # n and i are reserved names in an ElementwiseKernel (i is the element index).
        t = self.param_types()
        return (
            f"raw {t['f']} f, raw int64 regs, raw {t['w0']} w0, raw {t['w1']} w1, "
            f"raw {t['w2']} w2, raw bool flag, int64 axis_len, int64 inner, int64 orows, "
            "int64 lo, int64 frows, int64 fstart"
        )

    def out_params(self) -> str:
        return f"{self.param_types()['out']} out"

    def operation(self) -> str:
        return (
            f"cg_general_point<{self.template_args}>(out, f, regs, w0, w1, w2, flag, i, axis_len, "
            "inner, orows, lo, frows, fstart);"
        )


def representative_general_variants() -> list[GeneralVariant]:
    """General-path kernels that cover every kind and promotion numpy makes.

    One per data dtype with every region in the data dtype, plus the mixed precisions (float16 or
    float32 data with float32 or float64 weights, complex64 data with complex128 weights), integer
    and bool input, and axes whose regions compute in two dtypes (numpy's interior and edges under
    a numpy-integer spacing) or three.
    """
    f16, f32, f64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
    c64, c128 = np.dtype(np.complex64), np.dtype(np.complex128)
    combos = [
        (f16, f16, f16), (f16, f32, f16), (f16, f64, f16),
        (f32, f32, f32), (f32, f64, f32),
        (f64, f64, f64),
        (c64, c64, c64), (c64, c128, c64),
        (c128, c128, c128),
    ]
    variants = [GeneralVariant(data, data, (compute,), out) for data, compute, out in combos]
    variants.append(GeneralVariant(np.dtype(np.int64), f64, (f64,), f64))
    # bool input on a device reaches a kernel only with coordinates on every axis and
    # second-order edges (numpy's products accept bool; its differences do not)
    variants.append(GeneralVariant(np.dtype(np.bool_), f64, (f64,), f64))
    # numpy may promote the interior and the edges differently (np.int8 spacing on float32 data)
    variants.append(GeneralVariant(f32, f32, (f64, f32), f32))
    variants.append(GeneralVariant(f16, f16, (f64, f16, f32), f16))
    return variants


@dataclass(frozen=True)
class OperatorVariant:
    """One ElementwiseKernel of a fused derived operator (``operators.cuh``).

    Compile-time: the dtypes, the compute dtypes of each differentiated axis's regions (one region
    table set per axis, as the general path's ``slots``), and the operator's structure: for each
    output, how its terms combine and, per term, which source it differentiates along which axis
    table set. Regions, offsets and weights are launch operands, as on the general path.
    """

    in_dtype: np.dtype  # what the sources hold (float16 travels as uint16 bits)
    data_dtype: np.dtype
    out_dtype: np.dtype
    sources: int
    axes: tuple[tuple[np.dtype, ...], ...]  # per axis table set: its compute dtypes (slots)
    # per output: (combine, ((source, axis table set), ...)), terms in combination order
    outputs: tuple[tuple[str, tuple[tuple[int, int], ...]], ...]

    def __post_init__(self) -> None:
        for slots in self.axes:
            if not 1 <= len(slots) <= GENERAL_MAX_SLOTS:
                raise ValueError(f"an axis has 1 to {GENERAL_MAX_SLOTS} compute dtypes")
        for combine, terms in self.outputs:
            if combine not in COMBINE_CODES or not terms:
                raise ValueError(f"an output combines terms by {sorted(COMBINE_CODES)}")
            if combine == "difference" and len(terms) != 2:
                raise ValueError("a difference has two terms")
            if combine == "magnitude" and self.out_dtype.kind == "c":
                raise ValueError("the magnitude is for real dtypes")
            for source, axis in terms:
                if not (0 <= source < self.sources and 0 <= axis < len(self.axes)):
                    raise ValueError(f"term ({source}, {axis}) names no source or axis")

    @property
    def name(self) -> str:
        axes = "_".join("a" + "".join(short_name(d) for d in slots) for slots in self.axes)
        outputs = "_".join(combine[0] + "".join(f"s{s}a{a}" for s, a in terms)
                           for combine, terms in self.outputs)
        return (f"cugrad_operator_{short_name(self.in_dtype)}_d{short_name(self.data_dtype)}"
                f"_o{short_name(self.out_dtype)}_k{self.sources}_{axes}_{outputs}")

    def param_types(self) -> dict[str, str]:
        def cupy_name(dtype: np.dtype) -> str:
            return "uint16" if dtype == np.float16 else dtype.name

        t = {"f": cupy_name(self.in_dtype), "out": cupy_name(self.out_dtype)}
        for a, slots in enumerate(self.axes):
            padded = tuple(slots) + (slots[0],) * (GENERAL_MAX_SLOTS - len(slots))
            for k, d in enumerate(padded):
                t[f"w{a}_{k}"] = cupy_name(d)
        return t

    def in_params(self) -> str:
        """Return the inputs: sources ``f0 ..``, then per axis table set its tables and sizes."""
        t = self.param_types()
        params = [f"raw {t['f']} f{s}" for s in range(self.sources)]
        for a in range(len(self.axes)):
            params += [f"raw int64 regs{a}", *(f"raw {t[f'w{a}_{k}']} w{a}_{k}"
                                               for k in range(GENERAL_MAX_SLOTS)),
                       f"raw bool flag{a}", f"int64 len{a}", f"int64 inner{a}"]
        return ", ".join(params)

    def out_params(self) -> str:
        return ", ".join(f"{self.param_types()['out']} out{o}" for o in range(len(self.outputs)))

    def axis_template_args(self, a: int) -> str:
        """``KD, NS, K0, K1, K2, KO`` of ``cg_general_point`` for axis table set ``a``."""
        slots = self.axes[a]
        k0, k1, k2 = (KINDS[d] for d in tuple(slots) + (slots[0],) * (3 - len(slots)))
        return (f"{KINDS[self.data_dtype]}, {len(slots)}, {k0}, {k1}, {k2}, "
                f"{KINDS[self.out_dtype]}")

    def operation(self) -> str:
        """One statement per term, then the store, per output (``operators.cuh``)."""
        ko = KINDS[self.out_dtype]
        lines = []
        for o, (combine, terms) in enumerate(self.outputs):
            calls = [f"cg_op_term<{self.axis_template_args(a)}>(f{s}, regs{a}, w{a}_0, w{a}_1, "
                     f"w{a}_2, flag{a}, i, len{a}, inner{a})" for s, a in terms]
            lines.append("{")
            lines.append(f"  cg_op_combine<{COMBINE_CODES[combine]}, {ko}> c({calls[0]});")
            lines += [f"  c.next({call});" for call in calls[1:]]
            lines.append(f"  cg_op_store<{ko}>(out{o}, c.result());")
            lines.append("}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Compiled objects, cached per device
# ------------------------------------------------------------------------------------------------

_cache: dict[tuple[Any, ...], Any] = {}
_cache_lock = threading.Lock()


def _memoized(key: tuple[Any, ...], build: Any) -> Any:
    """``build()`` once per key, even when several threads ask at the same time."""
    try:
        return _cache[key]
    except KeyError:
        pass
    with _cache_lock:
        if key not in _cache:
            _cache[key] = build()
        return _cache[key]


def _device_id() -> int:
    import cupy

    return cupy.cuda.Device().id


def fast_kernel(variant: FastVariant) -> Any:
    """The compiled ``cugrad_gradient_fast`` instantiation for the current device.

    The memo key holds the variant, tuning included; CuPy's disk cache key holds the code string,
    whose first lines are the tuning's ``#define`` lines.
    """

    def build() -> Any:
        import cupy

        module = cupy.RawModule(
            code=fast_module_code(variant.tuning), options=COMPILE_OPTIONS,
            name_expressions=[variant.expression],
        )
        return module.get_function(variant.expression)  # compiles now, under the lock

    return _memoized(("fast", _device_id(), variant), build)


def _elementwise_kernel(kind: str, variant: Any, preamble: Callable[[], str]) -> Any:
    """Return the ElementwiseKernel of ``variant`` for the current device.

    Built from the variant's parameters, operation and name; memoized per (kind, device,
    variant).
    """

    def build() -> Any:
        import cupy

        return cupy.ElementwiseKernel(
            variant.in_params(),
            variant.out_params(),
            variant.operation(),
            name=variant.name,
            preamble=preamble(),
            options=COMPILE_OPTIONS,
            no_return=True,
        )

    return _memoized((kind, _device_id(), variant), build)


def general_kernel(variant: GeneralVariant) -> Any:
    """Return the ElementwiseKernel of the general path for the current device."""
    return _elementwise_kernel("general", variant, general_preamble)


def operator_kernel(variant: OperatorVariant) -> Any:
    """Return the ElementwiseKernel of a fused derived operator for the current device."""
    return _elementwise_kernel("operator", variant, operator_preamble)


_first_calls: set[tuple[Any, ...]] = set()


def _launch(kind: str, kernel: Any, variant: Any, operands: tuple[Any, ...]) -> None:
    """Launch an ElementwiseKernel; its first launch per device and layout compiles under the lock.

    An ElementwiseKernel compiles lazily, once per operand layout (each array's ndim and
    contiguity, and whether 32-bit indices do), so the first call for a layout is made while
    holding the cache lock.
    """
    layout = tuple((a.ndim, bool(a.flags.c_contiguous), a.size < 2**31)
                   for a in operands if hasattr(a, "flags"))
    key = (kind, _device_id(), variant, layout)
    if key in _first_calls:
        kernel(*operands)
        return
    with _cache_lock:
        kernel(*operands)
        _first_calls.add(key)


def call_general(variant: GeneralVariant, args: tuple[Any, ...], out: Any) -> None:
    """Launch a general-path kernel (see :func:`_launch`)."""
    _launch("general-call", general_kernel(variant), variant, (*args, out))


def call_operator(variant: OperatorVariant, args: tuple[Any, ...], outs: list[Any]) -> None:
    """Launch a fused operator kernel: one launch writes every output (see :func:`_launch`)."""
    _launch("operator-call", operator_kernel(variant), variant, (*args, *outs))
