// vlmbench's 4-bit GEMV: one activation row times an MLX affine-quantized weight (group size 64).
// Compiled ahead of time to PTX (qgemv4.ptx, by tools/gpu/build-ptx.py with NVRTC) and handed to
// MLX's fast::precompiled_cuda_kernel, so a process never runs NVRTC for it and MLX's per-call
// work is a lookup, not a source rebuild.
// Standalone on purpose: no CUDA or MLX headers (only dtypes.cuh), so NVRTC needs none.
//
// Operands (MLX passes inputs, then outputs, then scalars): `x` [K] (T), `w` [N, K/8] (uint32,
// 8 nibbles per word, lowest nibble first), `scales` and `biases` [N, K/64] (T); output `y` [N]
// (T); scalars K, N.
//
// Why: MLX's stock qmv reads 450-1050 GB/s on an H100 at Gemma-4-31B decode shapes, a third of
// what the memory delivers, and converts every nibble with an integer-to-float instruction that
// runs at a quarter of the FMA rate. Here:
// - one warp owns two output rows and streams them with 16-byte loads (a lane takes 32 nibbles
//   of each row per step, so a warp covers 512 contiguous bytes of each row per step);
// - a nibble becomes a float with a mask and a subtraction (2^23 + q has q in its mantissa),
//   no conversion instruction;
// - the 32 activations a lane needs per step are read (through the read-only cache) and
//   converted once for both rows, and so is their sum, which the group bias multiplies.
//
// Each 16-byte chunk is half of one quantization group: y = sum_g scale_g * sum(q * x) +
// bias_g * sum(x), accumulated in float32 like the stock kernel, rounded to T once at the end
// (round to nearest even, as a static_cast to __nv_bfloat16 / __half does).

#include "dtypes.cuh"

// Nibble `e` (0 = lowest) of `word` as a float: 2^23 + q has q in the low mantissa bits, so a
// mask, an OR of the exponent and one subtraction replace an integer-to-float conversion.
__device__ __forceinline__ float nibble(unsigned int word, int e) {
  return __uint_as_float(0x4B000000u | ((word >> (4 * e)) & 0xFu)) - 8388608.0f;
}

// Rows `row0` and `row0 + 1` (if below `n`) of one matrix, computed by the calling warp.
template <typename T>
__device__ __forceinline__ void two_rows(
    const T* x,
    const uint4* w,
    const T* scales,
    const T* biases,
    T* y,
    int k,
    int n,
    int row0) {
  const int chunks = k / 32; // 16-byte chunks per row (k % 64 == 0)
  const int steps = (chunks + 31) / 32;
  const int groups = k / 64;
  constexpr int X_VECS = 32 * sizeof(T) / 16; // 16-byte loads holding one chunk's activations
  constexpr int X_PER_VEC = 16 / sizeof(T);
  const int lane = threadIdx.x & 31;
  const bool has_row1 = row0 + 1 < n;
  const int row1 = has_row1 ? row0 + 1 : row0;
  const uint4* w0 = w + static_cast<size_t>(row0) * chunks;
  const uint4* w1 = w + static_cast<size_t>(row1) * chunks;
  const uint4* xv = reinterpret_cast<const uint4*>(x);

  float acc0 = 0.0f;
  float acc1 = 0.0f;
  // BATCH steps' weights, scales and biases are loaded before any is used, so each warp keeps
  // BATCH x 1 KB of weight reads in flight instead of one step's.
  constexpr int BATCH = 4; // 2 for the b2 build
  for (int s0 = 0; s0 < steps; s0 += BATCH) {
    uint4 q0[BATCH];
    uint4 q1[BATCH];
    float s0f[BATCH], s1f[BATCH], b0f[BATCH], b1f[BATCH];
#pragma unroll
    for (int u = 0; u < BATCH; ++u) {
      const int c = lane + 32 * (s0 + u);
      if (c < chunks) {
        // Streamed once per token: do not let the weights push the activations out of the caches.
        q0[u] = __ldcs(w0 + c);
        q1[u] = __ldcs(w1 + c);
        const int g = c >> 1;
        s0f[u] = to_float(scales[static_cast<size_t>(row0) * groups + g]);
        b0f[u] = to_float(biases[static_cast<size_t>(row0) * groups + g]);
        s1f[u] = to_float(scales[static_cast<size_t>(row1) * groups + g]);
        b1f[u] = to_float(biases[static_cast<size_t>(row1) * groups + g]);
      }
    }
#pragma unroll
    for (int u = 0; u < BATCH; ++u) {
      const int c = lane + 32 * (s0 + u);
      if (c < chunks) {
        // Eight activations at a time (one word of each row); the sums run in the same order
        // as the one-step-at-a-time loop's.
        const unsigned int a[4] = {q0[u].x, q0[u].y, q0[u].z, q0[u].w};
        const unsigned int b[4] = {q1[u].x, q1[u].y, q1[u].z, q1[u].w};
        float xs = 0.0f;
        float d0 = 0.0f;
        float d1 = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          float xf[8];
#pragma unroll
          for (int i = 0; i < X_VECS / 4; ++i) {
            const uint4 v = __ldg(xv + c * X_VECS + j * (X_VECS / 4) + i);
            const T* p = reinterpret_cast<const T*>(&v);
#pragma unroll
            for (int e = 0; e < X_PER_VEC; ++e) {
              xf[i * X_PER_VEC + e] = to_float(p[e]);
            }
          }
#pragma unroll
          for (int e = 0; e < 8; ++e) {
            xs += xf[e];
          }
#pragma unroll
          for (int e = 0; e < 8; ++e) {
            d0 += nibble(a[j], e) * xf[e];
            d1 += nibble(b[j], e) * xf[e];
          }
        }
        acc0 += s0f[u] * d0 + b0f[u] * xs;
        acc1 += s1f[u] * d1 + b1f[u] * xs;
      }
    }
  }

#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    acc0 += __shfl_xor_sync(0xffffffffu, acc0, offset);
    acc1 += __shfl_xor_sync(0xffffffffu, acc1, offset);
  }
  if (lane == 0) {
    y[row0] = from_float<T>(acc0);
    if (has_row1) {
      y[row1] = from_float<T>(acc1);
    }
  }
}

// One warp per pair of rows; a block of 4 warps.
template <typename T>
__global__ void qgemv4(const T* x, const uint4* w, const T* scales, const T* biases, T* y, int k, int n) {
  const int pair = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (2 * pair < n) {
    two_rows(x, w, scales, biases, y, k, n, 2 * pair);
  }
}
