//! vlmbench's own code paths for the hot spots MLX's stock kernels leave slow:
//! - [`qgemv`] (CUDA GPUs): a 4-bit matrix-vector kernel for one-row products, compiled ahead
//!   of time to PTX and launched through MLX's `fast::precompiled_cuda_kernel` ([`precompiled`]);
//!   prompt-sized 4-bit products dequantize the weight and multiply densely ([`DEQUANTIZE_MIN_ROWS`]);
//! - [`cpu_matmul`] (CPUs): 4-bit and dense float32 matrix products of any row count computed
//!   in Rust on the evaluated operands (MLX has no custom-kernel API for the CPU);
//! - [`cpu_attention`] (CPUs): scaled dot-product attention from the same SGEMM ([`cpu`] applies
//!   both to MLX arrays);
//! - [`fused`] (CUDA GPUs): the elementwise chains of the GELU gate and the logit soft-cap traced
//!   once with MLX's `compile`, which fuses each chain into one kernel (as mlx-vlm's compiled
//!   functions do).
//!
//! Which path runs is a process-wide choice ([`Kernels`]): `VLMBENCH_KERNELS=mlx` keeps MLX's
//! stock kernels and op-by-op graphs everywhere, `gemv` (the default) adds the matrix products,
//! `vlmbench` the fusions too, so each change can be measured with one binary.

pub mod check;
pub mod cpu;
pub mod cpu_attention;
pub mod cpu_matmul;
pub mod fused;
pub mod precompiled;
pub mod qgemv;

use std::sync::OnceLock;

use mlx_rs::{Array, Stream};

use crate::error::{ModelError, Result};

/// Who runs the hot-path operations on a CUDA GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kernels {
    /// MLX's stock kernels, op by op (the unoptimized path).
    Mlx,
    /// vlmbench's matrix products (GPU GEMV, CPU products and attention), the rest op by op:
    /// the default, the fastest measured (charts/gpu/h100-precompiled).
    Gemv,
    /// Opt-in: also the fused elementwise chains (fewer launches, yet slower decode on an H100).
    Vlmbench,
}

/// The process's choice: `VLMBENCH_KERNELS` = `mlx`, `gemv` (the default) or `vlmbench`. Read once.
pub fn kernels_choice() -> Result<Kernels> {
    static CHOICE: OnceLock<std::result::Result<Kernels, String>> = OnceLock::new();
    CHOICE
        .get_or_init(|| parse_kernels(std::env::var("VLMBENCH_KERNELS").ok().as_deref()))
        .clone()
        .map_err(ModelError::Input)
}

fn parse_kernels(value: Option<&str>) -> std::result::Result<Kernels, String> {
    match value {
        None | Some("") | Some("gemv") => Ok(Kernels::Gemv),
        Some("mlx") => Ok(Kernels::Mlx),
        Some("vlmbench") => Ok(Kernels::Vlmbench),
        Some(other) => Err(format!(
            "VLMBENCH_KERNELS={other:?} is not a kernel choice: use `mlx`, `gemv` or `vlmbench`"
        )),
    }
}

/// True when the loaded libmlx is the CUDA one.
fn cuda_backend() -> bool {
    static CUDA: OnceLock<bool> = OnceLock::new();
    *CUDA.get_or_init(|| crate::runtime::backend() == "cuda")
}

/// The stream vlmbench's own paths run on, when they apply: the current stream is a CUDA GPU
/// stream and the choice includes `wanted`. `None` means: use MLX's stock operations.
fn vlmbench_stream(wanted: Kernels) -> Result<Option<Stream>> {
    if !cuda_backend() || kernels_choice()? < wanted {
        return Ok(None);
    }
    let stream = Stream::thread_local_or_default();
    Ok(qgemv::stream_is_gpu(&stream).then_some(stream))
}

/// `x @ W^T` for a quantized `W` by vlmbench's own kernels when they apply: on a CUDA GPU the
/// 4-bit GEMV (one activation row, groups of 64, see [`vlmbench_stream`]) or, for prompts of
/// [`DEQUANTIZE_MIN_ROWS`] tokens or more, a dequantized bfloat16 product; on the CPU the 4-bit
/// products of [`cpu_matmul`] (float32 operands). `None` leaves the product to MLX.
pub fn try_quantized_matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    bits: i32,
    group_size: i32,
) -> Result<Option<Array>> {
    if let Some(stream) = vlmbench_stream(Kernels::Gemv)? {
        if rows(x) >= dequantize_min_rows()? {
            let dense = mlx_rs::ops::dequantize(w, scales, biases, group_size, bits)?;
            return Ok(Some(x.matmul(dense.t())?));
        }
        if !qgemv::supports(x, w, scales, bits, group_size) {
            return Ok(None);
        }
        return Ok(Some(qgemv::qgemv4(x, w, scales, biases, &stream)?));
    }
    if cpu::own_cpu_path()? {
        return cpu::quantized_matmul(x, w, scales, biases, bits, group_size);
    }
    Ok(None)
}

/// Rows of activations (all axes but the last) in a product `x @ W^T`.
fn rows(x: &Array) -> i32 {
    x.shape()[..x.ndim().saturating_sub(1)].iter().product()
}

/// From this many activation rows (prompt tokens) on, a 4-bit product on a CUDA GPU dequantizes
/// the weight and multiplies in its float dtype (cuBLAS) instead of MLX's quantized GEMM: on an
/// H100 with MLX 0.32.2 that GEMM ran at 120-150 TFLOP/s at the 31B prefill shapes, the
/// bfloat16 product at 110-540 with the dequantization included (charts/gpu/h100-prefill),
/// and prefill of the 31B-shaped checkpoint went from 1664 to 2986 tok/s at 512 tokens. The
/// transient dense weight is one matrix at a time (at most 231 MB for the 31B MLP).
/// `VLMBENCH_DEQUANTIZE_MIN_ROWS` overrides the threshold (for measuring it).
pub const DEQUANTIZE_MIN_ROWS: i32 = 256;

fn dequantize_min_rows() -> Result<i32> {
    static MIN: OnceLock<std::result::Result<i32, String>> = OnceLock::new();
    MIN.get_or_init(|| match std::env::var("VLMBENCH_DEQUANTIZE_MIN_ROWS") {
        Err(_) => Ok(DEQUANTIZE_MIN_ROWS),
        Ok(v) => v.parse::<i32>().ok().filter(|&n| n > 0).ok_or_else(|| {
            format!("VLMBENCH_DEQUANTIZE_MIN_ROWS={v:?} is not a positive row count")
        }),
    })
    .clone()
    .map_err(ModelError::Input)
}

/// Whether the fused elementwise chains apply (see [`vlmbench_stream`]).
pub fn fuse_elementwise() -> Result<bool> {
    Ok(vlmbench_stream(Kernels::Vlmbench)?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_choice_defaults_to_gemv_accepts_the_three_names_and_rejects_others_by_name() {
        assert_eq!(parse_kernels(None), Ok(Kernels::Gemv));
        assert_eq!(parse_kernels(Some("vlmbench")), Ok(Kernels::Vlmbench));
        assert_eq!(parse_kernels(Some("mlx")), Ok(Kernels::Mlx));
        assert_eq!(parse_kernels(Some("gemv")), Ok(Kernels::Gemv));
        let err = parse_kernels(Some("cublas")).unwrap_err();
        assert!(
            err.contains("VLMBENCH_KERNELS=\"cublas\"")
                && err.contains("`mlx`, `gemv` or `vlmbench`"),
            "{err}"
        );
    }
}
