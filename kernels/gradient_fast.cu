// SPDX-License-Identifier: BSD-3-Clause
// Copyright (c) 2026 cugrad developers
//
// cugrad_gradient_fast<Tin, KC, V, Idx>: numpy.gradient along EVERY requested axis of a
// C-contiguous array in ONE launch, reading the input once (neighbours come from L1/L2) and writing
// each output once. Needs gradient_stencils.cuh in front of it (the loader concatenates them).
//
// What it computes: for each requested axis, the interior (uniform difference, or coordinate
// combination with per-row coefficient tables, or either one chosen by a flag on the device) and
// both edges (first- or second-order: p.edge_order, a launch-wide constant, so it costs the hot
// loop nothing and halves the instantiations), rounded once into the output dtype.
//
// Assumptions (checked by cugrad._cupy_backend before launching):
//   * f and every output are C-contiguous with the same shape; outputs do not overlap f.
//   * Tin is float, double or an integer type (integers are converted to double on load, numpy's
//     astype(float64)); the data kind is float for float input, double otherwise; the output holds
//     the data kind. One compute kind KC (float or double) for every region of every axis.
//   * The shape is collapsed on the host into P planes x H rows x W columns: unrequested
//     dimensions next to each other merge, size-1 ones vanish; the last collapsed dimension is W
//     ("x"), the one before it H ("y"), the others index planes. At most CG_FAST_MAX_PLANE_AXES
//     requested axes are plane axes (more go to another launch).
//   * V (1, 2 or 4) divides W, and f and the outputs are aligned to V elements.
//   * Idx (int or long long) holds every element index: long long from a byte extent of 2^31.
//
// Launch shape: 1-D grid of 1-D blocks (CG_FAST_BLOCK threads), grid-stride over tiles. A tile is
// V consecutive columns of CG_FAST_ROWS (R) consecutive rows of one plane; consecutive threads take
// consecutive column chunks, so warps issue coalesced 16-byte loads and streaming stores (__stcs:
// the outputs are not read again). A thread loads the R rows of its tile (plus the rows above and
// below when y is requested) into registers at once: the x derivative and the y derivative of all
// R rows come from them, so R outputs per axis share their loads and the loads are in flight
// together; plane axes issue their 2R neighbour loads before computing.
// Boundaries: interior tiles take the unrolled path above, which has no edge test per element.
// Tiles that contain an edge row (y, plane axes) and the edge columns of x go through one generic
// routine, cg_fast_any_row, whose branches depend on the tile only (uniform across a warp). Two
// integer divisions per tile, plus one per plane axis, decode the tile.

#define CG_FAST_ROWS 2
#define CG_FAST_MAX_PLANE_AXES 2
#define CG_FAST_BLOCK 256
// At least two resident blocks per SM: caps registers at 128 per thread (ptxas reports 80-128
// for sm_90 without spills in the 32-bit-index variants), so that 16 warps per SM keep enough
// 16-byte loads in flight to saturate HBM. CG_FAST_ROWS and this are the knobs to tune on a GPU.
#define CG_FAST_MIN_BLOCKS 2

// Scalar coefficient table of an axis (host values in cg_fast_axis.s, device values at sdev):
#define CG_NSCALARS 13
#define CG_S_DIV 0            // uniform interior divisor 2 * dx
#define CG_S_EDGES 1          // left [1..3], right [4..6]: divisor (edge order 1) or three weights
#define CG_S_UNIFORM_EDGES 7  // CG_MODE_DEVICE: the uniform variant's left [7..9], right [10..12]

// Every field is 8 bytes wide, so the layout is the same on the host (a numpy structured dtype,
// cugrad._cupy_backend.FAST_PARAMS_DTYPE), on the device and in the CPU emulation.
struct cg_fast_axis {
    long long n;                  // length of the axis
    long long stride;             // elements between neighbours along the axis
    long long pstride;            // plane axes: planes between neighbours; row = plane/pstride % n
    long long mode;               // CG_MODE_UNIFORM, CG_MODE_COORDS or CG_MODE_DEVICE
    unsigned long long out;       // output (data kind), C-contiguous, f's shape
    unsigned long long ia, ib, ic;  // interior coefficient tables (compute kind, n - 2 each)
    unsigned long long sdev;      // CG_MODE_DEVICE: scalar table on the device (compute kind)
    unsigned long long flag;      // CG_MODE_DEVICE: one byte, numpy's "evenly spaced" test
    double s[CG_NSCALARS];        // scalar table (exact in double for float and double kinds)
};

struct cg_fast_params {
    long long W, H, P;            // collapsed geometry
    long long nxc, nyt, ntiles;   // column chunks per row, row groups per plane, tiles in all
    long long has_x, has_y, nplanes;
    long long edge_order;         // 1 or 2
    cg_fast_axis x, y;
    cg_fast_axis plane[CG_FAST_MAX_PLANE_AXES];
    unsigned long long f;         // input
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
    typename cg_num<KD>::value v[1];
    cg_fast_load<KD, Tin, 1>(p, v);
    return v[0];
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
// Per-axis coefficients, read once per thread (the same values in every thread)
// ------------------------------------------------------------------------------------------------

template <class C>
struct cg_fast_coefs {
    bool uniform;
    C div;         // uniform interior divisor
    C l0, l1, l2;  // left edge
    C r0, r1, r2;  // right edge
    const C* ia;
    const C* ib;
    const C* ic;
};

template <class C>
CG_FN cg_fast_coefs<C> cg_fast_read_coefs(const cg_fast_axis& a) {
    cg_fast_coefs<C> k;
    k.ia = reinterpret_cast<const C*>(a.ia);
    k.ib = reinterpret_cast<const C*>(a.ib);
    k.ic = reinterpret_cast<const C*>(a.ic);
    if (a.mode == CG_MODE_DEVICE) {
        const C* s = reinterpret_cast<const C*>(a.sdev);
        k.uniform = *reinterpret_cast<const unsigned char*>(a.flag) != 0;
        const int e = k.uniform ? CG_S_UNIFORM_EDGES : CG_S_EDGES;
        k.div = s[CG_S_DIV];
        k.l0 = s[e];
        k.l1 = s[e + 1];
        k.l2 = s[e + 2];
        k.r0 = s[e + 3];
        k.r1 = s[e + 4];
        k.r2 = s[e + 5];
    } else {
        k.uniform = a.mode == CG_MODE_UNIFORM;
        k.div = cg_from_double<C>(a.s[CG_S_DIV]);
        k.l0 = cg_from_double<C>(a.s[CG_S_EDGES]);
        k.l1 = cg_from_double<C>(a.s[CG_S_EDGES + 1]);
        k.l2 = cg_from_double<C>(a.s[CG_S_EDGES + 2]);
        k.r0 = cg_from_double<C>(a.s[CG_S_EDGES + 3]);
        k.r1 = cg_from_double<C>(a.s[CG_S_EDGES + 4]);
        k.r2 = cg_from_double<C>(a.s[CG_S_EDGES + 5]);
    }
    return k;
}

// Interior coefficient of row `row` (1 .. n - 2); clamped so that lanes whose interior value is
// overwritten by an edge formula never read outside the table.
template <class C, class Idx>
CG_FN void cg_fast_row_coefs(const cg_fast_coefs<C>& k, Idx row, Idx n, C& a, C& b, C& c) {
    if (n <= 2) {
        a = b = c = (C)0;
        return;
    }
    Idx t = row - 1;
    t = t < 0 ? 0 : t;
    t = t > n - 3 ? n - 3 : t;
    a = __ldg(k.ia + t);
    b = __ldg(k.ib + t);
    c = __ldg(k.ic + t);
}

// The derivative along one axis at V consecutive elements that share their row r along that axis
// (any row, edges included), reading neighbours s elements apart. The slow path: tiles that touch
// an edge, and the edge columns of the contiguous axis (V = 1, s = 1). One code path for every
// region keeps the kernel small: the region only chooses the three rows read and the formula.
template <class KD, class KC, int V, class Tin, class Idx>
CG_FN void cg_fast_any_row(const Tin* f, Idx idx, Idx r, Idx n, Idx s, int EO,
                           const cg_fast_coefs<typename cg_num<KC>::value>& k,
                           typename cg_num<KD>::value (&res)[V]) {
    typedef typename cg_num<KD>::value D;
    typedef typename cg_num<KC>::value C;
    const bool left = r == 0;
    const bool right = r == n - 1;
    // rows read: interior r-1, r, r+1; left 0, 1, 2; right n-3, n-2, n-1
    const Idx o0 = left ? (Idx)0 : (right ? -2 * s : -s);
    const Idx o1 = left ? s : (right ? -s : (Idx)0);
    const Idx o2 = left ? 2 * s : (right ? (Idx)0 : s);
    // First-order edges read two rows only (the third may not exist when n == 2).
    const bool diff = (left || right) ? EO == 1 : k.uniform;
    D x0[V], x1[V], x2[V];
#pragma unroll
    for (int l = 0; l < V; ++l) x0[l] = x2[l] = (D)0;
    cg_fast_load<KD, Tin, V>(f + idx + o1, x1);
    if (!(right && EO == 1)) cg_fast_load<KD, Tin, V>(f + idx + o0, x0);
    if (!(left && EO == 1)) cg_fast_load<KD, Tin, V>(f + idx + o2, x2);
    C a = left ? k.l0 : k.r0, b = left ? k.l1 : k.r1, c = left ? k.l2 : k.r2;
    const C d = left ? k.l0 : (right ? k.r0 : k.div);
    if (!left && !right && !k.uniform) cg_fast_row_coefs<C, Idx>(k, r, n, a, b, c);
#pragma unroll
    for (int l = 0; l < V; ++l) {
        // numpy's differences: interior f[r+1] - f[r-1], left f[1] - f[0], right f[n-1] - f[n-2]
        const C v = diff ? cg_diff<KD, KC>(left ? x1[l] : x2[l], right ? x1[l] : x0[l], d)
                         : cg_comb3<KD, KC>(a, b, c, x0[l], x1[l], x2[l]);
        res[l] = cg_convert<KC, KD>::apply(v);
    }
}

template <class Tin>
struct cg_fast_data_kind {
    typedef double type;  // integers: numpy differences them in float64
};
template <>
struct cg_fast_data_kind<float> {
    typedef float type;
};

// ------------------------------------------------------------------------------------------------
// The kernel
// ------------------------------------------------------------------------------------------------

template <class Tin, class KC, int V, class Idx>
__global__ void __launch_bounds__(CG_FAST_BLOCK, CG_FAST_MIN_BLOCKS)
    cugrad_gradient_fast(const cg_fast_params p) {
    typedef typename cg_fast_data_kind<Tin>::type KD;
    typedef typename cg_num<KD>::value D;
    typedef typename cg_num<KC>::value C;
    const int R = CG_FAST_ROWS;

    const Tin* __restrict__ f = reinterpret_cast<const Tin*>(p.f);
    const Idx W = (Idx)p.W;
    const Idx H = (Idx)p.H;
    const Idx nxc = (Idx)p.nxc;
    const Idx nyt = (Idx)p.nyt;
    const Idx ntiles = (Idx)p.ntiles;
    const bool has_x = p.has_x != 0;
    const bool has_y = p.has_y != 0;
    const int nplanes = (int)p.nplanes;
    const int EO = (int)p.edge_order;

    const Idx step = (Idx)gridDim.x * (Idx)blockDim.x;
    for (Idx t = (Idx)blockIdx.x * (Idx)blockDim.x + (Idx)threadIdx.x; t < ntiles; t += step) {
        const Idx xc = t % nxc;
        const Idx rest = t / nxc;
        const Idx yt = rest % nyt;
        const Idx pl = rest / nyt;
        const Idx c0 = xc * V;
        const Idx r0 = yt * R;
        const Idx base = (pl * H + r0) * W + c0;  // element (pl, r0, c0)
        const Idx nrows = (H - r0) < (Idx)R ? (H - r0) : (Idx)R;

        // w[j + 1] = row r0 + j; w[0] and w[R + 1] are the rows above and below (y only).
        D w[R + 2][V];
#pragma unroll
        for (int j = 0; j < R; ++j) {
            if (j < nrows) cg_fast_load<KD, Tin, V>(f + base + (Idx)j * W, w[j + 1]);
        }
        if (has_y) {
            if (r0 > 0) cg_fast_load<KD, Tin, V>(f + base - W, w[0]);
            if (r0 + R < H) cg_fast_load<KD, Tin, V>(f + base + (Idx)R * W, w[R + 1]);
        }

        // ---- x: the contiguous axis ------------------------------------------------------------
        if (has_x) {
            // Coefficients are read where they are used, from the parameter block (constant
            // bank): held for the whole kernel they would cost ~20 registers per axis.
            const cg_fast_coefs<C> kx = cg_fast_read_coefs<C>(p.x);
            D* const o = reinterpret_cast<D*>(p.x.out);
            C ca[V], cb[V], cc[V];
            if (!kx.uniform) {
#pragma unroll
                for (int l = 0; l < V; ++l) {
                    cg_fast_row_coefs<C, Idx>(kx, c0 + l, W, ca[l], cb[l], cc[l]);
                }
            }
#pragma unroll
            for (int j = 0; j < R; ++j) {
                if (j < nrows) {
                    const Idx row = base + (Idx)j * W;
                    const D hl = c0 > 0 ? cg_fast_load1<KD, Tin>(f + row - 1) : (D)0;
                    const D hr = c0 + V < W ? cg_fast_load1<KD, Tin>(f + row + V) : (D)0;
                    D res[V];
#pragma unroll
                    for (int l = 0; l < V; ++l) {
                        const D fm = l == 0 ? hl : w[j + 1][l == 0 ? 0 : l - 1];
                        const D fp = l == V - 1 ? hr : w[j + 1][l == V - 1 ? 0 : l + 1];
                        const C v =
                            kx.uniform ? cg_diff<KD, KC>(fp, fm, kx.div)
                                       : cg_comb3<KD, KC>(ca[l], cb[l], cc[l], fm, w[j + 1][l], fp);
                        res[l] = cg_convert<KC, KD>::apply(v);
                    }
                    cg_fast_store<D, V>(o + row, res);
                }
            }
            // Edge columns: lane 0 of the first chunk, lane V - 1 of the last, overwritten in
            // program order by the same thread.
            if (c0 == 0 || c0 + V == W) {
#pragma unroll 1
                for (Idx j = 0; j < nrows; ++j) {
                    const Idx row = base + j * W;
                    D e[1];
                    if (c0 == 0) {
                        cg_fast_any_row<KD, KC, 1, Tin, Idx>(f, row, (Idx)0, W, (Idx)1, EO, kx, e);
                        o[row] = e[0];
                    }
                    if (c0 + V == W) {
                        cg_fast_any_row<KD, KC, 1, Tin, Idx>(f, row + (V - 1), W - 1, W, (Idx)1,
                                                             EO, kx, e);
                        o[row + (V - 1)] = e[0];
                    }
                }
            }
        }

        // ---- y: the row axis, from the rows held in registers ----------------------------------
        if (has_y) {
            const cg_fast_coefs<C> ky = cg_fast_read_coefs<C>(p.y);
            D* const o = reinterpret_cast<D*>(p.y.out);
            if (r0 >= 1 && r0 + R <= H - 1) {  // no edge row in this tile: w[0 .. R+1] all loaded
#pragma unroll
                for (int j = 0; j < R; ++j) {
                    C ca, cb, cc;
                    if (!ky.uniform) cg_fast_row_coefs<C, Idx>(ky, r0 + j, H, ca, cb, cc);
                    D res[V];
#pragma unroll
                    for (int l = 0; l < V; ++l) {
                        const C v =
                            ky.uniform
                                ? cg_diff<KD, KC>(w[j + 2][l], w[j][l], ky.div)
                                : cg_comb3<KD, KC>(ca, cb, cc, w[j][l], w[j + 1][l], w[j + 2][l]);
                        res[l] = cg_convert<KC, KD>::apply(v);
                    }
                    cg_fast_store<D, V>(o + base + (Idx)j * W, res);
                }
            } else {
#pragma unroll 1
                for (Idx j = 0; j < nrows; ++j) {
                    D res[V];
                    cg_fast_any_row<KD, KC, V, Tin, Idx>(f, base + j * W, r0 + j, H, W, EO, ky,
                                                         res);
                    cg_fast_store<D, V>(o + base + j * W, res);
                }
            }
        }

        // ---- plane axes: neighbours one axis stride away ---------------------------------------
#pragma unroll
        for (int q = 0; q < CG_FAST_MAX_PLANE_AXES; ++q) {
            if (q < nplanes) {
                const cg_fast_axis& a = p.plane[q];
                const cg_fast_coefs<C> k = cg_fast_read_coefs<C>(a);
                D* const o = reinterpret_cast<D*>(a.out);
                const Idx s = (Idx)a.stride;
                const Idx n = (Idx)a.n;
                const Idx rk = (pl / (Idx)a.pstride) % n;  // the same row for the whole tile
                if (rk > 0 && rk < n - 1) {
                    C ca = (C)0, cb = (C)0, cc = (C)0;
                    if (!k.uniform) cg_fast_row_coefs<C, Idx>(k, rk, n, ca, cb, cc);
                    // All neighbour loads first, so that 2R of them are in flight together.
                    D fm[R][V], fp[R][V];
#pragma unroll
                    for (int j = 0; j < R; ++j) {
                        if (j < nrows) {
                            const Idx row = base + (Idx)j * W;
                            cg_fast_load<KD, Tin, V>(f + row - s, fm[j]);
                            cg_fast_load<KD, Tin, V>(f + row + s, fp[j]);
                        }
                    }
#pragma unroll
                    for (int j = 0; j < R; ++j) {
                        if (j < nrows) {
                            D res[V];
#pragma unroll
                            for (int l = 0; l < V; ++l) {
                                const C v =
                                    k.uniform ? cg_diff<KD, KC>(fp[j][l], fm[j][l], k.div)
                                              : cg_comb3<KD, KC>(ca, cb, cc, fm[j][l], w[j + 1][l],
                                                                 fp[j][l]);
                                res[l] = cg_convert<KC, KD>::apply(v);
                            }
                            cg_fast_store<D, V>(o + base + (Idx)j * W, res);
                        }
                    }
                } else {
#pragma unroll 1
                    for (Idx j = 0; j < nrows; ++j) {
                        D res[V];
                        cg_fast_any_row<KD, KC, V, Tin, Idx>(f, base + j * W, rk, n, s, EO, k, res);
                        cg_fast_store<D, V>(o + base + j * W, res);
                    }
                }
            }
        }
    }
}
