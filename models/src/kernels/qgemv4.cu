// Body of vlmbench's 4-bit GEMV (one activation row times an MLX affine-quantized weight, group
// size 64), compiled by MLX's custom CUDA kernel API (mx.fast.cuda_kernel), which writes the
// signature: inputs `x` [K] (T), `w` [N, K/8] (uint32, 8 nibbles per word, lowest nibble first),
// `scales` and `biases` [N, K/64] (T); output `y` [N] (T). Template constants: K, T; N is read
// from the weight's shape, so one compiled kernel serves every output width (MLX 0.32 does not
// keep custom kernels in its PTX cache: each process compiles the ones it uses).
// Helpers (to_float, nibble) are in qgemv4_header.cuh.
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
// bias_g * sum(x), accumulated in float32 like the stock kernel, rounded to T once at the end.
constexpr int CHUNKS = K / 32;            // 16-byte chunks per row (K % 64 == 0)
constexpr int STEPS = (CHUNKS + 31) / 32; // chunks per lane
constexpr int GROUPS = K / 64;
constexpr int X_VECS = 32 * sizeof(T) / 16;   // 16-byte loads holding one chunk's activations
constexpr int X_PER_VEC = 16 / sizeof(T);

const int N = w_shape[0];
const int lane = threadIdx.x & 31;
const int row0 = (blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5)) * 2;
if (row0 >= N) {
  return;
}
const bool has_row1 = row0 + 1 < N;
const int row1 = has_row1 ? row0 + 1 : row0;
const uint4* w0 = reinterpret_cast<const uint4*>(w) + static_cast<size_t>(row0) * CHUNKS;
const uint4* w1 = reinterpret_cast<const uint4*>(w) + static_cast<size_t>(row1) * CHUNKS;
const uint4* xv = reinterpret_cast<const uint4*>(x);

float acc0 = 0.0f;
float acc1 = 0.0f;
#pragma unroll 4
for (int s = 0; s < STEPS; ++s) {
  const int c = lane + 32 * s;
  if (c < CHUNKS) {
    // Streamed once per token: do not let the weights push the activations out of the caches.
    const uint4 q0 = __ldcs(w0 + c);
    const uint4 q1 = __ldcs(w1 + c);
    float xf[32];
#pragma unroll
    for (int i = 0; i < X_VECS; ++i) {
      const uint4 v = __ldg(xv + c * X_VECS + i);
      const T* p = reinterpret_cast<const T*>(&v);
#pragma unroll
      for (int e = 0; e < X_PER_VEC; ++e) {
        xf[i * X_PER_VEC + e] = vlmbench_to_float(p[e]);
      }
    }
    float xs = 0.0f;
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      xs += xf[i];
    }
    const uint32_t a[4] = {q0.x, q0.y, q0.z, q0.w};
    const uint32_t b[4] = {q1.x, q1.y, q1.z, q1.w};
    float d0 = 0.0f;
    float d1 = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        d0 += vlmbench_nibble(a[j], e) * xf[j * 8 + e];
        d1 += vlmbench_nibble(b[j], e) * xf[j * 8 + e];
      }
    }
    const int g = c >> 1;
    acc0 += vlmbench_to_float(scales[static_cast<size_t>(row0) * GROUPS + g]) * d0 +
        vlmbench_to_float(biases[static_cast<size_t>(row0) * GROUPS + g]) * xs;
    acc1 += vlmbench_to_float(scales[static_cast<size_t>(row1) * GROUPS + g]) * d1 +
        vlmbench_to_float(biases[static_cast<size_t>(row1) * GROUPS + g]) * xs;
  }
}

#pragma unroll
for (int offset = 16; offset > 0; offset >>= 1) {
  acc0 += __shfl_xor_sync(0xffffffffu, acc0, offset);
  acc1 += __shfl_xor_sync(0xffffffffu, acc1, offset);
}
if (lane == 0) {
  y[row0] = static_cast<T>(acc0);
  if (has_row1) {
    y[row1] = static_cast<T>(acc1);
  }
}
