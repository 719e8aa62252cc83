// SPDX-License-Identifier: BSD-3-Clause
// Copyright (c) 2026 cugrad developers
//
// cugrad_gradient_fast<Tin, KC, V, Idx>: the derivative along EVERY requested axis of a
// C-contiguous array in ONE launch, reading the input once from DRAM (neighbours come from L1/L2)
// and writing each output once. Needs gradient_stencils.cuh in front of it (the loader
// concatenates them, with the tuning #defines first).
//
// What it computes: for each requested axis, every row with cg_stencil's operation order. The
// host (cugrad._cupy_backend) lowers the plan's regions of an axis into
//   * a body: rows [b_lo, b_hi) whose stencil reads only rows inside the axis, in one of the
//     canonical forms below, with scalar weights (double, exact for float and double) or per-row
//     weight tables;
//   * one record (cg_fast_rec, device memory) per other row: kind, offsets and scalar weights of
//     that row, periodic offsets already resolved into plain rows. At most CG_FAST_MAX_EDGE
//     such rows per side. The body's own record (its offsets, and its weights when they are
//     scalars) comes last.
// Canonical body forms (offsets relative to the output row, m <= CG_FAST_RMAX):
//   CG_FORM_DIFF   diff (1, -1)                         numpy's uniform interior, periodic acc. 2
//   CG_FORM_COMB3  comb (-1, 0, 1)                      numpy's coordinate interior
//   CG_FORM_DSYM   dsum (1, -1, 2, -2, .. m, -m)        uniform central rows, accuracy 2m
//   CG_FORM_DCOORD dsum (-m, 0, .. -1, 0, 1, 0, .. m, 0) coordinate central rows, accuracy 2m
//
// Device coordinates: numpy's "evenly spaced" test lives on the device (`flag`, one byte), and
// the plan carries both variants; the kernel reads the flag and takes the uniform variant's form
// and records (`form_alt`, `m_alt`, `recs_alt`; scalar weights) when it is set. Both variants
// share their body rows. Axes the lowering cannot express (regions of several compute dtypes,
// bodies outside the forms) go to the general path.
//
// Assumptions (checked by cugrad._cupy_backend before launching):
//   * f and every output are C-contiguous with the same shape; outputs do not overlap f, and
//     start at the same offset from V-element alignment as f (`phase`).
//   * Tin is float, double or an integer type (integers are converted to double on load, numpy's
//     astype(float64)); the data kind is float for float input, double otherwise; the output holds
//     the data kind. One compute kind KC (float or double) for every row of every axis.
//   * The shape is collapsed on the host into P planes x H rows x W columns: unrequested
//     dimensions next to each other merge, size-1 ones vanish; the last collapsed dimension is W
//     ("x"), the one before it H ("y"), the others index planes. At most CG_FAST_MAX_PLANE_AXES
//     requested axes are plane axes (more go to another launch).
//   * Idx (int or long long) holds every element index: long long from a byte extent of 2^31.
//
// Launch shape: 1-D grid of 1-D blocks (CG_FAST_BLOCK threads), grid-stride over work items.
// Items [0, nvec) are vector tiles: V consecutive, V-aligned columns of CG_FAST_ROWS rows of one
// plane. Each row of a tile is one 16-byte (V-element) load and one streaming store (__stcs: the
// outputs are not read again) per axis; consecutive threads take consecutive chunks, so warps
// issue coalesced 16-byte accesses. In a row, the chunks start at the first V-aligned column at
// or after x's body start (the alignment of a row depends on the row when W % V != 0), and stop
// before x's body ends. Items [nvec, nvec + nscalar) compute one element each: the columns of a
// row before its first chunk (x's first edge rows and the unaligned head) and after its last
// chunk (the unaligned tail and x's last edge rows). Vector and scalar items sit in separate
// ranges, so a warp runs one kind or the other: edge columns never serialise a warp of vector
// tiles. Along y and the plane axes a tile's row is one row for all V lanes, so edge rows cost a
// branch that is uniform across the tile. Neighbours along x come from a register window (the
// tile's chunk and up to m scalar loads each side); along y and the plane axes they are V-wide
// loads (16-byte when the axis stride keeps V-alignment, `nbr_vec`), which hit L1/L2.

#ifndef CG_FAST_ROWS
#define CG_FAST_ROWS 2  // rows per vector tile (tuning knob: rows that share one tile decode)
#endif
#ifndef CG_FAST_BLOCK
#define CG_FAST_BLOCK 256  // threads per block (tuning knob)
#endif
#ifndef CG_FAST_MIN_BLOCKS
// Resident blocks per SM the compiler must allow: caps the registers per thread at
// 65536 / (CG_FAST_BLOCK * CG_FAST_MIN_BLOCKS) (tuning knob). No variant may spill under it: the
// kernel_budget tests check every variant with ptxas.
#define CG_FAST_MIN_BLOCKS 2
#endif
#define CG_FAST_MAX_PLANE_AXES 2
#define CG_FAST_RMAX 4      // reach of a body stencil (accuracy 8)
#define CG_FAST_MAX_EDGE 8  // rows per side that are not body rows (accuracy 8 edges reach 8)

#define CG_FORM_DIFF 0
#define CG_FORM_COMB3 1
#define CG_FORM_DSYM 2
#define CG_FORM_DCOORD 3

// One row's stencil, in device memory (an array per axis: rows [0, b_lo), then [b_hi, n), then
// the body). Device memory rather than the parameter block: the term loops stay rolled, and a
// run-time index into kernel parameters would copy them to local memory.
struct cg_fast_rec {
    int kind;                 // CG_KIND_*
    int nterms;               // comb terms or dsum pairs (1 for diff)
    int off[CG_MAX_OFFSETS];  // offsets, resolved into rows of the axis
    double w[CG_MAX_TERMS];   // weights in the compute kind, exact in double
};

// Every field is 8 bytes wide, so the layout is the same on the host (a numpy structured dtype,
// cugrad._cupy_backend.FAST_PARAMS_DTYPE), on the device and in the CPU emulation.
struct cg_fast_axis {
    long long n;             // length of the axis
    long long stride;        // elements between neighbours along the axis
    long long pstride;       // plane axes: planes between neighbours; row = plane/pstride % n
    long long b_lo, b_hi;    // body rows
    long long form, m;       // canonical form of the body, its reach
    long long wstride;       // per-row body weights: rows per term (b_hi - b_lo)
    unsigned long long out;  // output (data kind), C-contiguous, f's shape
    unsigned long long wrow; // per-row body weights (compute kind) [term][row - b_lo], or 0
    unsigned long long recs; // cg_fast_rec of every non-body row, then the body's
    unsigned long long flag; // device coordinates: numpy's "evenly spaced" byte, else 0
    long long form_alt, m_alt;  // the uniform variant's body (when the flag is set)
    unsigned long long recs_alt;  // the uniform variant's records
};

// Device coordinates whose values are evenly spaced take the uniform variant.
CG_FN bool cg_fast_alt(const cg_fast_axis& a) {
    return a.flag != 0 && __ldg(reinterpret_cast<const unsigned char*>(a.flag)) != 0;
}

struct cg_fast_params {
    long long W, H, P;         // collapsed geometry
    long long nxc, nyt, nvec;  // chunks per row (at most), row groups per plane, vector tiles
    long long nsl, nsr;        // scalar items per row before the first and after the last chunk
    long long nitems;          // vector tiles + scalar items
    long long phase;           // f's first element, in elements past V-alignment
    long long nbr_vec;         // the y and plane strides keep V-alignment (W % V == 0)
    long long xlo, xhi;        // columns the chunks may cover (x's body; [0, W) without x)
    long long has_x, has_y, nplanes;
    cg_fast_axis x, y;
    cg_fast_axis plane[CG_FAST_MAX_PLANE_AXES];
    unsigned long long f;      // input
};

// ------------------------------------------------------------------------------------------------
// V consecutive elements moved as 16-byte (or narrower) words
// ------------------------------------------------------------------------------------------------

template <int BYTES>
struct cg_word;
template <>
struct cg_word<16> {
    typedef uint4 type;
};
template <>
struct cg_word<8> {
    typedef uint2 type;
};
template <>
struct cg_word<4> {
    typedef unsigned int type;
};
template <>
struct cg_word<2> {
    typedef unsigned short type;
};
template <>
struct cg_word<1> {
    typedef unsigned char type;
};

template <class T, int V>
struct cg_pack {
    enum { BYTES = (int)sizeof(T) * V, WORD = BYTES > 16 ? 16 : BYTES, NWORDS = BYTES / WORD };
    typedef typename cg_word<WORD>::type word;
    union {
        T v[V];
        word w[NWORDS];
    };
};

// V elements at p (aligned to V elements): non-coherent 16-byte loads (ld.global.nc.v4).
template <class KD, class Tin, int V>
CG_FN void cg_fast_load(const Tin* p, typename cg_num<KD>::value (&out)[V]) {
    typedef cg_pack<Tin, V> P;
    P k;
#pragma unroll
    for (int w = 0; w < P::NWORDS; ++w) {
        k.w[w] = __ldg(reinterpret_cast<const typename P::word*>(p) + w);
    }
#pragma unroll
    for (int l = 0; l < V; ++l) out[l] = cg_num<KD>::load(k.v[l]);
}

template <class KD, class Tin>
CG_FN typename cg_num<KD>::value cg_fast_load1(const Tin* p) {
    return cg_num<KD>::load(__ldg(p));
}

// V elements at p, aligned or not (`vec` says which; uniform across the launch).
template <class KD, class Tin, int V>
CG_FN void cg_fast_load_any(const Tin* p, bool vec, typename cg_num<KD>::value (&out)[V]) {
    if (V == 1 || vec) {
        cg_fast_load<KD, Tin, V>(p, out);
    } else {
#pragma unroll
        for (int l = 0; l < V; ++l) out[l] = cg_fast_load1<KD, Tin>(p + l);
    }
}

template <class T, int V>
CG_FN void cg_fast_store(T* p, const T (&v)[V]) {
    typedef cg_pack<T, V> P;
    P k;
#pragma unroll
    for (int l = 0; l < V; ++l) k.v[l] = v[l];
#pragma unroll
    for (int w = 0; w < P::NWORDS; ++w) {
        __stcs(reinterpret_cast<typename P::word*>(p) + w, k.w[w]);
    }
}

// ------------------------------------------------------------------------------------------------
// Neighbours and weights for cg_stencil
// ------------------------------------------------------------------------------------------------

// Offset of operand j of the canonical body forms whose offsets are compile-time functions of j
// (CG_FORM_DIFF and CG_FORM_DSYM: 1, -1, 2, -2, ...; CG_FORM_COMB3: -1, 0, 1).
template <int FORM>
CG_FN int cg_form_offset(int j) {
    return FORM == CG_FORM_COMB3 ? j - 1 : ((j & 1) ? -(j / 2 + 1) : j / 2 + 1);
}

// x, forms with compile-time offsets: lane l's neighbour at offset o is win[RMAX + l + o].
template <class D, int V, int FORM>
struct cg_fast_xwin {
    const D (&win)[V + 2 * CG_FAST_RMAX];
    CG_FN void operator()(int j, D (&x)[V]) const {
        const int o = cg_form_offset<FORM>(j);
#pragma unroll
        for (int l = 0; l < V; ++l) x[l] = win[CG_FAST_RMAX + l + o];
    }
};

// x, CG_FORM_DCOORD (pairs (o, 0)): the centre from the window, the other points loaded one by
// one (L1 hits).
template <class KD, class Tin, int V, class Idx>
struct cg_fast_xdcoord {
    typedef typename cg_num<KD>::value D;
    const D (&win)[V + 2 * CG_FAST_RMAX];
    const Tin* p;  // lane 0's element
    const cg_fast_rec* rec;
    CG_FN void operator()(int j, D (&x)[V]) const {
        if (j & 1) {
#pragma unroll
            for (int l = 0; l < V; ++l) x[l] = win[CG_FAST_RMAX + l];
        } else {
            const Idx o = (Idx)__ldg(&rec->off[j]);
#pragma unroll
            for (int l = 0; l < V; ++l) x[l] = cg_fast_load1<KD, Tin>(p + (o + (Idx)l));
        }
    }
};

// Any axis, the record's offsets, neighbours s elements apart: V-wide at p + o * s.
template <class KD, class Tin, int V, class Idx>
struct cg_fast_mem {
    typedef typename cg_num<KD>::value D;
    const Tin* p;  // lane 0's element
    Idx s;
    bool vec;
    const cg_fast_rec* rec;
    CG_FN void operator()(int j, D (&x)[V]) const {
        cg_fast_load_any<KD, Tin, V>(p + (Idx)__ldg(&rec->off[j]) * s, vec, x);
    }
};

// Weights: per-row tables (lane l at body row r0 + l * dr: dr = 1 along x, 0 along the other
// axes), else the record's scalars.
template <class KC, int V, class Idx>
struct cg_fast_wt {
    typedef typename cg_num<KC>::value C;
    const cg_fast_rec* rec;
    const C* tab;  // per-row weights at the first lane's row, or 0
    Idx wstride;
    int dr;
    CG_FN void operator()(int k, C (&w)[V]) const {
        if (tab != 0) {
#pragma unroll
            for (int l = 0; l < V; ++l) w[l] = __ldg(tab + (Idx)k * wstride + (Idx)(l * dr));
        } else {
            const C v = cg_from_double<C>(__ldg(&rec->w[k]));
#pragma unroll
            for (int l = 0; l < V; ++l) w[l] = v;
        }
    }
};

template <class KD, class KC, int V>
CG_FN void cg_fast_round(const typename cg_num<KC>::value (&acc)[V],
                         typename cg_num<KD>::value (&res)[V]) {
#pragma unroll
    for (int l = 0; l < V; ++l) res[l] = cg_convert<KC, KD>::apply(acc[l]);
}

// The derivative along axis a at V consecutive elements (lane 0 at f + idx) that share their row
// r along a (y, plane axes; and x with V = 1), neighbours s elements apart.
template <class KD, class KC, int V, class Tin, class Idx>
CG_FN void cg_fast_row(const Tin* f, Idx idx, Idx r, Idx s, bool vec, const cg_fast_axis& a,
                       typename cg_num<KD>::value (&res)[V]) {
    typedef typename cg_num<KC>::value C;
    const Idx n = (Idx)a.n;
    const Idx b_lo = (Idx)a.b_lo;
    const Idx b_hi = (Idx)a.b_hi;
    const bool body = r >= b_lo && r < b_hi;
    const Idx at = body ? b_lo + (n - b_hi) : (r < b_lo ? r : b_lo + (r - b_hi));
    const bool alt = cg_fast_alt(a);
    const cg_fast_rec* rec = reinterpret_cast<const cg_fast_rec*>(alt ? a.recs_alt : a.recs) + at;
    const C* tab = (body && a.wrow && !alt) ? reinterpret_cast<const C*>(a.wrow) + (r - b_lo)
                                            : (const C*)0;
    const cg_fast_mem<KD, Tin, V, Idx> nb = {f + idx, s, vec, rec};
    const cg_fast_wt<KC, V, Idx> wt = {rec, tab, (Idx)a.wstride, 0};
    C acc[V];
    cg_stencil<KD, KC, V>(__ldg(&rec->kind), __ldg(&rec->nterms), nb, wt, acc);
    cg_fast_round<KD, KC, V>(acc, res);
}

// x at a V-aligned chunk whose V columns c0 .. c0 + V - 1 are all body columns: neighbours from a
// register window.
template <class KD, class KC, int V, class Tin, class Idx>
CG_FN void cg_fast_x_body(const Tin* f, Idx idx, Idx c0, const cg_fast_axis& a,
                          const typename cg_num<KD>::value (&own)[V],
                          typename cg_num<KD>::value (&res)[V]) {
    typedef typename cg_num<KD>::value D;
    typedef typename cg_num<KC>::value C;
    const bool alt = cg_fast_alt(a);
    const long long form = alt ? a.form_alt : a.form;
    const int m = (int)(alt ? a.m_alt : a.m);
    D win[V + 2 * CG_FAST_RMAX];
#pragma unroll
    for (int l = 0; l < V; ++l) win[CG_FAST_RMAX + l] = own[l];
#pragma unroll
    for (int k = 1; k <= CG_FAST_RMAX; ++k) {
        // body columns read only columns of the row: c0 - m >= 0 and c0 + V - 1 + m < W
        win[CG_FAST_RMAX - k] = k <= m ? cg_fast_load1<KD, Tin>(f + idx - k) : (D)0;
        win[CG_FAST_RMAX + V - 1 + k] =
            k <= m ? cg_fast_load1<KD, Tin>(f + idx + (V - 1 + k)) : (D)0;
    }
    const cg_fast_rec* rec = reinterpret_cast<const cg_fast_rec*>(alt ? a.recs_alt : a.recs) +
                             (a.b_lo + (a.n - a.b_hi));
    const C* tab = (a.wrow && !alt) ? reinterpret_cast<const C*>(a.wrow) + (c0 - (Idx)a.b_lo)
                                    : (const C*)0;
    const cg_fast_wt<KC, V, Idx> wt = {rec, tab, (Idx)a.wstride, 1};
    C acc[V];
    if (form == CG_FORM_DIFF) {
        const cg_fast_xwin<D, V, CG_FORM_DSYM> nb = {win};
        cg_stencil_k<KD, KC, V, CG_KIND_DIFF, 1, true>(1, nb, wt, acc);
    } else if (form == CG_FORM_COMB3) {
        const cg_fast_xwin<D, V, CG_FORM_COMB3> nb = {win};
        cg_stencil_k<KD, KC, V, CG_KIND_COMB, 3, true>(3, nb, wt, acc);
    } else if (form == CG_FORM_DSYM) {
        const cg_fast_xwin<D, V, CG_FORM_DSYM> nb = {win};
        cg_stencil_k<KD, KC, V, CG_KIND_DSUM, CG_FAST_RMAX, true>(m, nb, wt, acc);
    } else {
        const cg_fast_xdcoord<KD, Tin, V, Idx> nb = {win, f + idx, rec};
        cg_stencil_k<KD, KC, V, CG_KIND_DSUM, 2 * CG_FAST_RMAX, false>(2 * m, nb, wt, acc);
    }
    cg_fast_round<KD, KC, V>(acc, res);
}

template <class Tin>
struct cg_fast_data_kind {
    typedef double type;  // integers: numpy differences them in float64
};
template <>
struct cg_fast_data_kind<float> {
    typedef float type;
};

// First column of row g (global row over planes) that starts a V-aligned chunk at or after xlo.
template <int V, class Idx>
CG_FN Idx cg_fast_chunk_start(Idx g, Idx W, Idx phase, Idx xlo) {
    if (V == 1) return xlo;
    const Idx mis = (phase + g * W + xlo) % (Idx)V;
    return xlo + (mis == 0 ? (Idx)0 : (Idx)V - mis);
}

// ------------------------------------------------------------------------------------------------
// The kernel
// ------------------------------------------------------------------------------------------------

template <class Tin, class KC, int V, class Idx>
__global__ void __launch_bounds__(CG_FAST_BLOCK, CG_FAST_MIN_BLOCKS)
    cugrad_gradient_fast(const cg_fast_params p) {
    typedef typename cg_fast_data_kind<Tin>::type KD;
    typedef typename cg_num<KD>::value D;
    const int R = CG_FAST_ROWS;

    const Tin* __restrict__ f = reinterpret_cast<const Tin*>(p.f);
    const Idx W = (Idx)p.W;
    const Idx H = (Idx)p.H;
    const Idx nxc = (Idx)p.nxc;
    const Idx nyt = (Idx)p.nyt;
    const Idx nvec = (Idx)p.nvec;
    const Idx nsl = (Idx)p.nsl;
    const Idx nsc = nsl + (Idx)p.nsr;
    const Idx nitems = (Idx)p.nitems;
    const Idx phase = (Idx)p.phase;
    const Idx xlo = (Idx)p.xlo;
    const Idx xhi = (Idx)p.xhi;
    const bool nbr_vec = p.nbr_vec != 0;
    const bool has_x = p.has_x != 0;
    const bool has_y = p.has_y != 0;
    const int nplanes = (int)p.nplanes;

    const Idx step = (Idx)gridDim.x * (Idx)blockDim.x;
    for (Idx t = (Idx)blockIdx.x * (Idx)blockDim.x + (Idx)threadIdx.x; t < nitems; t += step) {
        if (t < nvec) {
            // ---- a vector tile: chunk xc of rows y0 .. y0 + R - 1 of plane pl ----------------
            const Idx xc = t % nxc;
            const Idx rest = t / nxc;
            const Idx y0 = (rest % nyt) * R;
            const Idx pl = rest / nyt;
            // Rolled: the rows of a tile share the tile decode; unrolling them would multiply the
            // code of every form and axis by R.
#pragma unroll 1
            for (int j = 0; j < R; ++j) {
                const Idx y = y0 + j;
                const Idx g = pl * H + y;
                const Idx c0 = cg_fast_chunk_start<V, Idx>(g, W, phase, xlo) + xc * V;
                if (y < H && c0 + V <= xhi) {
                    const Idx idx = g * W + c0;
                    D own[V];
                    cg_fast_load<KD, Tin, V>(f + idx, own);
                    D res[V];
                    if (has_x) {
                        cg_fast_x_body<KD, KC, V, Tin, Idx>(f, idx, c0, p.x, own, res);
                        cg_fast_store<D, V>(reinterpret_cast<D*>(p.x.out) + idx, res);
                    }
                    if (has_y) {
                        cg_fast_row<KD, KC, V, Tin, Idx>(f, idx, y, W, nbr_vec, p.y, res);
                        cg_fast_store<D, V>(reinterpret_cast<D*>(p.y.out) + idx, res);
                    }
#pragma unroll
                    for (int q = 0; q < CG_FAST_MAX_PLANE_AXES; ++q) {
                        if (q < nplanes) {
                            const Idx rk = (pl / (Idx)p.plane[q].pstride) % (Idx)p.plane[q].n;
                            cg_fast_row<KD, KC, V, Tin, Idx>(f, idx, rk, (Idx)p.plane[q].stride,
                                                             nbr_vec, p.plane[q], res);
                            cg_fast_store<D, V>(reinterpret_cast<D*>(p.plane[q].out) + idx, res);
                        }
                    }
                }
            }
        } else {
            // ---- one element outside the chunks of its row -----------------------------------
            const Idx u = t - nvec;
            const Idx g = u / nsc;
            const Idx slot = u - g * nsc;
            const Idx hs = cg_fast_chunk_start<V, Idx>(g, W, phase, xlo);
            const Idx nc = xhi > hs ? (xhi - hs) / (Idx)V : (Idx)0;
            const Idx te = hs + nc * (Idx)V;
            const Idx c = slot < nsl ? slot : te + (slot - nsl);
            const bool valid = slot < nsl ? (c < hs && c < W) : c < W;
            if (valid) {
                const Idx idx = g * W + c;
                const Idx pl = g / H;
                const Idx y = g - pl * H;
                D res[1];
                if (has_x) {
                    cg_fast_row<KD, KC, 1, Tin, Idx>(f, idx, c, (Idx)1, false, p.x, res);
                    reinterpret_cast<D*>(p.x.out)[idx] = res[0];
                }
                if (has_y) {
                    cg_fast_row<KD, KC, 1, Tin, Idx>(f, idx, y, W, false, p.y, res);
                    reinterpret_cast<D*>(p.y.out)[idx] = res[0];
                }
#pragma unroll
                for (int q = 0; q < CG_FAST_MAX_PLANE_AXES; ++q) {
                    if (q < nplanes) {
                        const Idx rk = (pl / (Idx)p.plane[q].pstride) % (Idx)p.plane[q].n;
                        cg_fast_row<KD, KC, 1, Tin, Idx>(f, idx, rk, (Idx)p.plane[q].stride, false,
                                                         p.plane[q], res);
                        reinterpret_cast<D*>(p.plane[q].out)[idx] = res[0];
                    }
                }
            }
        }
    }
}
