"""The compiled CPU engine: plans executed with numba, one pass per output.

The NumPy backend computes each region of each output with two or more ufunc passes (a difference,
then a division; products, then sums). This engine executes the same plan (every region kind,
scalar or per-row weights, periodic wrap) computing each output element in one pass from the input
values, in the operation order :class:`cugrad._plan.Region` defines, so the bits are the NumPy
backend's and numpy.gradient's (``_numba_kernels`` says how). numba is optional (``pip install
numba``, or the ``cpu`` extra); without it, and for everything this engine does not take, the NumPy
backend runs. The derived operators (:func:`execute_fused`) compute their terms with the same
kernel, slab by slab, and combine them with numpy's ufuncs while the slab is in cache.

Choosing the engine: ``CUGRAD_CPU_ENGINE`` = ``auto`` (the default: this engine when numba is
installed and the array has at least :data:`ENGINE_MIN_ELEMENTS` elements, or
:data:`ENGINE_COLD_MIN_ELEMENTS` before the kernels are loaded in the process), ``numba`` (this
engine whenever it supports the call, at any size; ``RuntimeError`` when numba is missing) or
``numpy`` (never). The NumPy backend always runs, whatever the choice, for:

* dtypes other than float32/float64/integer data with float32/float64 compute dtypes (float16,
  complex, longdouble), byte-swapped data or outputs, strides that are not whole elements, more
  than four dims longer than 1, and plans with device coordinates;
* calls under ``np.errstate(..., "raise"/"call"/"log")`` or with RuntimeWarning turned into an
  error (numpy's order of floating-point events is only reproduced by numpy's own loops), or with
  ``under`` reported;
* calls that wrote a non-finite value while ``np.errstate`` reports ``divide``, ``over`` or
  ``invalid`` (the default): compiled code cannot report those events, so the NumPy backend
  recomputes the call and reports them as numpy does. Inputs holding NaN or infinity therefore
  cost one pass of each engine under numpy's default error state.

Compilation happens on first use (never at import), once per (input dtype, output dtype) pair, and
is cached on disk by numba (``cache=True``: next to this module when that is writable, else in
numba's user cache directory; ``NUMBA_CACHE_DIR`` overrides), so later processes load it instead
(about a second for the first signature, numba's import and LLVM's start-up included; tens of
milliseconds for the others). ``import cugrad`` never imports numba.

Threads: the slab dim (the one with the largest stride) is cut into slabs of about
:data:`SLAB_BYTES` of input; workers (``CUGRAD_NUM_THREADS``, the NumPy backend's count, the
calling thread included) take the next slab from a shared counter until none is left, so a busy
CPU slows the call by its share, not by half. A slab computes every requested axis while its
input is in cache. The kernels release the GIL.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import threading
import time
from typing import Any

import numpy as np

from cugrad import _numpy_backend
from cugrad._plan import AxisPlan, GradientPlan, OperatorPlan, Region

ENGINE_ENV = "CUGRAD_CPU_ENGINE"
ENGINES = ("auto", "numba", "numpy")
#: Under ``auto``, arrays with fewer elements stay on the NumPy backend: below this the engine's
#: table building and thread start cost about what they save.
ENGINE_MIN_ELEMENTS = 1 << 18
#: ... and until the kernels are loaded in this process, arrays with fewer elements than this: the
#: first use costs about a second even when numba's disk cache holds the compiled code (numba's
#: import, then LLVM's start-up while loading it), which only pays on large arrays. Loading
#: happens at the first call above this size, or with :func:`warm_up`.
ENGINE_COLD_MIN_ELEMENTS = 1 << 22
#: Input bytes per slab (a slab, its halo and the matching output rows stay in a core's L2).
SLAB_BYTES = 1 << 20
#: Below this many elements a call runs on the calling thread alone.
PARALLEL_MIN_ELEMENTS = 1 << 16
MAX_DIMS = 4
# The table layout of ``_numba_kernels`` (repeated here so that building tables needs no numba;
# :func:`_kernels` checks that both agree).
HEADER, RECORD, MAX_OFFSETS = 18, 26, 16
_CODES = {np.dtype(name): code for code, name in enumerate(
    ("float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
     "uint64"))}

_KINDS = {"diff": 0, "comb": 1, "dsum": 2}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

#: How many calls this engine computed (the tests read it to know which engine ran).
calls = 0


def requested_engine() -> str:
    """``CUGRAD_CPU_ENGINE``, validated: ``"auto"`` (the default), ``"numba"`` or ``"numpy"``."""
    value = os.environ.get(ENGINE_ENV) or "auto"
    if value not in ENGINES:
        raise ValueError(f"{ENGINE_ENV} must be one of auto, numba, numpy; got {value!r}")
    return value


@functools.cache
def available() -> bool:
    """Whether numba can be imported (checked without importing it)."""
    return importlib.util.find_spec("numba") is not None


def execute(plan: GradientPlan, f: np.ndarray, outs: list[np.ndarray]) -> bool:
    """Compute ``plan`` into ``outs`` with this engine if it is chosen and supports the call.

    Returns False, having written nothing or something the caller overwrites, when the NumPy
    backend must compute the call instead. Arguments as :func:`cugrad._numpy_backend.execute`.
    """
    engine = _engine_for(f)
    if engine is None:
        return False
    job = _prepare(plan.axis_plans, plan.data_dtype, plan.out_dtype, f, outs)
    if job is None or not _ready(engine):
        return False
    bad = _run(job, f.size)
    global calls
    calls += 1
    return not (bad and _reports_events())


def execute_fused(plan: OperatorPlan, sources: list[np.ndarray], outs: list[np.ndarray]) -> bool:
    """Compute a derived operator's outputs with this engine if it is chosen and supports them.

    Returns False, having written nothing or something the caller overwrites, when the NumPy
    backend must compute the call instead. Arguments as
    :func:`cugrad._numpy_backend.execute_fused`, whose slab-by-slab scheme this follows: per slab
    of rows, the first term of an output is written into the output's rows, each further term
    into a slab-sized buffer (one per worker thread) and combined into the output with numpy's
    ufuncs while both are in cache, in the plan's order. Every term is rounded to the output
    dtype as the gradient's output is, so the bits are the NumPy backend's.
    """
    f = sources[0]
    engine = _engine_for(f)
    if engine is None:
        return False
    if any(s.strides != f.strides or s.dtype != f.dtype for s in sources):
        return False  # one loop order for every term: sources of one layout only
    jobs = []
    for output, out in zip(plan.outputs, outs, strict=True):
        terms = []
        for t in output.terms:
            job = _prepare((t.axis_plan,), plan.data_dtype, plan.out_dtype, sources[t.source],
                           [out])
            if job is None:
                return False
            terms.append(job)
        jobs.append(terms)
    if not _ready(engine):
        return False
    bad = _run_fused(plan, jobs, outs, f.size, _reports_events())
    global calls
    calls += 1
    return not bad


def _engine_for(f: np.ndarray) -> str | None:
    """Return the engine chosen for a call on ``f`` ("auto" or "numba"), None for the NumPy one.

    None also under numpy error states that compiled code cannot honour (see the module's
    docstring).
    """
    # Every NumPy-backend call passes here: the common "auto, small array" answer comes first
    # and costs one environment lookup.
    engine = os.environ.get(ENGINE_ENV)
    if (not engine or engine == "auto") and f.size < ENGINE_MIN_ELEMENTS:
        return None
    engine = requested_engine()
    if engine == "numpy" or not f.size:
        return None
    if engine == "auto" and (not available() or (
            f.size < ENGINE_COLD_MIN_ELEMENTS and not _kernels.cache_info().currsize)):
        return None
    if _numpy_backend.fp_events_raise() or np.geterr()["under"] != "ignore":
        return None
    return engine


def _ready(engine: str) -> bool:
    """Load the kernels; False (auto) or RuntimeError (numba) when they cannot be loaded."""
    if not available():
        raise RuntimeError(
            f'{ENGINE_ENV}="numba" asks for the compiled CPU engine, but numba is not installed: '
            'pip install numba (or pip install ".[cpu]" in a cugrad checkout), or unset the '
            "variable"
        )
    if _load() is None:
        if engine == "numba":
            raise RuntimeError(
                f"numba could not load the compiled CPU engine here ({_load_error!r}); when no "
                "cache directory is writable, set NUMBA_CACHE_DIR to one, or set "
                f'{ENGINE_ENV}="numpy"'
            ) from _load_error
        return False  # auto: the NumPy backend (``cugrad info`` shows why)
    return True


def _reports_events() -> bool:
    """Whether numpy's error state reports division by zero, overflow or invalid operations.

    A call that wrote a non-finite value is then recomputed by the NumPy backend, which reports
    them as numpy does.
    """
    err = np.geterr()
    return any(err[event] != "ignore" for event in ("divide", "over", "invalid"))


# --------------------------------------------------------------------------------------------------
# From the plan to flat arrays and tables
# --------------------------------------------------------------------------------------------------


class _Job:
    """A call's flat views, per-axis tables and weights, and its slab split.

    ``slot`` maps the input's dims longer than 1 to their loop slots (see :func:`_prepare`),
    ``shape`` is the shape in slot order and ``slab_axis`` the input dim that is the slab dim.
    """

    __slots__ = ("f", "outs", "tables", "weights", "slab_dim_len", "slab_rows", "slot", "shape",
                 "slab_axis")

    def __init__(self, f, outs, tables, weights, slab_dim_len, slab_rows, slot, shape, slab_axis):
        self.f, self.outs, self.tables, self.weights = f, outs, tables, weights
        self.slab_dim_len, self.slab_rows = slab_dim_len, slab_rows
        self.slot, self.shape, self.slab_axis = slot, shape, slab_axis


def _prepare(axis_plans: tuple[AxisPlan, ...], data_dtype: np.dtype, out_dtype: np.dtype,
             f: np.ndarray, outs: list[np.ndarray]) -> _Job | None:
    """Build the flat views and axis tables of a call; None when the engine does not take it."""
    if not outs:
        return None  # (axis=(): nothing to compute)
    if f.dtype not in _CODES or not f.dtype.isnative or out_dtype not in _FLOATS:
        return None
    if not out_dtype.isnative or any(o.dtype != out_dtype or o.shape != f.shape for o in outs):
        return None
    if data_dtype != out_dtype or (f.dtype.kind == "f" and f.dtype != data_dtype):
        return None
    dims = [d for d in range(f.ndim) if f.shape[d] > 1]
    if len(dims) > MAX_DIMS:
        return None
    if not (f.flags.aligned and all(o.flags.aligned for o in outs)):
        return None  # numba compiles unaligned arrays separately; they are rare
    if any(s % f.itemsize for s in f.strides) or any(
        s % o.itemsize for o in outs for s in o.strides
    ):
        return None
    # Loop order: dims by decreasing input stride, so dim 3 (the innermost loop) is the one with
    # the smallest; unused leading slots have length 1.
    dims.sort(key=lambda d: -abs(f.strides[d]))
    slot = {d: MAX_DIMS - len(dims) + i for i, d in enumerate(dims)}
    shape = [1] * MAX_DIMS
    for d, s in slot.items():
        shape[s] = f.shape[d]
    slab_dim = MAX_DIMS - len(dims) if dims else MAX_DIMS - 1
    f_flat, f_base, f_strides = _flat(f, slot)
    flats = [_flat(o, slot) for o in outs]
    tables, weights = [], []
    for ap, (_, o_base, o_strides) in zip(axis_plans, flats, strict=True):
        if ap.uniform is None or ap.axis not in slot:
            return None
        header = [*shape, *f_strides, f_base, *o_strides, o_base, slot[ap.axis], slab_dim,
                  len(ap.regions), _CODES[f.dtype]]
        records, wvalues = [], []
        for region in ap.regions:
            record = _record(region, out_dtype, sum(len(w) for w in wvalues), wvalues)
            if record is None:
                return None
            records.extend(record)
        tables.append(np.array(header + records, dtype=np.int64))
        weights.append(np.concatenate(wvalues) if wvalues else np.zeros(1))
    slab_dim_len = shape[slab_dim]
    row_bytes = f.itemsize * (f.size // slab_dim_len)
    slab_rows = max(1, SLAB_BYTES // max(row_bytes, 1))
    # Bytes typed uint8 for float data, int8 for integers: see _numba_kernels (one compiled
    # signature for every integer dtype).
    raw = f_flat.view(np.uint8 if f.dtype.kind == "f" else np.int8)
    # Read-only always: numba types read-only arrays apart, and a second compilation for
    # read-only inputs (memory maps, xarray data) would cost the first such call seconds.
    raw.flags.writeable = False
    slab_axis = next((d for d, sl in slot.items() if sl == slab_dim), None)
    return _Job(raw, [fl for fl, _, _ in flats], tables, weights, slab_dim_len, slab_rows, slot,
                shape, slab_axis)


def _flat(a: np.ndarray, slot: dict[int, int]) -> tuple[np.ndarray, int, list[int]]:
    """View the memory ``a`` spans as a contiguous 1-D array.

    Returns the view, the index of ``a[0, ..., 0]`` in it, and the element strides of ``a``'s
    dims in their loop slots (0 for unused slots).
    """
    strides = [0] * MAX_DIMS
    low = high = 0
    for d, s in slot.items():
        step = a.strides[d] // a.itemsize
        strides[s] = step
        span = (a.shape[d] - 1) * step
        low, high = low + min(span, 0), high + max(span, 0)
    if a.flags.c_contiguous or a.flags.f_contiguous:
        flat = a.reshape(-1, order="A")
        return flat, 0, strides
    corner = a[tuple(slice(-1, None) if s < 0 else slice(0, 1) for s in a.strides)]
    flat = np.lib.stride_tricks.as_strided(corner, (high - low + 1,), (a.itemsize,))
    return flat, -low, strides


def _record(region: Region, out_dtype: np.dtype, wbase: int, wvalues: list[np.ndarray]):
    """One region's record (see ``_numba_kernels.RECORD``), its weights appended to ``wvalues``."""
    dtype = region.dtype
    if dtype not in _FLOATS or dtype.itemsize < out_dtype.itemsize:
        return None
    kind = _KINDS[region.kind]
    offsets = region.offsets
    if len(offsets) > MAX_OFFSETS:
        return None
    terms = len(region.weights)
    rows = region.stop - region.start
    per_row = any(isinstance(w, np.ndarray) and w.ndim == 1 for w in region.weights)
    values = []
    for w in region.weights:
        if isinstance(w, np.ndarray) and w.ndim == 1:
            if len(w) != rows or not np.can_cast(w.dtype, dtype, "safe"):
                return None  # (the plan's compute dtype always holds its weights exactly)
            value = w.astype(dtype).astype(np.float64)
        else:
            value = _scalar_weight(w, dtype)
            if value is None:
                return None
            if per_row:
                value = np.full(rows, value)
        values.append(np.atleast_1d(np.asarray(value, dtype=np.float64)))
    wvalues.extend(values)
    padded = list(offsets) + [0] * (MAX_OFFSETS - len(offsets))
    return [region.start, region.stop, kind, 8 * dtype.itemsize, int(region.wrap), terms,
            int(per_row), wbase, min(offsets), max(offsets), *padded]


def _scalar_weight(w: Any, dtype: np.dtype) -> float | None:
    """Return the value numpy's ufunc loop of ``dtype`` uses for the scalar ``w``.

    Weak Python numbers are converted to ``dtype``, numpy scalars promote; the value comes back as
    a float64 holding it exactly, or None when numpy would not take it.
    """
    try:
        with np.errstate(all="ignore"):
            value = np.multiply(np.ones((), dtype), w)
    except (TypeError, ValueError, OverflowError):
        return None
    if value.dtype != dtype:
        return None
    return float(value)


# --------------------------------------------------------------------------------------------------
# Running the kernels
# --------------------------------------------------------------------------------------------------


#: Why the kernels could not be loaded in this process (None: not tried, or loaded).
_load_error: BaseException | None = None


def _load() -> Any:
    """Return the kernels module, or None (remembering why) when numba cannot load it here.

    numba refuses ``cache=True`` functions when it finds no writable cache directory (a read-only
    install without a writable home directory, unless ``NUMBA_CACHE_DIR`` is set); a broken numba
    install fails the same way. Under ``auto`` the NumPy backend then computes every call.
    """
    global _load_error
    if _load_error is not None:
        return None
    try:
        return _kernels()
    except Exception as exc:
        _load_error = exc
        return None


@functools.cache
def _kernels() -> Any:
    """Import the kernels module (and numba); compiled code comes from numba's disk cache."""
    from cugrad import _numba_kernels as kernels

    assert (kernels.HEADER, kernels.RECORD, kernels.MAX_OFFSETS) == (HEADER, RECORD, MAX_OFFSETS)
    assert tuple(np.dtype(name) for name in kernels.CODES) == tuple(_CODES)
    return kernels


def _run(job: _Job, size: int) -> bool:
    """Compute every axis of every slab; returns whether a non-finite value was written."""
    kernel = _kernels().slab_axes
    n, rows = job.slab_dim_len, job.slab_rows
    nax = len(job.outs)
    # One compiled signature for any axis count: the tuple always holds MAX_DIMS outputs (the
    # kernel reads the first ``nax``), the tables and weights are rows of one array each.
    outs = tuple(job.outs) + (job.outs[0],) * (MAX_DIMS - nax)
    tables = _rows(job.tables, np.int64)
    weights = _rows(job.weights, np.float64)
    f = job.f

    def slab(i: int, scratch: dict[str, Any]) -> bool:
        return kernel(f, outs, tables, weights, nax, i * rows, min(n, (i + 1) * rows))

    return _in_parallel(math.ceil(n / rows), slab, size)


def _run_fused(plan: OperatorPlan, jobs: list[list[_Job]], outs: list[np.ndarray], size: int,
               check: bool) -> bool:
    """Compute an operator's outputs slab by slab (see :func:`execute_fused`).

    Returns whether a term or an output holds a non-finite value, checked only when ``check``.
    """
    kernel = _kernels().slab_axes
    first = jobs[0][0]
    n, rows, slot, shape = first.slab_dim_len, first.slab_rows, first.slot, first.shape
    # (Every term differentiates a dim longer than 1, so the slab dim is one of the input's.)
    split = first.slab_axis
    slab_dim = slot[split]
    out_dtype = plan.out_dtype
    # A term's buffer holds the rows [c0, c0 + rows) of the slab dim, C-ordered in slot order:
    # its table is the term's with the output's strides and base replaced by the buffer's.
    bshape = list(shape)
    bshape[slab_dim] = rows
    bstrides = [math.prod(bshape[d + 1:]) for d in range(MAX_DIMS)]
    view_strides = tuple(bstrides[slot[d]] * out_dtype.itemsize if d in slot else 0
                         for d in range(len(plan.shape)))
    terms = [[(job.f, _rows(job.tables, np.int64), _rows(job.weights, np.float64))
              for job in output] for output in jobs]

    def slab(i: int, scratch: dict[str, Any]) -> bool:
        c0, c1 = i * rows, min(n, (i + 1) * rows)
        buf = scratch.get("buf")
        if buf is None:
            buf = scratch["buf"] = np.empty(math.prod(bshape), out_dtype)
        bad = False
        # np.errstate is per thread: set here, in the worker. Events show as non-finite values.
        with np.errstate(all="ignore"):
            for output, out, term_args in zip(plan.outputs, outs, terms, strict=True):
                bad |= _fused_output(output, out, term_args, c0, c1, buf)
        return bad

    def _fused_output(output, out, term_args, c0, c1, buf) -> bool:
        """One output's rows [c0, c1): its terms, combined in the plan's order."""
        o = _numpy_backend._rows(out, split, c0, c1)
        b = np.lib.stride_tricks.as_strided(buf, o.shape, view_strides)
        bad = False
        for k, (f, table, weights) in enumerate(term_args):
            if k == 0:
                bad |= kernel(f, (out_flat[id(out)],) * MAX_DIMS, table, weights, 1, c0, c1)
                continue
            table = table.copy()
            table[0, 9:13] = bstrides
            table[0, 13] = -c0 * bstrides[slab_dim]
            bad |= kernel(f, (buf,) * MAX_DIMS, table, weights, 1, c0, c1)
            if output.combine == "magnitude":  # sqrt((t0*t0 + t1*t1) + t2*t2 ...)
                if k == 1:
                    np.multiply(o, o, out=o)
                np.multiply(b, b, out=b)
                np.add(o, b, out=o)
            elif output.combine == "difference":  # t0 - t1
                np.subtract(o, b, out=o)
            else:  # "sum": (t0 + t1) + t2 ...
                np.add(o, b, out=o)
        if output.combine == "magnitude":
            if len(term_args) == 1:
                np.multiply(o, o, out=o)
            np.sqrt(o, out=o)
        if check:
            bad |= not np.isfinite(o).all()
        return bad

    out_flat = {id(out): output[0].outs[0] for out, output in zip(outs, jobs, strict=True)}
    return _in_parallel(math.ceil(n / rows), slab, size)


def _in_parallel(count: int, slab: Any, size: int) -> bool:
    """Run ``slab(i, scratch)`` for ``i`` in ``range(count)`` on worker threads; OR of results.

    Work is handed out dynamically: each worker takes the next slab index until none is left.
    ``scratch`` is a dict private to the worker (buffers it reuses from slab to slab).
    """
    workers = 1 if size < PARALLEL_MIN_ELEMENTS else min(_numpy_backend.thread_count(), count)
    if workers == 1:
        scratch: dict[str, Any] = {}
        return any([slab(i, scratch) for i in range(count)])
    lock = threading.Lock()
    following = iter(range(count))

    def worker() -> bool:
        bad = False
        scratch: dict[str, Any] = {}
        while True:
            with lock:
                i = next(following, None)
            if i is None:
                return bad
            bad |= bool(slab(i, scratch))

    pool = _numpy_backend._pool(workers - 1)
    futures = [pool.submit(worker) for _ in range(workers - 1)]
    bad = False
    try:
        bad = worker()
    finally:
        for fut in futures:
            bad |= fut.result()
    return bad


def _rows(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    """Stack the 1-D arrays ``parts`` as the rows of one 2-D array, zero-padded to one length."""
    table = np.zeros((len(parts), max(len(p) for p in parts)), dtype)
    for row, part in zip(table, parts, strict=True):
        row[:len(part)] = part
    return table


# --------------------------------------------------------------------------------------------------
# What `cugrad info` and `cugrad bench` report
# --------------------------------------------------------------------------------------------------

#: The compiled signatures: (name, bytes dtype, output dtype); see ``_numba_kernels``.
SIGNATURES = (("float32 data", "uint8", "float32"), ("float64 data", "uint8", "float64"),
              ("integer data", "int8", "float64"))


def info() -> dict[str, Any]:
    """Describe the engine for ``cugrad info``: availability, choice, numba, cache, load error.

    Imports numba when it is installed (not the kernels' compiled code).
    """
    try:
        engine = requested_engine()
    except ValueError as exc:
        engine = f"invalid ({exc})"
    result: dict[str, Any] = {"available": available(), "engine": engine,
                              "min_elements": ENGINE_MIN_ELEMENTS, "numba": None,
                              "cache_dir": None, "cache_filled": None, "load_error": None}
    if available():
        import numba

        result["numba"] = numba.__version__
        kernels = _load()
        if kernels is None:
            result["load_error"] = repr(_load_error)
        else:
            # numba keeps the directory on the dispatcher's cache object (private; hence getattr).
            cache = getattr(kernels.slab_axes, "_cache", None)
            result["cache_dir"] = getattr(cache, "_cache_path", None)
            result["cache_filled"] = _cache_filled(result["cache_dir"])
    return result


def _cache_filled(cache_dir: str | None) -> bool | None:
    """Whether numba's disk cache holds compiled code of the kernel (None: unknown)."""
    if not cache_dir:
        return None
    if not os.path.isdir(cache_dir):
        return False
    # numba's index file of a cached function: <module>.<function>-<line>.<python tag>.nbi
    return any(name.startswith("_numba_kernels.slab_axes-") and name.endswith(".nbi")
               for name in os.listdir(cache_dir))


def warm_up() -> dict[str, float]:
    """Compile (or load from numba's disk cache) every signature; seconds per signature.

    On an empty cache this is the first call's compilation cost; with the cache filled, the
    loading cost every new process pays once.
    """
    kernel = _kernels().slab_axes
    seconds = {}
    for name, raw, out in SIGNATURES:
        start = time.perf_counter()
        kernel.compile(signature(raw, out))
        seconds[name] = time.perf_counter() - start
    return seconds


def signature(raw: str, out: str) -> tuple[Any, ...]:
    """Return the argument types of :func:`_numba_kernels.slab_axes` for a ``SIGNATURES`` row."""
    from numba import types

    output = types.Array(getattr(types, out), 1, "C")
    return (types.Array(getattr(types, raw), 1, "C", readonly=True),
            types.UniTuple(output, MAX_DIMS), types.Array(types.int64, 2, "C"),
            types.Array(types.float64, 2, "C"), types.int64, types.int64, types.int64)
