// Helpers of qgemv4.cu (passed to MLX's custom kernel API as the kernel's header).

// An activation as float32 (bfloat16 is the upper half of a float32: a shift).
__device__ __forceinline__ float vlmbench_to_float(float v) { return v; }
__device__ __forceinline__ float vlmbench_to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float vlmbench_to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// Nibble `e` (0 = lowest) of `word` as a float: 2^23 + q has q in the low mantissa bits, so a
// mask, an OR of the exponent and one subtraction replace an integer-to-float conversion.
__device__ __forceinline__ float vlmbench_nibble(uint32_t word, int e) {
  return __uint_as_float(0x4B000000u | ((word >> (4 * e)) & 0xFu)) - 8388608.0f;
}
