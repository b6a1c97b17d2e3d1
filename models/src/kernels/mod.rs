//! vlmbench's own code paths for the hot spots MLX's stock kernels leave slow:
//! - [`qgemv`] (CUDA GPUs): a 4-bit matrix-vector kernel, compiled at run time by MLX's custom
//!   CUDA kernel API (`mlx_fast_cuda_kernel_*`), for one-row products;
//! - [`cpu_matmul`] (CPUs): 4-bit matrix products of any row count computed in Rust on the
//!   evaluated operands (MLX has no custom-kernel API for the CPU);
//! - [`cpu_attention`] (CPUs): scaled dot-product attention from the same SGEMM;
//! - [`fused`] (CUDA GPUs): the elementwise chains of the GELU gate and the logit soft-cap traced
//!   once with MLX's `compile`, which fuses each chain into one kernel (as mlx-vlm's compiled
//!   functions do).
//!
//! Which path runs is a process-wide choice ([`Kernels`]): `VLMBENCH_KERNELS=mlx` keeps MLX's
//! stock kernels and op-by-op graphs everywhere, `gemv` adds only the matrix products, so each
//! change can be measured with one binary.

pub mod check;
pub mod cpu_attention;
pub mod cpu_matmul;
pub mod fused;
pub mod qgemv;

use std::sync::OnceLock;

use mlx_rs::{Array, Dtype, Stream};

use crate::error::{ModelError, Result};

/// Who runs the hot-path operations on a CUDA GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kernels {
    /// MLX's stock kernels, op by op (the unoptimized path).
    Mlx,
    /// vlmbench's matrix products (GPU GEMV, CPU 4-bit products), elementwise chains op by op
    /// (to measure each change on its own).
    Gemv,
    /// vlmbench's matrix products and fused elementwise chains.
    Vlmbench,
}

/// The process's choice: `VLMBENCH_KERNELS` = `mlx`, `gemv` or `vlmbench` (the default). Read once.
pub fn kernels_choice() -> Result<Kernels> {
    static CHOICE: OnceLock<std::result::Result<Kernels, String>> = OnceLock::new();
    CHOICE
        .get_or_init(|| parse_kernels(std::env::var("VLMBENCH_KERNELS").ok().as_deref()))
        .clone()
        .map_err(ModelError::Input)
}

fn parse_kernels(value: Option<&str>) -> std::result::Result<Kernels, String> {
    match value {
        None | Some("") | Some("vlmbench") => Ok(Kernels::Vlmbench),
        Some("mlx") => Ok(Kernels::Mlx),
        Some("gemv") => Ok(Kernels::Gemv),
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
/// 4-bit GEMV (one activation row, groups of 64, see [`vlmbench_stream`]); on the CPU the 4-bit
/// products of [`cpu_matmul`] (float32 operands). `None` leaves the product to MLX.
pub fn try_quantized_matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    bits: i32,
    group_size: i32,
) -> Result<Option<Array>> {
    if kernels_choice()? < Kernels::Gemv {
        return Ok(None);
    }
    let stream = Stream::thread_local_or_default();
    if !qgemv::stream_is_gpu(&stream) {
        return cpu_quantized_matmul(x, w, scales, biases, bits, group_size);
    }
    if !cuda_backend() || !qgemv::supports(x, w, scales, bits, group_size) {
        return Ok(None);
    }
    Ok(Some(qgemv::qgemv4(x, w, scales, biases, &stream)?))
}

/// `x @ W^T` for a dense `W` (`[N, K]`) by [`cpu_matmul::matmul_t`] when the current stream is
/// a CPU one, both operands are float32 and row-contiguous, and the choice includes `gemv`;
/// `None` leaves the product to MLX.
pub fn try_dense_matmul(x: &Array, w: &Array) -> Result<Option<Array>> {
    if kernels_choice()? < Kernels::Gemv || qgemv::stream_is_gpu(&Stream::thread_local_or_default())
    {
        return Ok(None);
    }
    let k = *x.shape().last().unwrap_or(&0);
    if k == 0
        || w.ndim() != 2
        || w.shape()[1] != k
        || x.dtype() != Dtype::Float32
        || w.dtype() != Dtype::Float32
    {
        return Ok(None);
    }
    let (Ok(xs), Ok(ws)) = (x.try_as_slice::<f32>(), w.try_as_slice::<f32>()) else {
        return Ok(None);
    };
    let n = w.shape()[0];
    let y = cpu_matmul::matmul_t(xs, xs.len() / k as usize, ws, n as usize, k as usize);
    Ok(Some(Array::from_slice(&y, &with_last_axis(x, n))))
}

/// `softmax(scale * q k^T + mask) v` by [`cpu_attention`] when the current stream is a CPU one,
/// `q`/`k`/`v` are float32 `[B, H, L, D]` and the mask (`causal`, or a boolean or float32 array of
/// `[L, S]` or `[B|1, H|1, L, S]`) is one it takes; `None` leaves it to MLX's
/// `scaled_dot_product_attention`.
pub fn try_sdpa(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask: Option<&Array>,
    causal: bool,
) -> Result<Option<Array>> {
    if kernels_choice()? < Kernels::Gemv || qgemv::stream_is_gpu(&Stream::thread_local_or_default())
    {
        return Ok(None);
    }
    let four_d_f32 = |a: &Array| a.ndim() == 4 && a.dtype() == Dtype::Float32;
    if !(four_d_f32(q) && four_d_f32(k) && four_d_f32(v)) {
        return Ok(None);
    }
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    let shape = cpu_attention::Shape {
        batch: qs[0] as usize,
        heads: qs[1] as usize,
        kv_heads: ks[1] as usize,
        queries: qs[2] as usize,
        keys: ks[2] as usize,
        dim: qs[3] as usize,
        value_dim: vs[3] as usize,
    };
    let same_batch =
        ks[0] == qs[0] && vs[0] == qs[0] && vs[1] == ks[1] && vs[2] == ks[2] && ks[3] == qs[3];
    if !same_batch || shape.kv_heads == 0 || shape.heads % shape.kv_heads != 0 {
        return Ok(None);
    }
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let mask_array = mask.map(|m| m.contiguous()).transpose()?;
    let (Ok(qd), Ok(kd), Ok(vd)) = (
        q.try_as_slice::<f32>(),
        k.try_as_slice::<f32>(),
        v.try_as_slice::<f32>(),
    ) else {
        return Ok(None);
    };
    let broadcast = |m: &Array| match m.shape() {
        [_, _] => Some((1, 1)),
        [b, h, _, _] => Some((*b as usize, *h as usize)),
        _ => None,
    };
    let how = match (&mask_array, causal) {
        (None, false) => cpu_attention::Mask::All,
        (None, true) => cpu_attention::Mask::Causal,
        (Some(_), true) => return Ok(None),
        (Some(m), false) => match (broadcast(m), m.dtype()) {
            (Some((batch, heads)), Dtype::Bool) => match m.try_as_slice::<bool>() {
                Ok(values) => cpu_attention::Mask::Bool {
                    values,
                    batch,
                    heads,
                },
                Err(_) => return Ok(None),
            },
            (Some((batch, heads)), Dtype::Float32) => match m.try_as_slice::<f32>() {
                Ok(values) => cpu_attention::Mask::Additive {
                    values,
                    batch,
                    heads,
                },
                Err(_) => return Ok(None),
            },
            _ => return Ok(None),
        },
    };
    if !how.fits(&shape) {
        return Ok(None);
    }
    let out = cpu_attention::attention(qd, kd, vd, shape, scale, how);
    Ok(Some(Array::from_slice(&out, &[qs[0], qs[1], qs[2], vs[3]])))
}

/// `x`'s shape with the last axis replaced by `n`.
fn with_last_axis(x: &Array, n: i32) -> Vec<i32> {
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("x has a last axis") = n;
    shape
}

/// [`cpu_matmul::qmatmul_t`] on MLX arrays: evaluates `x` (a synchronisation point: the product
/// runs here, not in MLX's graph) and wraps the result in a new array. `None` when the operands
/// are not float32 4-bit ones of a 2-D weight, or not laid out row-contiguously.
pub(crate) fn cpu_quantized_matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    bits: i32,
    group_size: i32,
) -> Result<Option<Array>> {
    let k = *x.shape().last().unwrap_or(&0);
    let fits = bits == 4
        && w.ndim() == 2
        && w.dtype() == Dtype::Uint32
        && x.dtype() == Dtype::Float32
        && scales.dtype() == Dtype::Float32
        && biases.dtype() == Dtype::Float32
        && group_size > 0
        && w.shape()[1] * 8 == k;
    if !fits {
        return Ok(None);
    }
    let (Ok(xs), Ok(packed), Ok(s), Ok(b)) = (
        x.try_as_slice::<f32>(),
        w.try_as_slice::<u32>(),
        scales.try_as_slice::<f32>(),
        biases.try_as_slice::<f32>(),
    ) else {
        return Ok(None);
    };
    let weight = cpu_matmul::Quantized4 {
        packed,
        scales: s,
        biases: b,
        n: w.shape()[0] as usize,
        k: k as usize,
        group_size: group_size as usize,
    };
    if !weight.is_consistent() {
        return Ok(None);
    }
    let m = xs.len() / k as usize;
    let y = cpu_matmul::qmatmul_t(xs, m, &weight);
    Ok(Some(Array::from_slice(
        &y,
        &with_last_axis(x, w.shape()[0]),
    )))
}

/// Whether the fused elementwise chains apply (see [`vlmbench_stream`]).
pub fn fuse_elementwise() -> Result<bool> {
    Ok(vlmbench_stream(Kernels::Vlmbench)?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_choice_accepts_the_two_names_and_rejects_others_by_name() {
        assert_eq!(parse_kernels(None), Ok(Kernels::Vlmbench));
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
