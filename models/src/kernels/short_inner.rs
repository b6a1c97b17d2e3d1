//! A workaround for MLX 0.32.2's CUDA quantized GEMM, which is wrong when a product's whole inner
//! dimension is one group of 64: `quantized_matmul` with 64 inputs and 2 to 210 activation rows
//! differed from the CPU's result by more than its largest value, or gave inf/NaN, changing between
//! runs; with 64 inputs in two groups of 32, or 128 and more inputs, it agreed, and
//! one-row products (MLX's matrix-vector kernel) were right at every size (`tools/gpu/qmm_check.py`
//! on an H100, charts/gpu/h100-qmm-short-inner). It made the tiny PLE checkpoint's per-layer
//! projection (64 inputs) wrong on the GPU, in mlx-vlm too, and very likely the tensor-parallel
//! tiny model's row-parallel `o_proj` (64 inputs per rank).
//!
//! Products under [`MIN_INNER`] inputs are padded with zero groups up to it: zero activations meet
//! zero weights (scale 0, bias 0), so the result is the same product, through the GEMM's right
//! path. Real Gemma 4 checkpoints have no such product on one GPU (E2B/E4B's per-layer projection
//! reads 256 inputs); where one appears, its padded weight is tiny.

use mlx_rs::{ops, Array, Stream};

use super::{cuda_backend, qgemv, rows, QuantizedOperands};

/// MLX's CUDA GEMM was right from this many inputs on (and below it with groups of 32; padding
/// those too keeps the rule simple and costs little at these sizes).
pub const MIN_INNER: i32 = 128;

/// `x @ W^T` by MLX's `quantized_matmul` over zero-padded operands, when MLX would run the product
/// on a CUDA GPU with fewer than [`MIN_INNER`] inputs and more than one row; `None` otherwise.
pub fn padded_if_needed(
    x: &Array,
    q: QuantizedOperands,
) -> Result<Option<Array>, mlx_rs::error::Exception> {
    let inner = x.shape().last().copied().unwrap_or(0);
    if !cuda_backend()
        || inner >= MIN_INNER
        || rows(x) <= 1
        || q.w.ndim() != 2
        || !qgemv::stream_is_gpu(&Stream::thread_local_or_default())
    {
        return Ok(None);
    }
    padded_quantized_matmul(x, q)
}

/// `x @ W^T` with `x`'s last axis, `w`'s packed columns and the scales' and biases' groups padded
/// with zeros to [`MIN_INNER`] inputs; `None` when the padding is not whole groups.
pub fn padded_quantized_matmul(
    x: &Array,
    q: QuantizedOperands,
) -> Result<Option<Array>, mlx_rs::error::Exception> {
    let (bits, group_size) = (q.bits, q.group_size);
    let inner = x.shape().last().copied().unwrap_or(0);
    let extra = MIN_INNER - inner;
    if extra <= 0 || group_size <= 0 || extra % group_size != 0 || (extra * bits) % 32 != 0 {
        return Ok(None);
    }
    let pad_last = |a: &Array, by: i32| {
        let mut widths = vec![(0, 0); a.ndim()];
        widths[a.ndim() - 1] = (0, by);
        ops::pad(a, &widths[..], None, None)
    };
    let biases = pad_last(q.biases, extra / group_size)?;
    Ok(Some(ops::quantized_matmul(
        pad_last(x, extra)?,
        pad_last(q.w, extra * bits / 32)?,
        pad_last(q.scales, extra / group_size)?,
        &biases,
        true,
        group_size,
        bits,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::random;

    /// The padded product is the same product: zero inputs meet zero-scale, zero-bias groups.
    #[test]
    fn padding_with_zero_groups_keeps_the_product() {
        for (inner, group_size) in [(64, 64), (64, 32), (32, 32), (96, 32)] {
            let key = random::key(inner as u64 + group_size as u64).unwrap();
            let w = random::normal::<f32>(&[48, inner], None, None, &key).unwrap();
            let x = random::normal::<f32>(&[1, 7, inner], None, None, &key).unwrap();
            let (wq, scales, biases) = ops::quantize(&w, group_size, 4).unwrap();
            let want =
                ops::quantized_matmul(&x, &wq, &scales, &biases, true, group_size, 4).unwrap();
            let q = QuantizedOperands {
                w: &wq,
                scales: &scales,
                biases: &biases,
                bits: 4,
                group_size,
            };
            let got = padded_quantized_matmul(&x, q)
                .unwrap()
                .expect("whole groups of padding");
            assert_eq!(got.shape(), want.shape());
            let err = (got - &want)
                .abs()
                .unwrap()
                .max(None)
                .unwrap()
                .item_cast::<f32>();
            assert!(
                err < 1e-5,
                "inner {inner}, group {group_size}: max difference {err}"
            );
        }
    }

    #[test]
    fn products_with_enough_inputs_are_left_alone() {
        let x = Array::zeros::<f32>(&[4, MIN_INNER]).unwrap();
        let w = Array::zeros::<u32>(&[8, MIN_INNER / 8]).unwrap();
        let s = Array::zeros::<f32>(&[8, MIN_INNER / 64]).unwrap();
        let q = QuantizedOperands {
            w: &w,
            scales: &s,
            biases: &s,
            bits: 4,
            group_size: 64,
        };
        assert!(padded_quantized_matmul(&x, q).unwrap().is_none());
    }
}
