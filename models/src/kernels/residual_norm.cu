// Gemma's sandwich norms around the residual adds, one launch each instead of three, one block
// per row (decode: one block): a decode step is bound by the host dispatching ~20 kernels per
// layer, not by these few kilobytes.
//   norm_add_norm:  h = x + rms_norm(o, w_post);  y = rms_norm(h, w_pre)   (after attention)
//   norm_add_scale: h = (x + rms_norm(o, w_post)) * scale                   (after the MLP)
// Each step rounds to T where MLX's op-by-op graph does (rms_norm: float32 normalizer, then
// w * T(x * normalizer); add and multiply: one rounding each), so results equal that graph's
// except where the normalizer's float32 sum, added in another order, differs in its last bits.
//
// Operands: o, x [rows, K] (T); w_post, w_pre [K] (T); scale [1] (T); outputs [rows, K] (T);
// scalars K and eps (as its float32 bits).

#include "dtypes.cuh"

constexpr int BLOCK = 256;

// The block's total of `v`, in every thread.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[BLOCK / 32];
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  if (lane == 0) {
    partial[warp] = v;
  }
  __syncthreads();
  v = lane < BLOCK / 32 ? partial[lane] : 0.0f;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  __syncthreads(); // `partial` is reused by the next call
  return v;
}

// rsqrt(mean(a^2) + eps) over the row, in float32.
template <typename T>
__device__ __forceinline__ float normalizer(const T* a, int k, float eps) {
  float sum = 0.0f;
  for (int i = threadIdx.x; i < k; i += BLOCK) {
    const float t = to_float(a[i]);
    sum += t * t;
  }
  return rsqrtf(block_sum(sum) / k + eps);
}

// x + rms_norm(o, w) for the calling thread's elements, written to h.
template <typename T>
__device__ __forceinline__ void norm_add(const T* o, const T* x, const T* w, T* h, int k, float eps) {
  const float r = normalizer(o, k, eps);
  for (int i = threadIdx.x; i < k; i += BLOCK) {
    h[i] = add(x[i], mul(w[i], from_float<T>(to_float(o[i]) * r)));
  }
}

template <typename T>
__global__ void norm_add_norm(
    const T* o, const T* x, const T* w_post, const T* w_pre, T* h, T* y, int k, int eps_bits) {
  const size_t row = static_cast<size_t>(blockIdx.x) * k;
  const float eps = __int_as_float(eps_bits);
  norm_add(o + row, x + row, w_post, h + row, k, eps);
  // Each thread reads back only the elements it wrote, so no barrier is needed before the sum.
  const float r = normalizer(h + row, k, eps);
  for (int i = threadIdx.x; i < k; i += BLOCK) {
    y[row + i] = mul(w_pre[i], from_float<T>(to_float(h[row + i]) * r));
  }
}

template <typename T>
__global__ void norm_add_scale(
    const T* o, const T* x, const T* w_post, const T* scale, T* h, int k, int eps_bits) {
  const size_t row = static_cast<size_t>(blockIdx.x) * k;
  norm_add(o + row, x + row, w_post, h + row, k, __int_as_float(eps_bits));
  const T s = scale[0];
  for (int i = threadIdx.x; i < k; i += BLOCK) {
    h[row + i] = mul(h[row + i], s);
  }
}
