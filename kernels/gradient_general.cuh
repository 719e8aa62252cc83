// SPDX-License-Identifier: BSD-3-Clause
// Copyright (c) 2026 cugrad developers
//
// cg_general_point: one element of the derivative along one axis, for any layout, dtype and
// region list. It is the body of cugrad's ElementwiseKernel general path (the preamble
// concatenates gradient_stencils.cuh and this file); the CPU emulation runs it on strided host
// arrays.
//
// What it computes: out[i] for the output element i (C-order index over the output's shape) of
// the rows [lo, lo + orows) of the axis, read from a window of f whose first row along the axis is
// global row fstart (frows rows). Row g uses the region of the plan that holds it (cg_stencil's
// operation order); a neighbour row j = g + o maps to window row j - fstart when that lies in the
// window, else to (j mod n) - fstart (periodic axes; a window that holds the whole axis needs no
// halo copy). Without windows: lo = fstart = 0, orows = frows = n.
//
// Assumptions:
//   * `f`, `regs`, the weight tables and `flag` are indexable with a flat C-order index (CuPy's
//     CArray for `raw` parameters follows any strides); `inner` is the product of the dimensions
//     after the axis, the same in f and out.
//   * Kinds: KD data (cg_half, float, double, cg_complex<T>; integer and bool data load as
//     double), K0 .. K2 the compute kinds of the weight tables w0 .. w2 (NS of them are used:
//     numpy may compute regions of one axis in different dtypes), KO the output kind.
//   * regs (int64): [0] the number of regions of the plan, [1] the number of regions of its
//     uniform variant (device coordinates; 0 otherwise), then CG_GREC_SIZE values per region, the
//     plan's first: start, stop, kind, nterms, wrap, slot (which of w0 .. w2), per_row, wbase,
//     CG_MAX_OFFSETS offsets. Weight k of row g: w[wbase + k] (scalars) or
//     w[wbase + k * (stop - start) + g - start] (per_row).
//   * flag[0]: with a uniform variant, numpy's "evenly spaced coordinates" test, read on the
//     device; true selects the uniform variant's regions.
//
// Launch shape: CuPy's ElementwiseKernel (one thread per output element, grid-stride); every
// branch below depends on the row only, so the threads of a warp mostly agree.

#ifndef CUGRAD_GRADIENT_GENERAL_CUH
#define CUGRAD_GRADIENT_GENERAL_CUH

#define CG_GREC_SIZE (8 + CG_MAX_OFFSETS)
#define CG_GREC_START 0
#define CG_GREC_STOP 1
#define CG_GREC_KIND 2
#define CG_GREC_NTERMS 3
#define CG_GREC_WRAP 4
#define CG_GREC_SLOT 5
#define CG_GREC_PER_ROW 6
#define CG_GREC_WBASE 7
#define CG_GREC_OFF 8

// Writes a computed value into a stored element: reals and float16 bits as they are, complex
// values through the element type's (re, im) constructor (thrust::complex, std::complex).
template <class O, class T>
CG_FN void cg_assign(O& out, const T& v) {
    out = v;
}
template <class O, class T>
CG_FN void cg_assign(O& out, const cg_complex<T>& v) {
    out = O(v.re, v.im);
}

// Reads the data values of one row's offsets from the window.
template <class KD, class F, class R>
struct cg_general_nb {
    const F& f;
    const R& regs;
    long long rec, g, n, inner, frows, fstart, base;
    CG_FN void operator()(int j, typename cg_num<KD>::value (&x)[1]) const {
        const long long row = g + (long long)regs[rec + CG_GREC_OFF + j];
        long long w = row - fstart;
        if (w < 0 || w >= frows) {
            long long m = row % n;  // periodic: the row it stands for
            w = (m < 0 ? m + n : m) - fstart;
        }
        x[0] = cg_num<KD>::load(f[base + w * inner]);
    }
};

template <class K, class W, class R>
struct cg_general_wt {
    const W& w;
    const R& regs;
    long long rec, g;
    CG_FN void operator()(int k, typename cg_num<K>::value (&x)[1]) const {
        const long long start = regs[rec + CG_GREC_START];
        long long at = regs[rec + CG_GREC_WBASE];
        if (regs[rec + CG_GREC_PER_ROW]) {
            at += (long long)k * (regs[rec + CG_GREC_STOP] - start) + (g - start);
        } else {
            at += k;
        }
        x[0] = cg_num<K>::load(w[at]);
    }
};

template <class KD, class K, class KO, class O, class F, class R, class W>
CG_FN void cg_general_region(O& out, const F& f, const R& regs, const W& w, long long rec,
                             long long g, long long n, long long inner, long long frows,
                             long long fstart, long long base) {
    const cg_general_nb<KD, F, R> nb = {f, regs, rec, g, n, inner, frows, fstart, base};
    const cg_general_wt<K, W, R> wt = {w, regs, rec, g};
    typename cg_num<K>::value acc[1];
    cg_stencil<KD, K, 1>((int)regs[rec + CG_GREC_KIND], (int)regs[rec + CG_GREC_NTERMS], nb, wt,
                         acc);
    cg_assign(out, cg_num<KO>::store(cg_convert<K, KO>::apply(acc[0])));
}

template <class KD, int NS, class K0, class K1, class K2, class KO, class O, class F, class R,
          class W0, class W1, class W2, class FL>
CG_FN void cg_general_point(O& out, const F& f, const R& regs, const W0& w0, const W1& w1,
                            const W2& w2, const FL& flag, long long i, long long n,
                            long long inner, long long orows, long long lo, long long frows,
                            long long fstart) {
    const long long q = i / inner;
    const long long in = i - q * inner;
    const long long g = lo + q % orows;  // global row along the axis
    // f index of window row w: base + w * inner
    const long long base = (q / orows) * frows * inner + in;
    const long long nmain = regs[0];
    const long long nalt = regs[1];
    const bool alt = nalt > 0 && flag[0];
    long long first = alt ? nmain : 0;
    const long long count = alt ? nalt : nmain;
    long long rec = 2 + first * CG_GREC_SIZE;
    for (long long r = 0; r < count; ++r) {
        const long long at = 2 + (first + r) * CG_GREC_SIZE;
        if (g >= regs[at + CG_GREC_START] && g < regs[at + CG_GREC_STOP]) {
            rec = at;
            break;
        }
    }
    const long long slot = regs[rec + CG_GREC_SLOT];
    if constexpr (NS >= 2) {
        if (slot == 1) {
            cg_general_region<KD, K1, KO>(out, f, regs, w1, rec, g, n, inner, frows, fstart, base);
            return;
        }
    }
    if constexpr (NS >= 3) {
        if (slot == 2) {
            cg_general_region<KD, K2, KO>(out, f, regs, w2, rec, g, n, inner, frows, fstart, base);
            return;
        }
    }
    cg_general_region<KD, K0, KO>(out, f, regs, w0, rec, g, n, inner, frows, fstart, base);
}

#endif  // CUGRAD_GRADIENT_GENERAL_CUH
