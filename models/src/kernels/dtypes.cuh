// The element types of vlmbench's precompiled kernels without CUDA's headers (NVRTC compiles
// them with none): 16-bit floats as their bits, converted with the same PTX instructions
// cuda_bf16.h / cuda_fp16.h use, so results round exactly as a static_cast would.
#pragma once

struct Bf16 {
  unsigned short bits;
};
struct F16 {
  unsigned short bits;
};

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(Bf16 v) {
  return __uint_as_float(static_cast<unsigned int>(v.bits) << 16);
}
__device__ __forceinline__ float to_float(F16 v) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
  return f;
}

// float -> T, rounding to nearest even (as static_cast to __nv_bfloat16 / __half).
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ Bf16 from_float<Bf16>(float v) {
  Bf16 r;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r.bits) : "f"(v));
  return r;
}
template <>
__device__ __forceinline__ F16 from_float<F16>(float v) {
  F16 r;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.bits) : "f"(v));
  return r;
}
