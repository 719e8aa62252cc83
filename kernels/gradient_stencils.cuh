// SPDX-License-Identifier: BSD-3-Clause
// Copyright (c) 2026 cugrad developers
//
// numpy.gradient's stencil formulas and cugrad's higher-order and periodic ones, bit for bit, as
// device functions shared by every cugrad kernel (the RawKernel fast path in gradient_fast.cu and the ElementwiseKernel general path in
// gradient_general.cuh).
//
// Why each operation is spelled out instead of written as `a * b`:
//   * numpy rounds after every ufunc; so does this file. Every float / double operation goes
//     through cg_add / cg_sub / cg_mul / cg_div / cg_fma and the cg_to_* conversions: on the device
//     they are explicit PTX instructions with .rn and without .ftz, so the result is IEEE whatever
//     the compile flags say. That matters: CuPy appends -ftz=true to every compile (after the
//     caller's options, and NVRTC honours the last), which would flush float32 subnormals, and an
//     explicit .rn also forbids contraction into a fused multiply-add. --fmad=false is passed as
//     well; the CPU emulation builds the same code with -ffp-contract=off.
//   * float16: numpy computes each half operation in float32 and rounds to half after EVERY
//     operation (subtract, multiply, add, divide). cg_num<cg_half> does the same; the half bits are
//     converted in software (no cuda_fp16.h: NVRTC needs no CUDA headers, and double -> half must
//     round once, directly, as numpy's npy_doublebits_to_halfbits does).
//   * complex: numpy promotes a real coefficient to complex (imaginary +0, so inf * 0 gives nan as
//     in numpy), multiplies as (ar*br - ai*bi, ar*bi + ai*br) and divides with Smith's algorithm
//     (numpy/_core/src/umath/loops.c.src), including its zero-divisor branch. numpy's SIMD complex
//     multiply is fused on FMA hardware (npyv_muladdsub); CUGRAD_CMUL_FMA=1 reproduces that, and
//     the Python side defines it from what the host's numpy does.
//
// Kinds: a "kind" names how values of one dtype are computed. cg_num<K>::value is the register
// type, load() turns a stored element into a value, store() turns a value back into the stored
// element. Kinds: cg_half (float16), float, double, cg_complex<float>, cg_complex<double>.
//
// The stencils (bottom of the file) are data: a kind, offsets and weights per region of rows, as
// cugrad._plan.Region describes them; one function, cg_stencil, computes all of them for both
// kernels, so the operation order is written down once.

#ifndef CUGRAD_GRADIENT_STENCILS_CUH
#define CUGRAD_GRADIENT_STENCILS_CUH

#ifndef CUGRAD_CMUL_FMA
#define CUGRAD_CMUL_FMA 0
#endif

#define CG_FN __device__ __forceinline__

// ------------------------------------------------------------------------------------------------
// IEEE arithmetic, round to nearest even, subnormals kept, never fused
// ------------------------------------------------------------------------------------------------

#if defined(__CUDA_ARCH__)
#define CG_PTX_BINARY(NAME, T, PTX, C)                                    \
    CG_FN T NAME(T a, T b) {                                              \
        T r;                                                              \
        asm(PTX " %0, %1, %2;" : "=" C(r) : C(a), C(b));                  \
        return r;                                                         \
    }
CG_PTX_BINARY(cg_add, float, "add.rn.f32", "f")
CG_PTX_BINARY(cg_sub, float, "sub.rn.f32", "f")
CG_PTX_BINARY(cg_mul, float, "mul.rn.f32", "f")
CG_PTX_BINARY(cg_div, float, "div.rn.f32", "f")
CG_PTX_BINARY(cg_add, double, "add.rn.f64", "d")
CG_PTX_BINARY(cg_sub, double, "sub.rn.f64", "d")
CG_PTX_BINARY(cg_mul, double, "mul.rn.f64", "d")
CG_PTX_BINARY(cg_div, double, "div.rn.f64", "d")
#undef CG_PTX_BINARY
CG_FN float cg_fma(float a, float b, float c) {
    float r;
    asm("fma.rn.f32 %0, %1, %2, %3;" : "=f"(r) : "f"(a), "f"(b), "f"(c));
    return r;
}
CG_FN double cg_fma(double a, double b, double c) {
    double r;
    asm("fma.rn.f64 %0, %1, %2, %3;" : "=d"(r) : "d"(a), "d"(b), "d"(c));
    return r;
}
CG_FN float cg_to_float(double x) {
    float r;
    asm("cvt.rn.f32.f64 %0, %1;" : "=f"(r) : "d"(x));
    return r;
}
CG_FN double cg_to_double(float x) {
    double r;
    asm("cvt.f64.f32 %0, %1;" : "=d"(r) : "f"(x));
    return r;
}
#else  // host builds (the CPU emulation): plain IEEE arithmetic, compiled with -ffp-contract=off
CG_FN float cg_add(float a, float b) { return a + b; }
CG_FN float cg_sub(float a, float b) { return a - b; }
CG_FN float cg_mul(float a, float b) { return a * b; }
CG_FN float cg_div(float a, float b) { return a / b; }
CG_FN double cg_add(double a, double b) { return a + b; }
CG_FN double cg_sub(double a, double b) { return a - b; }
CG_FN double cg_mul(double a, double b) { return a * b; }
CG_FN double cg_div(double a, double b) { return a / b; }
CG_FN float cg_fma(float a, float b, float c) { return fmaf(a, b, c); }
CG_FN double cg_fma(double a, double b, double c) { return fma(a, b, c); }
CG_FN float cg_to_float(double x) { return (float)x; }
CG_FN double cg_to_double(float x) { return (double)x; }
#endif

// A host scalar passed as double (exact for float and double values) in the compute type.
template <class T>
CG_FN T cg_from_double(double x);
template <>
CG_FN float cg_from_double<float>(double x) { return cg_to_float(x); }
template <>
CG_FN double cg_from_double<double>(double x) { return x; }

// Sign-bit operations and comparisons on the bits: no floating-point instruction, so -ftz=true
// cannot turn a subnormal into zero here either.
CG_FN float cg_abs(float x) { return __uint_as_float(__float_as_uint(x) & 0x7fffffffu); }
CG_FN double cg_abs(double x) {
    return __longlong_as_double(__double_as_longlong(x) & 0x7fffffffffffffffll);
}
CG_FN float cg_neg(float x) { return __uint_as_float(__float_as_uint(x) ^ 0x80000000u); }
CG_FN double cg_neg(double x) {
    return __longlong_as_double(__double_as_longlong(x) ^ (long long)0x8000000000000000ull);
}
CG_FN bool cg_is_nan(float x) { return (__float_as_uint(x) & 0x7fffffffu) > 0x7f800000u; }
CG_FN bool cg_is_nan(double x) {
    return (__double_as_longlong(x) & 0x7fffffffffffffffll) > 0x7ff0000000000000ll;
}
// a >= b for a, b without sign bit (absolute values): false if either is nan, as in C.
CG_FN bool cg_abs_ge(float a, float b) {
    return !cg_is_nan(a) && !cg_is_nan(b) && __float_as_uint(a) >= __float_as_uint(b);
}
CG_FN bool cg_abs_ge(double a, double b) {
    return !cg_is_nan(a) && !cg_is_nan(b) && __double_as_longlong(a) >= __double_as_longlong(b);
}
CG_FN bool cg_abs_is_zero(float a) { return __float_as_uint(a) == 0u; }
CG_FN bool cg_abs_is_zero(double a) { return __double_as_longlong(a) == 0ll; }

// ------------------------------------------------------------------------------------------------
// float16 <-> float / double, round to nearest even, as numpy's halffloat conversions
// ------------------------------------------------------------------------------------------------

CG_FN float cg_half_to_float(unsigned short h) {
    const unsigned int sign = (unsigned int)(h & 0x8000u) << 16;
    const unsigned int exp = (h >> 10) & 0x1fu;
    const unsigned int mant = h & 0x3ffu;
    if (exp == 0x1fu) {  // inf, or nan with its payload kept
        return __uint_as_float(sign | 0x7f800000u | (mant << 13));
    }
    if (exp != 0) {
        return __uint_as_float(sign | ((exp + 112u) << 23) | (mant << 13));
    }
    if (mant == 0) return __uint_as_float(sign);
    // subnormal: mant * 2^-24 = 2^(k - 24) * (mant / 2^k), k the position of the top bit
    const unsigned int k = 31u - (unsigned int)__clz((int)mant);
    return __uint_as_float(sign | ((k + 103u) << 23) | ((mant << (23u - k)) & 0x7fffffu));
}

// Rounds the unsigned magnitude `sig >> shift` to nearest, ties to even.
CG_FN unsigned long long cg_shift_round_even(unsigned long long sig, int shift) {
    const unsigned long long kept = sig >> shift;
    const unsigned long long rest = sig & ((1ull << shift) - 1ull);
    const unsigned long long half = 1ull << (shift - 1);
    return kept + ((rest > half || (rest == half && (kept & 1ull))) ? 1ull : 0ull);
}

CG_FN unsigned short cg_float_to_half(float x) {
    const unsigned int f = __float_as_uint(x);
    const unsigned int sign = (f >> 16) & 0x8000u;
    const int fexp = (int)((f >> 23) & 0xffu);
    const unsigned int fsig = f & 0x007fffffu;
    if (fexp == 0xff) {
        if (fsig != 0) {  // nan: numpy keeps the top payload bits and makes sure it stays a nan
            unsigned int r = 0x7c00u + (fsig >> 13);
            if (r == 0x7c00u) r++;
            return (unsigned short)(sign + r);
        }
        return (unsigned short)(sign + 0x7c00u);
    }
    if (fexp >= 127 + 16) return (unsigned short)(sign + 0x7c00u);  // overflow to inf
    if (fexp >= 127 - 14) {                                          // normal half
        const unsigned long long m = ((unsigned long long)(fexp - 112) << 10) + (fsig >> 13);
        const unsigned long long rest = fsig & 0x1fffu;
        const bool up = rest > 0x1000u || (rest == 0x1000u && (m & 1ull));
        // a carry out of the mantissa bumps the exponent, up to inf: the right rounding
        return (unsigned short)(sign + (unsigned int)(m + (up ? 1u : 0u)));
    }
    if (fexp < 127 - 25) return (unsigned short)sign;  // below half the smallest subnormal
    // subnormal half: value / 2^-24 = (2^23 + fsig) >> (126 - fexp), rounded
    const unsigned long long sig = 0x800000ull | fsig;
    return (unsigned short)(sign + (unsigned int)cg_shift_round_even(sig, 126 - fexp));
}

CG_FN unsigned short cg_double_to_half(double x) {
    const unsigned long long d = (unsigned long long)__double_as_longlong(x);
    const unsigned int sign = (unsigned int)((d >> 48) & 0x8000ull);
    const int dexp = (int)((d >> 52) & 0x7ffull);
    const unsigned long long dsig = d & 0x000fffffffffffffull;
    if (dexp == 0x7ff) {
        if (dsig != 0) {
            unsigned int r = 0x7c00u + (unsigned int)(dsig >> 42);
            if (r == 0x7c00u) r++;
            return (unsigned short)(sign + r);
        }
        return (unsigned short)(sign + 0x7c00u);
    }
    if (dexp >= 1023 + 16) return (unsigned short)(sign + 0x7c00u);
    if (dexp >= 1023 - 14) {
        const unsigned long long m = ((unsigned long long)(dexp - 1008) << 10) + (dsig >> 42);
        const unsigned long long rest = dsig & ((1ull << 42) - 1ull);
        const unsigned long long halfway = 1ull << 41;
        const bool up = rest > halfway || (rest == halfway && (m & 1ull));
        return (unsigned short)(sign + (unsigned int)(m + (up ? 1u : 0u)));
    }
    if (dexp < 1023 - 25) return (unsigned short)sign;
    const unsigned long long sig = (1ull << 52) | dsig;
    return (unsigned short)(sign + (unsigned int)cg_shift_round_even(sig, 1051 - dexp));
}

CG_FN float cg_round_half(float x) { return cg_half_to_float(cg_float_to_half(x)); }

// ------------------------------------------------------------------------------------------------
// Kinds
// ------------------------------------------------------------------------------------------------

struct cg_half {};  // float16: values carried as float, rounded to half after every operation

template <class T>
struct cg_complex {
    T re, im;
};

template <class T>
CG_FN cg_complex<T> cg_make_complex(T re, T im) {
    cg_complex<T> z;
    z.re = re;
    z.im = im;
    return z;
}

template <class K>
struct cg_num;

template <>
struct cg_num<float> {
    typedef float value;
    typedef float storage;
    template <class S>
    static CG_FN value load(const S& s) { return (float)s; }
    static CG_FN storage store(value v) { return v; }
    static CG_FN value sub(value a, value b) { return cg_sub(a, b); }
    static CG_FN value add(value a, value b) { return cg_add(a, b); }
    static CG_FN value mul(value a, value b) { return cg_mul(a, b); }
    static CG_FN value div(value a, value b) { return cg_div(a, b); }
};

template <>
struct cg_num<double> {
    typedef double value;
    typedef double storage;
    template <class S>
    static CG_FN value load(const S& s) { return (double)s; }  // integers convert here, as astype
    static CG_FN storage store(value v) { return v; }
    static CG_FN value sub(value a, value b) { return cg_sub(a, b); }
    static CG_FN value add(value a, value b) { return cg_add(a, b); }
    static CG_FN value mul(value a, value b) { return cg_mul(a, b); }
    static CG_FN value div(value a, value b) { return cg_div(a, b); }
};

template <>
struct cg_num<cg_half> {
    typedef float value;
    typedef unsigned short storage;  // the bits of a float16
    static CG_FN value load(const unsigned short& s) { return cg_half_to_float(s); }
    static CG_FN storage store(value v) { return cg_float_to_half(v); }
    static CG_FN value sub(value a, value b) { return cg_round_half(cg_sub(a, b)); }
    static CG_FN value add(value a, value b) { return cg_round_half(cg_add(a, b)); }
    static CG_FN value mul(value a, value b) { return cg_round_half(cg_mul(a, b)); }
    static CG_FN value div(value a, value b) { return cg_round_half(cg_div(a, b)); }
};

template <class T>
struct cg_num<cg_complex<T> > {
    typedef cg_complex<T> value;
    typedef cg_complex<T> storage;
    // Any complex type with real() and imag(): thrust::complex in CuPy, std::complex on the host.
    template <class S>
    static CG_FN value load(const S& s) { return cg_make_complex<T>((T)s.real(), (T)s.imag()); }
    static CG_FN value load(const cg_complex<T>& s) { return s; }
    static CG_FN storage store(value v) { return v; }
    static CG_FN value sub(value a, value b) {
        return cg_make_complex<T>(cg_sub(a.re, b.re), cg_sub(a.im, b.im));
    }
    static CG_FN value add(value a, value b) {
        return cg_make_complex<T>(cg_add(a.re, b.re), cg_add(a.im, b.im));
    }
    static CG_FN value mul(value a, value b) {
#if CUGRAD_CMUL_FMA
        // numpy's SIMD loop: fmaddsub(a_re, b, a_im * b_swapped)
        return cg_make_complex<T>(cg_fma(a.re, b.re, cg_neg(cg_mul(a.im, b.im))),
                                  cg_fma(a.re, b.im, cg_mul(a.im, b.re)));
#else
        return cg_make_complex<T>(cg_sub(cg_mul(a.re, b.re), cg_mul(a.im, b.im)),
                                  cg_add(cg_mul(a.re, b.im), cg_mul(a.im, b.re)));
#endif
    }
    static CG_FN value div(value a, value b) {
        // Smith's algorithm, numpy's branches and operation order.
        const T br_abs = cg_abs(b.re);
        const T bi_abs = cg_abs(b.im);
        if (cg_abs_ge(br_abs, bi_abs)) {  // false for a nan divisor, as in numpy
            if (cg_abs_is_zero(br_abs) && cg_abs_is_zero(bi_abs)) {
                // numpy divides by the absolute values here: x / +0, never x / -0
                return cg_make_complex<T>(cg_div(a.re, br_abs), cg_div(a.im, bi_abs));
            }
            const T rat = cg_div(b.im, b.re);
            const T scl = cg_div((T)1.0, cg_add(b.re, cg_mul(b.im, rat)));
            return cg_make_complex<T>(cg_mul(cg_add(a.re, cg_mul(a.im, rat)), scl),
                                      cg_mul(cg_sub(a.im, cg_mul(a.re, rat)), scl));
        }
        const T rat = cg_div(b.re, b.im);
        const T scl = cg_div((T)1.0, cg_add(b.im, cg_mul(b.re, rat)));
        return cg_make_complex<T>(cg_mul(cg_add(cg_mul(a.re, rat), a.im), scl),
                                  cg_mul(cg_sub(cg_mul(a.im, rat), a.re), scl));
    }
};

// Conversions between kinds: exact widenings (data -> compute) and single roundings
// (compute -> output). Anything else is a bug in the caller and fails to compile.
template <class From, class To>
struct cg_convert;

template <class K>
struct cg_convert<K, K> {
    static CG_FN typename cg_num<K>::value apply(typename cg_num<K>::value v) { return v; }
};
template <>
struct cg_convert<cg_half, float> {
    static CG_FN float apply(float v) { return v; }
};
template <>
struct cg_convert<cg_half, double> {
    static CG_FN double apply(float v) { return cg_to_double(v); }
};
template <>
struct cg_convert<float, double> {
    static CG_FN double apply(float v) { return cg_to_double(v); }
};
template <>
struct cg_convert<double, float> {
    static CG_FN float apply(double v) { return cg_to_float(v); }
};
template <>
struct cg_convert<float, cg_half> {
    static CG_FN float apply(float v) { return cg_round_half(v); }
};
template <>
struct cg_convert<double, cg_half> {
    static CG_FN float apply(double v) { return cg_half_to_float(cg_double_to_half(v)); }
};
template <>
struct cg_convert<cg_complex<float>, cg_complex<double> > {
    static CG_FN cg_complex<double> apply(cg_complex<float> v) {
        return cg_make_complex<double>(cg_to_double(v.re), cg_to_double(v.im));
    }
};
template <>
struct cg_convert<cg_complex<double>, cg_complex<float> > {
    static CG_FN cg_complex<float> apply(cg_complex<double> v) {
        return cg_make_complex<float>(cg_to_float(v.re), cg_to_float(v.im));
    }
};

// ------------------------------------------------------------------------------------------------
// The stencils: THE operation order (cugrad._plan.Region says the same in Python)
// ------------------------------------------------------------------------------------------------
//
// A region of rows applies one stencil; row i reads f[i + o] for the offsets o of its kind (taken
// modulo the axis length on periodic axes, which the callers resolve into plain rows):
//   CG_KIND_DIFF (numpy's first difference): offsets (p, q), weight d:
//       (f[i+p] - f[i+q]) / d        the difference in the data kind, the quotient in the compute kind
//   CG_KIND_COMB (numpy's weighted sum): offsets (o0 .. ok-1), one weight each:
//       ((w0*f[i+o0] + w1*f[i+o1]) + w2*f[i+o2]) + ...      every product and sum in the compute kind
//   CG_KIND_DSUM (accuracy 4, 6, 8): offsets in pairs (p0, q0, p1, q1, ...), one weight a pair:
//       ((w0*(f[i+p0]-f[i+q0]) + w1*(f[i+p1]-f[i+q1])) + ...  each difference in the data kind, each
//                                                              product and sum in the compute kind
// The weight is the left operand of every product; the result is rounded once into the output
// kind by the caller. Data values enter the compute kind through exact widenings (cg_convert).
// Complex data uses complex weights (real weights promoted with imaginary +0, as numpy does).

#define CG_KIND_DIFF 0
#define CG_KIND_COMB 1
#define CG_KIND_DSUM 2
#define CG_MAX_TERMS 10    // terms of a comb, pairs of a dsum (9: second-derivative edges, accuracy 8)
#define CG_MAX_OFFSETS 20  // offsets of one stencil

// (fp - fq) / d: the difference in the data kind, the quotient in the compute kind.
template <class KD, class KC>
CG_FN typename cg_num<KC>::value cg_diff(typename cg_num<KD>::value fp,
                                         typename cg_num<KD>::value fq,
                                         typename cg_num<KC>::value d) {
    return cg_num<KC>::div(cg_convert<KD, KC>::apply(cg_num<KD>::sub(fp, fq)), d);
}

// The stencil at V lanes that share their offsets and kind (V = 1 for one element):
//   nb(j, x): x[l] = the data value of lane l at the j-th offset (j < 2 * nterms for DSUM)
//   wt(k, w): w[l] = the weight of term k at lane l
// cg_stencil_k has the kind as a template argument. UNROLL unrolls the term loop to NT terms, so
// that with nb and wt inlined the indices j and k are constants and a register window indexed
// through them stays in registers; otherwise the loop stays rolled (small code, any nterms).

template <class KD, class KC, int V, int KIND, class Nb, class Wt>
CG_FN void cg_stencil_term(int k, const Nb& nb, const Wt& wt,
                           typename cg_num<KC>::value (&acc)[V]) {
    typedef cg_num<KC> N;
    typedef cg_num<KD> ND;
    typedef typename N::value C;
    typename ND::value a[V];
    C w[V];
    wt(k, w);
    if (KIND == CG_KIND_COMB) {
        nb(k, a);
#pragma unroll
        for (int l = 0; l < V; ++l) {
            const C t = N::mul(w[l], cg_convert<KD, KC>::apply(a[l]));
            acc[l] = k == 0 ? t : N::add(acc[l], t);
        }
    } else {
        typename ND::value b[V];
        nb(2 * k, a);
        nb(2 * k + 1, b);
#pragma unroll
        for (int l = 0; l < V; ++l) {
            const C t = N::mul(w[l], cg_convert<KD, KC>::apply(ND::sub(a[l], b[l])));
            acc[l] = k == 0 ? t : N::add(acc[l], t);
        }
    }
}

template <class KD, class KC, int V, int KIND, int NT, bool UNROLL, class Nb, class Wt>
CG_FN void cg_stencil_k(int nterms, const Nb& nb, const Wt& wt,
                        typename cg_num<KC>::value (&acc)[V]) {
    if (KIND == CG_KIND_DIFF) {
        typename cg_num<KD>::value a[V], b[V];
        typename cg_num<KC>::value d[V];
        nb(0, a);
        nb(1, b);
        wt(0, d);
#pragma unroll
        for (int l = 0; l < V; ++l) acc[l] = cg_diff<KD, KC>(a[l], b[l], d[l]);
    } else if (UNROLL) {
#pragma unroll
        for (int k = 0; k < NT; ++k) {
            if (k < nterms) cg_stencil_term<KD, KC, V, KIND>(k, nb, wt, acc);
        }
    } else {
#pragma unroll 1
        for (int k = 0; k < nterms; ++k) cg_stencil_term<KD, KC, V, KIND>(k, nb, wt, acc);
    }
}

// Any kind, chosen at run time; rolled loops.
template <class KD, class KC, int V, class Nb, class Wt>
CG_FN void cg_stencil(int kind, int nterms, const Nb& nb, const Wt& wt,
                      typename cg_num<KC>::value (&acc)[V]) {
    if (kind == CG_KIND_DIFF) {
        cg_stencil_k<KD, KC, V, CG_KIND_DIFF, 1, false>(nterms, nb, wt, acc);
    } else if (kind == CG_KIND_COMB) {
        cg_stencil_k<KD, KC, V, CG_KIND_COMB, CG_MAX_TERMS, false>(nterms, nb, wt, acc);
    } else {
        cg_stencil_k<KD, KC, V, CG_KIND_DSUM, CG_MAX_TERMS, false>(nterms, nb, wt, acc);
    }
}

#endif  // CUGRAD_GRADIENT_STENCILS_CUH
