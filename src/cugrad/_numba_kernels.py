"""The numba kernels of the compiled CPU engine (imported on first use; see ``_numba_backend``).

One kernel, :func:`slab_axes`, writes the derivatives along the requested axes for the rows
``[c0, c1)`` of the slab dim, reading each input value where it lies (no copy, no full-size
temporary). Arrays arrive as flat 1-D views of their memory (the input as bytes) plus element
strides and the input's dtype code in a table, so one compiled signature serves every layout (C,
Fortran, views, negative strides), every rank up to four and any number of axes. There are three
signatures: float32 data, float64 data, and every integer dtype at once (bytes typed int8, each
integer dtype a branch of the loads), because numba's compile time (seconds per signature) is what
a first call pays.

Exactness. The kernels evaluate :class:`cugrad._plan.Region` formulas in the documented order,
with every conversion written out: the data dtype ``D`` is the output's dtype (float32/float64
data; float64 for integers, converted on load as numpy converts them), the compute dtype ``C``
(float32 or float64) is chosen per region. ``"diff"``: a ``D`` difference, converted to ``C``, one
``C`` division. ``"comb"``: ``C`` products and left-to-right ``C`` sums. ``"dsum"``: ``D``
differences, ``C`` products and left-to-right sums. The last operation's result is rounded once
into the output. No ``fastmath``: LLVM then neither reassociates nor contracts ``a*b + c`` into a
fused multiply-add, so every operation rounds as numpy's ufunc loops do. ``error_model="numpy"``:
division by zero gives IEEE infinities and NaNs, as in numpy, instead of raising.

Floating-point events (division by zero, overflow, invalid) are not reported by compiled code: the
kernel returns whether it wrote a non-finite value, so that the caller can recompute with the NumPy
backend (which reports them as numpy does) when the caller's ``np.errstate`` asks for reports.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

DIFF, COMB, DSUM = 0, 1, 2

# The int64 table of one axis (built by ``_numba_backend``): a header, then one record per region.
# Header: [0:4] shape, [4:8] input element strides, [8] input base index, [9:13] output element
# strides, [13] output base index, [14] differentiated dim, [15] slab dim, [16] region count,
# [17] the input's dtype code (``CODES``).
HEADER = 18
#: The input dtypes, by code. The kernels receive the input as bytes and view it with its dtype
#: only where values are read, so all of them share the two compiled signatures (float32 and
#: float64 output): one compilation per output dtype, not one per input dtype.
CODES = ("float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
         "uint64")
# Record: start, stop, kind, compute bits (32 or 64), wrap, terms, per-row weights, weight base,
# lowest offset, highest offset, then the offsets (two per term for "diff"/"dsum", one for "comb").
MAX_OFFSETS = 16
RECORD = 10 + MAX_OFFSETS


def as_type_of(value, like):  # pragma: no cover - compiled code uses the overload below
    """``value`` converted (rounded to nearest) to the dtype of the array ``like``."""
    return like.dtype.type(value)


@overload(as_type_of)
def _as_type_of(value, like):
    if like.dtype == types.float32:
        return lambda value, like: np.float32(value)
    return lambda value, like: np.float64(value)


def _gather(code, kind, t, f, src, shift, fstep, o, count, val):  # pragma: no cover
    """:func:`_gather_typed` of the bytes ``f`` viewed as the input dtype ``CODES[code]``."""


@overload(_gather)
def _gather_impl(code, kind, t, f, src, shift, fstep, o, count, val):
    # The byte type tells the families apart, so that each compiles only its own loads: uint8
    # bytes hold float data (of the output's dtype), int8 bytes integer data (float64 output).
    if f.dtype == types.uint8 and o.dtype == types.float32:
        def impl(code, kind, t, f, src, shift, fstep, o, count, val):
            _gather_typed(kind, t, f.view(np.float32), src, shift, fstep, o, count, val)
        return impl
    if f.dtype == types.uint8:
        def impl(code, kind, t, f, src, shift, fstep, o, count, val):
            _gather_typed(kind, t, f.view(np.float64), src, shift, fstep, o, count, val)
        return impl

    def impl(code, kind, t, f, src, shift, fstep, o, count, val):
        if code == 2:
            _gather_typed(kind, t, f.view(np.int8), src, shift, fstep, o, count, val)
        elif code == 3:
            _gather_typed(kind, t, f.view(np.uint8), src, shift, fstep, o, count, val)
        elif code == 4:
            _gather_typed(kind, t, f.view(np.int16), src, shift, fstep, o, count, val)
        elif code == 5:
            _gather_typed(kind, t, f.view(np.uint16), src, shift, fstep, o, count, val)
        elif code == 6:
            _gather_typed(kind, t, f.view(np.int32), src, shift, fstep, o, count, val)
        elif code == 7:
            _gather_typed(kind, t, f.view(np.uint32), src, shift, fstep, o, count, val)
        elif code == 8:
            _gather_typed(kind, t, f.view(np.int64), src, shift, fstep, o, count, val)
        else:
            _gather_typed(kind, t, f.view(np.uint64), src, shift, fstep, o, count, val)
    return impl


def as_data(f, o):  # pragma: no cover - compiled code uses the overload below
    """View the bytes ``f`` as the output's dtype (the data dtype of float input)."""


@overload(as_data)
def _as_data(f, o):
    if o.dtype == types.float32:
        return lambda f, o: f.view(np.float32)
    return lambda f, o: f.view(np.float64)


@njit(cache=True, nogil=True, error_model="numpy")
def _gather_typed(kind, t, f, src, shift, fstep, o, count, val):
    """Term ``t``'s data-dtype values (``"comb"``) or differences into ``val[:count]``."""
    # Contiguous reads go through slices: indexing ``f[p + j]`` makes numba test each index for
    # a negative value (wraparound), which keeps LLVM from vectorising the loop well.
    if kind == COMB:
        p = src[t] + shift
        if fstep == 1:
            fp = f[p:p + count]
            for j in range(count):
                val[j] = as_type_of(fp[j], o)
        else:
            for j in range(count):
                val[j] = as_type_of(f[p + j * fstep], o)
    else:
        p = src[2 * t] + shift
        q = src[2 * t + 1] + shift
        if fstep == 1:
            fp = f[p:p + count]
            fq = f[q:q + count]
            for j in range(count):
                val[j] = as_type_of(fp[j], o) - as_type_of(fq[j], o)
        else:
            for j in range(count):
                val[j] = as_type_of(f[p + j * fstep], o) - as_type_of(f[q + j * fstep], o)


@njit(cache=True, nogil=True, error_model="numpy")
def _plane(code, kind, nterm, f, src, fstep, fline, wt, wsrc, wstep, o, ob, ostep, oline, count,
           nlines, acc, val):
    """``nlines`` lines of ``count`` outputs of one region, computed in ``acc``'s dtype.

    Output ``j`` of line ``l`` is ``o[ob + l*oline + j*ostep]``. Term ``t`` reads
    ``f[src[t] + l*fline + j*fstep]`` ("comb") or the pair at ``src[2t]`` and ``src[2t+1]``
    ("diff", "dsum"), with weight ``wt[wsrc[t] + j*wstep]`` (``wstep`` is 0 or 1; every line of a
    plane lies at the same rows of the differentiated dim). The contiguous uniform difference
    (numpy's interior with scalar spacing, the commonest case) is one fused loop; every other
    case goes term by term through the line buffers ``val`` (data dtype) and ``acc`` (running
    sums), which stay in L1, in simple loops that LLVM vectorises (a fused or strided variant of
    each would multiply numba's compile time). Returns whether a non-finite value was written.
    """
    bad = False
    if kind == DIFF and fstep == 1 and ostep == 1 and wstep == 0 and code < 2:
        # (code < 2: float data, whose dtype is the output's; integer data goes through _gather.)
        fd = as_data(f, o)
        w = as_type_of(wt[wsrc[0]], acc)
        for line in range(nlines):
            p = src[0] + line * fline
            q = src[1] + line * fline
            b = ob + line * oline
            fp = fd[p:p + count]
            fq = fd[q:q + count]
            ol = o[b:b + count]
            for j in range(count):
                v = as_type_of(as_type_of(fp[j], o) - as_type_of(fq[j], o), acc) / w
                ol[j] = v
                bad |= not (abs(v) < np.inf)
        return bad
    if fstep == 1 and ostep == 1 and code < 2 and (
            (kind == DSUM and wstep != 1 and 2 <= nterm <= 4) or (kind == COMB and nterm == 3)):
        # The commonest multi-term stencils, every term in one loop straight into the output (no
        # line buffer): numpy's interior for coordinates (three "comb" terms, weights per row
        # along the line or one per line) and the higher orders with weights constant along the
        # line ("dsum", two to four pairs). Sums run left to right, as in the general code below.
        # Only this path takes ``wstep == 2`` (see _axis_rows).
        return _fused_lines(kind, nterm, as_data(f, o), src, fline, wt, wsrc, wstep, o, ob,
                            oline, count, nlines, acc)
    if kind != DIFF and fstep == 1 and code < 2:
        # Float data read contiguously: each term in one pass over the line, no gather.
        fd = as_data(f, o)
        for line in range(nlines):
            shift = line * fline
            t = 0
            while t < nterm:
                w0 = wsrc[t]
                wl = wt[w0:w0 + count]
                w = as_type_of(wt[w0], acc)
                rest = t > 0
                if kind == DSUM and wstep == 0 and t + 1 < nterm:
                    # Two terms per pass (higher orders with scalar weights), still summed left
                    # to right: (acc + w0*d0) + w1*d1, or w0*d0 + w1*d1 for the first two.
                    w1 = as_type_of(wt[wsrc[t + 1]], acc)
                    p = src[2 * t] + shift
                    q = src[2 * t + 1] + shift
                    fp = fd[p:p + count]
                    fq = fd[q:q + count]
                    p = src[2 * t + 2] + shift
                    q = src[2 * t + 3] + shift
                    gp = fd[p:p + count]
                    gq = fd[q:q + count]
                    if rest:
                        for j in range(count):
                            acc[j] = ((acc[j] + w * as_type_of(fp[j] - fq[j], acc))
                                      + w1 * as_type_of(gp[j] - gq[j], acc))
                    else:
                        for j in range(count):
                            acc[j] = (w * as_type_of(fp[j] - fq[j], acc)
                                      + w1 * as_type_of(gp[j] - gq[j], acc))
                    t += 2
                    continue
                if kind == COMB:
                    fp = fd[src[t] + shift:src[t] + shift + count]
                    if wstep == 0 and rest:
                        for j in range(count):
                            acc[j] = acc[j] + w * as_type_of(fp[j], acc)
                    elif wstep == 0:
                        for j in range(count):
                            acc[j] = w * as_type_of(fp[j], acc)
                    elif rest:
                        for j in range(count):
                            acc[j] = acc[j] + as_type_of(wl[j], acc) * as_type_of(fp[j], acc)
                    else:
                        for j in range(count):
                            acc[j] = as_type_of(wl[j], acc) * as_type_of(fp[j], acc)
                else:
                    p = src[2 * t] + shift
                    q = src[2 * t + 1] + shift
                    fp = fd[p:p + count]
                    fq = fd[q:q + count]
                    if wstep == 0 and rest:
                        for j in range(count):
                            acc[j] = acc[j] + w * as_type_of(fp[j] - fq[j], acc)
                    elif wstep == 0:
                        for j in range(count):
                            acc[j] = w * as_type_of(fp[j] - fq[j], acc)
                    elif rest:
                        for j in range(count):
                            acc[j] = acc[j] + as_type_of(wl[j], acc) * as_type_of(fp[j] - fq[j],
                                                                                  acc)
                    else:
                        for j in range(count):
                            acc[j] = as_type_of(wl[j], acc) * as_type_of(fp[j] - fq[j], acc)
                t += 1
            bad |= _store(acc, o, ob + line * oline, ostep, count)
        return bad
    for line in range(nlines):
        shift = line * fline
        for t in range(nterm):
            _gather(code, kind, t, f, src, shift, fstep, o, count, val)
            w0 = wsrc[t]
            wl = wt[w0:w0 + count]
            if kind == DIFF:
                if wstep == 0:
                    w = as_type_of(wt[w0], acc)
                    for j in range(count):
                        acc[j] = as_type_of(val[j], acc) / w
                else:
                    for j in range(count):
                        acc[j] = as_type_of(val[j], acc) / as_type_of(wl[j], acc)
            elif t == 0:
                if wstep == 0:
                    w = as_type_of(wt[w0], acc)
                    for j in range(count):
                        acc[j] = w * as_type_of(val[j], acc)
                else:
                    for j in range(count):
                        acc[j] = as_type_of(wl[j], acc) * as_type_of(val[j], acc)
            else:
                if wstep == 0:
                    w = as_type_of(wt[w0], acc)
                    for j in range(count):
                        acc[j] = acc[j] + w * as_type_of(val[j], acc)
                else:
                    for j in range(count):
                        acc[j] = acc[j] + as_type_of(wl[j], acc) * as_type_of(val[j], acc)
        bad |= _store(acc, o, ob + line * oline, ostep, count)
    return bad


@njit(cache=True, nogil=True, error_model="numpy")
def _fused_lines(kind, nterm, fd, src, fline, wt, wsrc, wstep, o, ob, oline, count, nlines, acc):
    """:func:`_plane`'s one-loop stencils (see where it calls this); ``fd`` is the data.

    ``wstep``: 0, one weight per term; 1, weights per element along the line; 2, one weight per
    term and line, line ``l``'s at ``wsrc[t] + l`` (the lines are consecutive rows of the
    differentiated dim, each with its own weights).
    """
    bad = False
    for line in range(nlines):
        shift = line * fline
        b = ob + line * oline
        ol = o[b:b + count]
        wl = line if wstep == 2 else 0
        w0 = as_type_of(wt[wsrc[0] + wl], acc)
        w1 = as_type_of(wt[wsrc[1] + wl], acc)
        w2 = as_type_of(wt[wsrc[min(2, nterm - 1)] + wl], acc)
        w3 = as_type_of(wt[wsrc[nterm - 1] + wl], acc)
        if kind == COMB:
            f0 = fd[src[0] + shift:src[0] + shift + count]
            f1 = fd[src[1] + shift:src[1] + shift + count]
            f2 = fd[src[2] + shift:src[2] + shift + count]
            if wstep != 1:
                for j in range(count):
                    r = as_type_of((w0 * as_type_of(f0[j], acc) + w1 * as_type_of(f1[j], acc))
                                   + w2 * as_type_of(f2[j], acc), o)
                    ol[j] = r
                    bad |= not (abs(r) < np.inf)
            else:
                v0 = wt[wsrc[0]:wsrc[0] + count]
                v1 = wt[wsrc[1]:wsrc[1] + count]
                v2 = wt[wsrc[2]:wsrc[2] + count]
                for j in range(count):
                    r = as_type_of(
                        (as_type_of(v0[j], acc) * as_type_of(f0[j], acc)
                         + as_type_of(v1[j], acc) * as_type_of(f1[j], acc))
                        + as_type_of(v2[j], acc) * as_type_of(f2[j], acc), o)
                    ol[j] = r
                    bad |= not (abs(r) < np.inf)
            continue
        p0 = fd[src[0] + shift:src[0] + shift + count]
        q0 = fd[src[1] + shift:src[1] + shift + count]
        p1 = fd[src[2] + shift:src[2] + shift + count]
        q1 = fd[src[3] + shift:src[3] + shift + count]
        if nterm == 2:
            for j in range(count):
                r = as_type_of(w0 * as_type_of(p0[j] - q0[j], acc)
                               + w1 * as_type_of(p1[j] - q1[j], acc), o)
                ol[j] = r
                bad |= not (abs(r) < np.inf)
            continue
        p2 = fd[src[4] + shift:src[4] + shift + count]
        q2 = fd[src[5] + shift:src[5] + shift + count]
        if nterm == 3:
            for j in range(count):
                r = as_type_of((w0 * as_type_of(p0[j] - q0[j], acc)
                                + w1 * as_type_of(p1[j] - q1[j], acc))
                               + w2 * as_type_of(p2[j] - q2[j], acc), o)
                ol[j] = r
                bad |= not (abs(r) < np.inf)
            continue
        p3 = fd[src[6] + shift:src[6] + shift + count]
        q3 = fd[src[7] + shift:src[7] + shift + count]
        for j in range(count):
            r = as_type_of(((w0 * as_type_of(p0[j] - q0[j], acc)
                             + w1 * as_type_of(p1[j] - q1[j], acc))
                            + w2 * as_type_of(p2[j] - q2[j], acc))
                           + w3 * as_type_of(p3[j] - q3[j], acc), o)
            ol[j] = r
            bad |= not (abs(r) < np.inf)
    return bad


@njit(cache=True, nogil=True, error_model="numpy")
def _store(acc, o, b, ostep, count):
    """Round ``acc[:count]`` once into the output; returns whether one is not finite."""
    bad = False
    if ostep == 1:
        ol = o[b:b + count]
        for j in range(count):
            v = acc[j]
            ol[j] = v
            bad |= not (abs(v) < np.inf)
    else:
        for j in range(count):
            v = acc[j]
            o[b + j * ostep] = v
            bad |= not (abs(v) < np.inf)
    return bad


@njit(cache=True, nogil=True, error_model="numpy")
def _region_plane(it, r, f, fbase, fstep, fline, fk, n, row, wrap_rows, wt, wstep, o, ob, ostep,
                  oline, count, nlines, src, wsrc, acc32, acc64, val):
    """Region ``r`` over a plane whose first output lies at ``row`` of the differentiated dim.

    Input row ``row + offset`` of the first line is at ``fbase + (row + offset) * fk`` (its row
    taken modulo ``n`` when ``wrap_rows``).
    """
    rec = HEADER + RECORD * r
    kind = it[rec + 2]
    nterm = it[rec + 5]
    nsrc = nterm if kind == COMB else 2 * nterm
    for s in range(nsrc):
        j = row + it[rec + 10 + s]
        if wrap_rows:
            j %= n
        src[s] = fbase + j * fk
    wb = it[rec + 7]
    if it[rec + 6]:
        rows = it[rec + 1] - it[rec]
        for t in range(nterm):
            wsrc[t] = wb + t * rows + (row - it[rec])
        ws = wstep
    else:
        for t in range(nterm):
            wsrc[t] = wb + t
        ws = 0
    return _plane_in(it[rec + 3], it[17], kind, nterm, f, src, fstep, fline, wt, wsrc, ws, o, ob,
                     ostep, oline, count, nlines, acc32, acc64, val)


def _plane_in(bits, code, kind, nterm, f, src, fstep, fline, wt, wsrc, ws, o, ob, ostep, oline,
              count, nlines, acc32, acc64, val):  # pragma: no cover - compiled: the overload
    """:func:`_plane` computed in float32 (``bits == 32``) or float64."""


@overload(_plane_in)
def _plane_in_impl(bits, code, kind, nterm, f, src, fstep, fline, wt, wsrc, ws, o, ob, ostep,
                   oline, count, nlines, acc32, acc64, val):
    if o.dtype == types.float64:
        # float64 data never computes in float32 (NEP 50 promotes): compile one variant only.
        def impl(bits, code, kind, nterm, f, src, fstep, fline, wt, wsrc, ws, o, ob, ostep,
                 oline, count, nlines, acc32, acc64, val):
            return _plane(code, kind, nterm, f, src, fstep, fline, wt, wsrc, ws, o, ob, ostep,
                          oline, count, nlines, acc64, val)
        return impl

    def impl(bits, code, kind, nterm, f, src, fstep, fline, wt, wsrc, ws, o, ob, ostep, oline,
             count, nlines, acc32, acc64, val):
        if bits == 32:
            return _plane(code, kind, nterm, f, src, fstep, fline, wt, wsrc, ws, o, ob, ostep,
                          oline, count, nlines, acc32, val)
        return _plane(code, kind, nterm, f, src, fstep, fline, wt, wsrc, ws, o, ob, ostep, oline,
                      count, nlines, acc64, val)
    return impl


@njit(cache=True, nogil=True, error_model="numpy")
def slab_axes(f, outs, tables, weights, nax, c0, c1):
    """Write the derivatives along ``nax`` axes for the rows ``[c0, c1)`` of the slab dim.

    ``f`` is a flat view of the input's memory (bytes, see ``CODES``), ``outs[a]`` a flat view of
    axis ``a``'s output, ``tables[a]`` its table (see ``HEADER``/``RECORD``) and ``weights[a]``
    its weights (float64 values of the compute dtypes), rows padded to one length. The rows go
    one at a time, every axis for a row before the next row (a 1-D array's slab dim is its line,
    which goes whole): the input rows that a row's stencils read are then still in cache for
    the next axis, so the input comes from memory about once, not once per axis. (Blocks
    smaller than a row measured slower: the inner code's cost per call outweighs what L1/L2
    saves.) Returns whether a non-finite value was written.
    """
    it0 = tables[0]
    width = max(it0[0], it0[1], it0[2], it0[3], 1)
    lo = np.zeros(4, np.int64)
    hi = np.empty(4, np.int64)
    fs = np.empty(4, np.int64)
    os_ = np.empty(4, np.int64)
    src = np.empty(MAX_OFFSETS, np.int64)
    wsrc = np.empty(MAX_OFFSETS, np.int64)
    acc32 = np.empty(width, np.float32)
    acc64 = np.empty(width, np.float64)
    val = np.empty(width, outs[0].dtype)
    step = c1 - c0 if it0[15] == 3 else 1
    bad = False
    for r0 in range(c0, c1, step):
        r1 = min(r0 + step, c1)
        for a in range(nax):
            bad |= _axis_rows(f, outs[a], tables[a], weights[a], r0, r1, lo, hi, fs, os_, src,
                              wsrc, acc32, acc64, val)
    return bad


@njit(cache=True, nogil=True, error_model="numpy")
def _axis_rows(f, o, it, wt, c0, c1, lo, hi, fs, os_, src, wsrc, acc32, acc64, val):
    """Write the derivative along one axis for the rows ``[c0, c1)`` of the slab dim.

    ``it`` is the axis table, ``wt`` its weights; the other arrays are scratch space of
    :func:`slab_axes` (index bounds, strides, offsets, line buffers). Dim 3 is the line (the
    innermost loop); a plane is every line along dim ``L`` (2, or 1 when dim 2 is
    differentiated), so one call of the inner code covers many lines. Returns
    whether a non-finite value was written.
    """
    for d in range(4):
        lo[d] = 0
        hi[d] = it[d]
        fs[d] = it[4 + d]
        os_[d] = it[9 + d]
    s = it[15]
    lo[s] = c0
    hi[s] = c1
    k = it[14]
    nreg = it[16]
    n = it[k]
    fk = fs[k]
    dl = 1 if k == 2 else 2
    da = 0
    db = 2 if dl == 1 else 1
    nlines = hi[dl] - lo[dl]
    count3 = hi[3] - lo[3]
    bad = False
    if nlines <= 0 or count3 <= 0:
        return bad
    for ia in range(lo[da], hi[da]):
        ib = lo[db]
        while ib < hi[db]:
            fb = it[8] + ia * fs[da] + ib * fs[db] + lo[dl] * fs[dl]
            ob = it[13] + ia * os_[da] + ib * os_[db] + lo[dl] * os_[dl]
            if k < 3:
                # The differentiated dim is an outer loop: one region for the whole plane.
                row = ia if k == da else ib
                r = 0
                while not (it[HEADER + RECORD * r] <= row < it[HEADER + RECORD * r + 1]):
                    r += 1
                rec = HEADER + RECORD * r
                wrap = it[rec + 4] != 0
                cnt = 1
                per_row = it[rec + 6] != 0
                kind, nterm = it[rec + 2], it[rec + 5]
                if k == db and nlines == 1 and (not per_row or (
                        it[17] < 2 and fs[3] == 1 and os_[3] == 1 and (
                            (kind == COMB and nterm == 3) or (kind == DSUM and 2 <= nterm <= 4)))):
                    # A plane of one line (slab_axes goes row by row): the following rows of the
                    # same region whose reads stay inside the axis are the plane's lines instead
                    # (line l reads rows row + l + offset), so that one call covers them. With
                    # weights per row, only where _fused_lines takes them (wstep 2).
                    d1 = min(it[rec + 1], hi[db], n - it[rec + 9])
                    if row >= -it[rec + 8] and d1 > row + 1:
                        cnt = d1 - row
                        wrap = False
                if cnt > 1:
                    bad |= _region_plane(it, r, f, fb - row * fk + lo[3] * fs[3], fs[3], fk, fk,
                                         n, row, wrap, wt, 2 if per_row else 0, o,
                                         ob + lo[3] * os_[3], os_[3], os_[db], count3, cnt, src,
                                         wsrc, acc32, acc64, val)
                else:
                    bad |= _region_plane(it, r, f, fb - row * fk + lo[3] * fs[3], fs[3], fs[dl],
                                         fk, n, row, wrap, wt, 0, o, ob + lo[3] * os_[3], os_[3],
                                         os_[dl], count3, nlines, src, wsrc, acc32, acc64, val)
                ib += cnt
                continue
            # The differentiated dim is the line: each region covers part of it. Rows whose reads
            # stay inside the axis go as one block; on a periodic axis the rows near the ends
            # wrap, one column at a time. One call site keeps numba's compile time down.
            r = -1
            a = b = d0 = d1 = i = 0
            while True:
                if r < 0 or i >= b:
                    r += 1
                    if r >= nreg:
                        break
                    rec = HEADER + RECORD * r
                    a = max(it[rec], lo[3])
                    b = min(it[rec + 1], hi[3])
                    if b <= a:
                        i = b
                        continue
                    d0 = min(max(a, -it[rec + 8]), b)
                    d1 = max(min(b, n - it[rec + 9]), d0)
                    i = a
                if i < d0 or i >= d1:
                    wrap, cnt = True, 1
                else:
                    wrap, cnt = False, d1 - d0
                if cnt == 1:
                    # One row (an edge row, a wrapped row): its column across the plane's lines
                    # is the line, so that the loops run over nlines values, not over one.
                    pf, pl, pc, pn, po, pol, pw = fs[dl], 0, nlines, 1, os_[dl], 0, 0
                else:
                    pf, pl, pc, pn, po, pol, pw = fk, fs[dl], cnt, nlines, os_[3], os_[dl], 1
                bad |= _region_plane(it, r, f, fb, pf, pl, fk, n, i, wrap, wt, pw, o,
                                     ob + i * os_[3], po, pol, pc, pn, src, wsrc, acc32, acc64,
                                     val)
                i += cnt
            ib += 1
    return bad
