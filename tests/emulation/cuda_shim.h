// SPDX-License-Identifier: BSD-3-Clause
// Copyright (c) 2026 cugrad developers
//
// Just enough CUDA for a host C++ compiler to run cugrad's UNMODIFIED kernel sources on the CPU:
// qualifiers, the thread/block built-ins, the intrinsics the kernels call, the vector types they
// move data with, and a launcher that runs blocks one after another and, inside a block, threads
// one after another (the kernels use neither shared memory nor __syncthreads, so this order is a
// valid schedule). Built with -ffp-contract=off -fno-strict-aliasing and without -ffast-math, so
// float and double arithmetic is IEEE round-to-nearest like the device's explicit .rn
// instructions. __CUDA_ARCH__ stays undefined: the kernels then use plain C arithmetic in place of
// their inline PTX.

#ifndef CUGRAD_TESTS_CUDA_SHIM_H
#define CUGRAD_TESTS_CUDA_SHIM_H

#include <cmath>
#include <cstddef>
#include <complex>
#include <cstring>

// __device__ and __forceinline__ appear together: only one of them may become `inline`.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct dim3 {
    unsigned int x, y, z;
};

// One emulated thread runs at a time, so plain globals serve as the built-in variables.
static dim3 threadIdx, blockIdx, blockDim, gridDim;

struct alignas(16) uint4 {
    unsigned int x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned int x, y;
};

template <class T>
inline T __ldg(const T* p) {
    return *p;
}
template <class T>
inline void __stcs(T* p, T v) {
    *p = v;
}

inline unsigned int __float_as_uint(float x) {
    unsigned int u;
    std::memcpy(&u, &x, sizeof u);
    return u;
}
inline float __uint_as_float(unsigned int u) {
    float x;
    std::memcpy(&x, &u, sizeof x);
    return x;
}
inline long long __double_as_longlong(double x) {
    long long u;
    std::memcpy(&u, &x, sizeof u);
    return u;
}
inline double __longlong_as_double(long long u) {
    double x;
    std::memcpy(&x, &u, sizeof x);
    return x;
}
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned int)x); }

using std::fma;
using std::fmaf;

// Runs blocks [first_block, last_block) of a 1-D launch of `grid` x `block` threads. A subrange
// lets a test run only the blocks that touch the end of a huge, lazily mapped array.
template <class Kernel>
void cg_emulate_launch(unsigned int grid, unsigned int block, long long first_block,
                       long long last_block, Kernel kernel) {
    gridDim = dim3{grid, 1, 1};
    blockDim = dim3{block, 1, 1};
    for (long long b = first_block; b < last_block; ++b) {
        blockIdx = dim3{(unsigned int)b, 0, 0};
        for (unsigned int t = 0; t < block; ++t) {
            threadIdx = dim3{t, 0, 0};
            kernel();
        }
    }
}

// A raw strided array indexed like CuPy's CArray for `raw` ElementwiseKernel parameters: a flat
// C-order index over the shape, mapped through byte strides (negative strides allowed).
template <class T>
struct cg_emu_strided {
    T* data;
    const long long* shape;
    const long long* strides;  // bytes
    int ndim;
    T& operator[](long long i) const {
        long long off = 0;
        for (int d = ndim - 1; d > 0; --d) {
            off += strides[d] * (i % shape[d]);
            i /= shape[d];
        }
        if (ndim > 0) off += strides[0] * i;
        return *reinterpret_cast<T*>(reinterpret_cast<char*>(data) + off);
    }
};

#endif  // CUGRAD_TESTS_CUDA_SHIM_H
