// SPDX-License-Identifier: BSD-3-Clause
// Copyright (c) 2026 cugrad developers
//
// cg_general_point: one element of numpy.gradient along one axis, for any layout and dtype. It is
// the body of cugrad's ElementwiseKernel general path (the preamble concatenates
// gradient_stencils.cuh and this file); the CPU emulation tests run it with a strided host array.
//
// What it computes: out[i] for the output element i (C-order index over the output's shape) of
// the rows [lo, lo + orows) of the axis, read from a window of f whose first row along the axis is
// global row fstart (frows rows). Without windows: lo = fstart = 0, orows = frows = n.
//
// Assumptions:
//   * `f`, the tables and `flag` are indexable with a flat C-order index (CuPy's CArray for
//     `raw` parameters, which follows any strides); `inner` is the product of the dimensions after
//     the axis, the same in f and out.
//   * Kinds: KD data (cg_half, float, double, cg_complex<T>; integer data loads as double), KI / KL
//     / KR the compute kinds of the interior, left and right stencils (numpy may promote them
//     differently), KO the output kind.
//   * Tables (each in its region's compute dtype; float16 as raw bits, complex as complex):
//       ia, ib, ic: interior coefficients, n - 2 each (CG_MODE_COORDS, CG_MODE_DEVICE)
//       si[0]: uniform interior divisor (CG_MODE_UNIFORM, CG_MODE_DEVICE)
//       sl, sr: left / right edge coefficients: [0..2] the coordinate (or only) variant,
//               [3..5] the uniform variant of CG_MODE_DEVICE; edge order 1 uses only [0] / [3].
//   * flag[0]: CG_MODE_DEVICE only, numpy's "evenly spaced coordinates" test, read on the device.
//
// Launch shape: CuPy's ElementwiseKernel (one thread per output element, grid-stride); every
// branch below depends on the row only, so threads of a warp mostly agree.

#ifndef CUGRAD_GRADIENT_GENERAL_CUH
#define CUGRAD_GRADIENT_GENERAL_CUH

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

template <class KD, class KI, class KL, class KR, class KO, int EO, class O, class F, class TI,
          class TL, class TR, class FL>
CG_FN void cg_general_point(O& out, const F& f, const TI& ia, const TI& ib, const TI& ic,
                            const TI& si, const TL& sl, const TR& sr, const FL& flag, long long i,
                            long long n, long long inner, long long orows, long long lo,
                            long long frows, long long fstart, int mode) {
    typedef cg_num<KD> ND;
    typedef typename ND::value D;
    const long long q = i / inner;
    const long long in = i - q * inner;
    const long long g = lo + q % orows;  // global row along the axis
    // f index of global row r is fbase + r * inner
    const long long fbase = (q / orows) * frows * inner + in - fstart * inner;
    const int edge_set = (mode == CG_MODE_DEVICE && flag[0]) ? 3 : 0;

    if (g == 0) {
        typedef cg_num<KL> NL;
        const D f0 = ND::load(f[fbase]);
        const D f1 = ND::load(f[fbase + inner]);
        typename NL::value r;
        if (EO == 1) {
            r = cg_diff<KD, KL>(f1, f0, NL::load(sl[edge_set]));
        } else {
            const D f2 = ND::load(f[fbase + 2 * inner]);
            r = cg_comb3<KD, KL>(NL::load(sl[edge_set]), NL::load(sl[edge_set + 1]),
                                 NL::load(sl[edge_set + 2]), f0, f1, f2);
        }
        cg_assign(out, cg_num<KO>::store(cg_convert<KL, KO>::apply(r)));
    } else if (g == n - 1) {
        typedef cg_num<KR> NR;
        const D f2 = ND::load(f[fbase + (n - 1) * inner]);
        const D f1 = ND::load(f[fbase + (n - 2) * inner]);
        typename NR::value r;
        if (EO == 1) {
            r = cg_diff<KD, KR>(f2, f1, NR::load(sr[edge_set]));
        } else {
            const D f0 = ND::load(f[fbase + (n - 3) * inner]);
            r = cg_comb3<KD, KR>(NR::load(sr[edge_set]), NR::load(sr[edge_set + 1]),
                                 NR::load(sr[edge_set + 2]), f0, f1, f2);
        }
        cg_assign(out, cg_num<KO>::store(cg_convert<KR, KO>::apply(r)));
    } else {
        typedef cg_num<KI> NI;
        const D fm = ND::load(f[fbase + (g - 1) * inner]);
        const D fp = ND::load(f[fbase + (g + 1) * inner]);
        typename NI::value r;
        if (mode == CG_MODE_UNIFORM || edge_set == 3) {
            r = cg_diff<KD, KI>(fp, fm, NI::load(si[0]));
        } else {
            const D f0 = ND::load(f[fbase + g * inner]);
            r = cg_comb3<KD, KI>(NI::load(ia[g - 1]), NI::load(ib[g - 1]), NI::load(ic[g - 1]), fm,
                                 f0, fp);
        }
        cg_assign(out, cg_num<KO>::store(cg_convert<KI, KO>::apply(r)));
    }
}

#endif  // CUGRAD_GRADIENT_GENERAL_CUH
