/* vlmbench's replacement for mlx-c's mlx/c/half.h.
 *
 * The original declares float16_t/bfloat16_t (and with them the mlx_array_{item,data}_{float16,bfloat16}
 * functions) only on ARM, but mlx-rs calls those functions on every target. Off ARM we declare both
 * types as 16-bit storage: mlx-c only moves them through array::item<T>() and array::data<T>(),
 * which reinterpret the array's bytes, so the bits arrive unchanged. */
#ifndef MLX_HALF_H
#define MLX_HALF_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__ARM_FEATURE_FP16_SCALAR_ARITHMETIC) || defined(__aarch64__)
#define HAS_FLOAT16
#include <arm_fp16.h>
typedef __fp16 float16_t;
#else
#define HAS_FLOAT16
#include <stdint.h>
typedef uint16_t float16_t;
#endif

#if defined(__ARM_FEATURE_BF16) || defined(__aarch64__)
#define HAS_BFLOAT16
#include <arm_bf16.h>
typedef __bf16 bfloat16_t;
#else
#define HAS_BFLOAT16
#include <stdint.h>
typedef uint16_t bfloat16_t;
#endif

#ifdef __cplusplus
}
#endif

#endif
