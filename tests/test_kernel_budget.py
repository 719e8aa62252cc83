"""The fast path's register budget and instruction mix, checked without a GPU (issue 9).

Every fast-path variant (default tuning) is compiled by NVRTC for sm_80 and sm_90 with the options
CuPy uses (``cugrad._kernels.COMPILE_OPTIONS`` plus the ``-ftz=true`` CuPy appends) and
``--ptxas-options=-v``; ptxas's report and the PTX of the same compile are then read per kernel:

* no spill stores or loads, no stack frame, no local memory (a spill on the GPU costs DRAM traffic
  in a kernel whose whole point is to touch DRAM once);
* vector variants issue 16-byte non-coherent loads (``ld.global.nc`` of 16 bytes) and 16-byte
  streaming stores (``st.global.cs``);
* no fused multiply-add and no flush-to-zero anywhere (numpy rounds every operation and keeps
  subnormals);
* 32-bit-index variants contain no 64-bit division or remainder (tens of instructions each).

One compile per architecture, both on threads (NVRTC releases the GIL), cached for the session.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from cugrad import _kernels

pytestmark = pytest.mark.kernel_budget

ARCHS = (80, 90)
VARIANTS = _kernels.all_fast_variants()

# Itanium mangling of the template arguments of cugrad_gradient_fast<Tin, KC, V, Idx>.
_MANGLED_TYPES = {
    "float": "f", "double": "d", "signed char": "a", "short": "s", "int": "i", "long long": "x",
    "unsigned char": "h", "unsigned short": "t", "unsigned int": "j", "unsigned long long": "y",
}


def mangled_name(v: _kernels.FastVariant) -> str:
    tin = _MANGLED_TYPES[_kernels.C_TYPES[v.in_dtype]]
    kc = _MANGLED_TYPES[_kernels.KINDS[v.compute_dtype]]
    idx = _MANGLED_TYPES[_kernels.INDEX_TYPES[v.index]]
    return f"_Z20cugrad_gradient_fastI{tin}{kc}Li{v.vec}E{idx}Ev14cg_fast_params"


@dataclass
class KernelReport:
    registers: int
    stack: int
    spill_stores: int
    spill_loads: int
    lmem: int
    ptx: str


def parse_ptxas(log: str) -> dict[str, dict[str, int]]:
    """ptxas -v's lines per entry function."""
    reports: dict[str, dict[str, int]] = {}
    current = None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            current = reports.setdefault(m.group(1), {"lmem": 0})
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                      line)
        if m:
            current["stack"], current["spill_stores"], current["spill_loads"] = map(int, m.groups())
        m = re.search(r"Used (\d+) registers", line)
        if m:
            current["registers"] = int(m.group(1))
        m = re.search(r"(\d+) bytes lmem", line)
        if m:
            current["lmem"] = int(m.group(1))
    return reports


def split_ptx(ptx: str) -> dict[str, str]:
    """The PTX text of each .entry."""
    pieces = re.split(r"(?=\.visible \.entry |(?<!visible )\.entry )", ptx)
    names = [re.match(r"(?:\.visible )?\.entry (\w+)", p) for p in pieces]
    return {m.group(1): p for m, p in zip(names, pieces, strict=True) if m}


@pytest.fixture(scope="session")
def budget() -> dict[tuple[str, int], KernelReport]:
    from cugrad import _compile

    try:
        nvrtc = _compile.NVRTC()
    except _compile.NVRTCError as exc:
        pytest.skip(f"the NVRTC library cannot be loaded: {exc}")
    missing = set(ARCHS) - set(nvrtc.supported_archs())
    if missing:
        pytest.skip(f"this NVRTC cannot target sm_{sorted(missing)}")
    source = _compile.fast_harness()
    options = (*_kernels.COMPILE_OPTIONS, "-ftz=true", "--ptxas-options=-v")

    def one(arch: int) -> tuple[int, str, str]:
        # the PTX of the very compile ptxas reports on (_build: log and PTX of one program)
        log, ptx = nvrtc._build(source, (f"-arch=sm_{arch}", *options), f"budget_sm{arch}.cu",
                                want_ptx=True)
        return arch, log, ptx

    with ThreadPoolExecutor(max_workers=len(ARCHS)) as pool:
        results = list(pool.map(one, ARCHS))
    reports = {}
    for arch, log, ptx in results:
        info = parse_ptxas(log)
        entries = split_ptx(ptx)
        for v in VARIANTS:
            name = mangled_name(v)
            assert name in info and name in entries, f"{v.name}: {name} not in the sm_{arch} build"
            r = info[name]
            reports[(v.name, arch)] = KernelReport(r["registers"], r["stack"], r["spill_stores"],
                                                   r["spill_loads"], r["lmem"], entries[name])
    return reports


def test_every_variant_is_in_the_harness():
    assert len({mangled_name(v) for v in VARIANTS}) == len(VARIANTS)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_no_spills_no_local_memory(budget, variant, arch):
    r = budget[(variant.name, arch)]
    cap = 65536 // (variant.tuning.block * variant.tuning.min_blocks_per_sm)
    what = f"{variant.name} sm_{arch}: {r}"
    assert r.spill_stores == 0 and r.spill_loads == 0, what
    assert r.stack == 0 and r.lmem == 0, what
    assert "ld.local" not in r.ptx and "st.local" not in r.ptx, what
    assert r.registers <= cap, what


_LOAD16 = re.compile(r"\bld\.global\.nc\.(?:v4\.(?:u32|b32|f32|s32)|v2\.(?:u64|b64|f64|s64))\b")
_STORE16 = re.compile(r"\bst\.global\.cs\.(?:v4\.(?:u32|b32|f32|s32)|v2\.(?:u64|b64|f64|s64))\b")
_FLOAT_OP = re.compile(r"\b(?:add|sub|mul|div|fma|mad|cvt|neg|abs|setp|min|max)(?:\.[a-z0-9]+)*"
                       r"\.f(?:16|32|64)\b[a-z0-9.]*")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_instruction_mix(budget, variant, arch):
    ptx = budget[(variant.name, arch)].ptx
    if variant.vec > 1:
        assert _LOAD16.search(ptx), f"{variant.name}: no 16-byte non-coherent load"
        assert _STORE16.search(ptx), f"{variant.name}: no 16-byte streaming store"
    ops = set(_FLOAT_OP.findall(ptx))
    assert ops, "no float instruction found: the PTX parse is broken"
    assert not [o for o in ops if ".ftz" in o], ops
    assert not [o for o in ops if o.startswith(("fma", "mad"))], ops
    if variant.index == "i32":
        wide = re.findall(r"\b(?:div|rem)\.[su]64\b", ptx)
        assert not wide, f"{variant.name}: 64-bit division in a 32-bit-index variant: {wide}"


def test_the_checks_see_what_they_look_for(budget):
    """The parsers are live: the 64-bit-index variants do divide in 64 bits, and scalar variants
    have no 16-byte accesses."""
    v64 = next(v for v in VARIANTS if v.index == "i64")
    assert re.search(r"\b(?:div|rem)\.[su]64\b", budget[(v64.name, 90)].ptx)
    scalar = next(v for v in VARIANTS if v.vec == 1 and v.in_dtype == v.compute_dtype)
    assert not _LOAD16.search(budget[(scalar.name, 90)].ptx)


def test_register_report(budget, capsys):
    """The numbers, for the record (``pytest -m kernel_budget -s``)."""
    with capsys.disabled():
        print("\nfast-path registers (spills) per variant: sm_80 | sm_90")
        for v in VARIANTS:
            cells = []
            for arch in ARCHS:
                r = budget[(v.name, arch)]
                cells.append(f"{r.registers:3d} ({r.spill_stores}/{r.spill_loads})")
            print(f"  {v.name:52s} {' | '.join(cells)}")


# ------------------------------------------------------------------------------------------------
# The fused derived operators (kernels/operators.cuh), sm_90 (the H100/H200 generation)
# ------------------------------------------------------------------------------------------------

OPERATOR_ARCH = 90


@pytest.fixture(scope="session")
def operator_budget() -> dict[str, KernelReport]:
    """ptxas's report and the PTX of each representative operator variant (extern "C" names)."""
    from test_kernels_nvrtc import operator_harness

    from cugrad import _compile, _cupy_backend

    try:
        nvrtc = _compile.NVRTC()
    except _compile.NVRTCError as exc:
        pytest.skip(f"the NVRTC library cannot be loaded: {exc}")
    if OPERATOR_ARCH not in nvrtc.supported_archs():
        pytest.skip(f"this NVRTC cannot target sm_{OPERATOR_ARCH}")
    variants = _cupy_backend.representative_operator_variants()
    halves = [variants[0::2], variants[1::2]]  # two programs, one per thread
    options = (f"-arch=sm_{OPERATOR_ARCH}", *_kernels.COMPILE_OPTIONS, "-ftz=true",
               "--ptxas-options=-v")

    def one(k: int) -> tuple[str, str]:
        return nvrtc._build(operator_harness(halves[k]), options, f"operators_{k}.cu",
                            want_ptx=True)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, range(2)))
    reports = {}
    for log, ptx in results:
        info, entries = parse_ptxas(log), split_ptx(ptx)
        for name, r in info.items():
            reports[name] = KernelReport(r["registers"], r["stack"], r["spill_stores"],
                                         r["spill_loads"], r["lmem"], entries[name])
    assert set(reports) == {v.name for v in variants}
    return reports


def _operator_names() -> list[str]:
    from cugrad import _cupy_backend

    return [v.name for v in _cupy_backend.representative_operator_variants()]


@pytest.mark.parametrize("name", _operator_names())
def test_operator_variants_do_not_spill(operator_budget, name):
    r = operator_budget[name]
    what = f"{name} sm_{OPERATOR_ARCH}: {r}"
    assert r.spill_stores == 0 and r.spill_loads == 0, what
    assert r.stack == 0 and r.lmem == 0, what
    assert "ld.local" not in r.ptx and "st.local" not in r.ptx, what
    ops = set(_FLOAT_OP.findall(r.ptx))
    assert not [o for o in ops if ".ftz" in o], ops
    fused = {o for o in ops if o.startswith(("fma", "mad"))}
    if re.search(r"_c(?:64|128)_", name) and _kernels.numpy_cmul_is_fused():
        assert fused <= {"fma.rn.f32", "fma.rn.f64"}, fused  # numpy's own complex multiply
    else:
        assert not fused, fused


def test_operator_register_report(operator_budget, capsys):
    """The numbers, for the record (``pytest -m kernel_budget -s``)."""
    with capsys.disabled():
        print(f"\nfused operator registers (spill stores/loads, stack) per variant: "
              f"sm_{OPERATOR_ARCH}")
        for name, r in operator_budget.items():
            print(f"  {name:72s} {r.registers:3d} ({r.spill_stores}/{r.spill_loads}, "
                  f"{r.stack})")
