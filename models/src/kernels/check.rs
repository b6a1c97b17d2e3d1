//! Checks and times vlmbench's 4-bit GEMV against MLX's stock `quantized_matmul` on the default
//! GPU, shape by shape: both against a float32 product with the dequantized weight (so only the
//! kernels' arithmetic differs), then each timed over enough distinct weight copies that no
//! copy is still in the GPU's L2 cache when it is read again.

use std::time::Instant;

use mlx_rs::error::Exception;
use mlx_rs::{ops, random, transforms::eval, Array, Dtype, Stream};
use serde::Serialize;

use super::qgemv::{qgemv4, stream_is_gpu, supports, BITS, GROUP_SIZE};

/// Weight bytes touched per timing round, well above the 50 MB L2 of an H100/H200.
const BYTES_PER_ROUND: usize = 512 << 20;
/// Products per timed evaluation (at least), and timed evaluations per kernel and shape.
const MIN_PRODUCTS: usize = 64;
const TIMED_RUNS: usize = 3;

/// One `[K] x [N, K]` product: errors against float32 and the time of each kernel.
#[derive(Clone, Debug, Serialize)]
pub struct GemvShapeReport {
    pub k: i32,
    pub n: i32,
    /// Bytes one product reads: packed weight + scales + biases (+ activation).
    pub bytes: usize,
    /// max |kernel - float32| / max |float32| for MLX's kernel and ours.
    pub mlx_relative_error: f32,
    pub vlmbench_relative_error: f32,
    /// max |ours - MLX's| / max |float32|.
    pub relative_difference: f32,
    pub mlx_us: f64,
    pub vlmbench_us: f64,
    pub mlx_gb_per_s: f64,
    pub vlmbench_gb_per_s: f64,
    pub passed: bool,
}

/// Runs the check for each `(K, N)` with activations in `dtype` on `stream` (a CUDA GPU stream).
pub fn check_gemv(shapes: &[(i32, i32)], dtype: Dtype, stream: &Stream) -> Result<Vec<GemvShapeReport>, Exception> {
    if !stream_is_gpu(stream) || crate::runtime::backend() != "cuda" {
        return Err(Exception::custom(format!(
            "the custom GEMV runs on CUDA GPUs only; this MLX library's backend is {}",
            crate::runtime::backend()
        )));
    }
    mlx_rs::with_stream(stream, || shapes.iter().map(|&(k, n)| check_shape(k, n, dtype, stream)).collect())
}

fn check_shape(k: i32, n: i32, dtype: Dtype, stream: &Stream) -> Result<GemvShapeReport, Exception> {
    if k <= 0 || n <= 0 || k % GROUP_SIZE != 0 {
        return Err(Exception::custom(format!("shape K={k} N={n}: K must be a positive multiple of {GROUP_SIZE}")));
    }
    let key = random::key(k as u64 * 1_000_003 + n as u64)?;
    let (kw, kx) = random::split(&key, 2)?;
    let w = random::normal::<f32>(&[n, k][..], None, None, &kw)?;
    let x = random::normal::<f32>(&[1, k][..], None, None, &kx)?.as_dtype(dtype)?;
    let (wq, scales, biases) = ops::quantize(&w, GROUP_SIZE, BITS)?;
    let (scales, biases) = (scales.as_dtype(dtype)?, biases.as_dtype(dtype)?);
    eval([&wq, &scales, &biases, &x])?;
    drop(w);
    if !supports(&x, &wq, &scales, BITS, GROUP_SIZE) {
        return Err(Exception::custom(format!("shape K={k} N={n} in {dtype:?} is not one the custom GEMV supports")));
    }
    let f32 = |a: &Array| a.as_dtype(Dtype::Float32);
    let w_deq = ops::dequantize(&wq, &f32(&scales)?, &f32(&biases)?, GROUP_SIZE, BITS)?;
    let reference = ops::matmul(&f32(&x)?, &w_deq.transpose()?)?;
    let stock = ops::quantized_matmul(&x, &wq, &scales, &biases, true, GROUP_SIZE, BITS)?;
    let ours = qgemv4(&x, &wq, &scales, &biases, stream)?;
    let scale = max_abs(&reference)?.max(f32::MIN_POSITIVE);
    let rel = |a: &Array, b: &Array| -> Result<f32, Exception> { Ok(max_abs(&f32(a)?.subtract(&f32(b)?)?)? / scale) };
    let mlx_relative_error = rel(&stock, &reference)?;
    let vlmbench_relative_error = rel(&ours, &reference)?;
    let relative_difference = rel(&ours, &stock)?;
    drop(w_deq);

    let weight_bytes = wq.nbytes() + scales.nbytes() + biases.nbytes();
    let bytes = weight_bytes + x.nbytes() + n as usize * x.item_size();
    let copies = (BYTES_PER_ROUND / weight_bytes).max(1);
    // Distinct buffers (x + 0 in the same dtype), so each product streams its weight from memory.
    let copy = |a: &Array| a.add(&ops::zeros_dtype(&[1], a.dtype())?);
    let weights: Vec<[Array; 3]> = (0..copies)
        .map(|_| Ok([copy(&wq)?, copy(&scales)?, copy(&biases)?]))
        .collect::<Result<_, Exception>>()?;
    eval(weights.iter().flatten())?;
    let mlx_us = time_products(&weights, |w| ops::quantized_matmul(&x, &w[0], &w[1], &w[2], true, GROUP_SIZE, BITS))?;
    let vlmbench_us = time_products(&weights, |w| qgemv4(&x, &w[0], &w[1], &w[2], stream))?;
    let gbps = |us: f64| bytes as f64 / (us * 1e-6) / 1e9;
    Ok(GemvShapeReport {
        k,
        n,
        bytes,
        mlx_relative_error,
        vlmbench_relative_error,
        relative_difference,
        mlx_us,
        vlmbench_us,
        mlx_gb_per_s: gbps(mlx_us),
        vlmbench_gb_per_s: gbps(vlmbench_us),
        // The doctor's 4-bit tolerance: bf16/f16 outputs round to 8/11 mantissa bits.
        passed: vlmbench_relative_error.is_finite() && vlmbench_relative_error <= crate::selftest::tolerance(dtype),
    })
}

/// Microseconds per product: the products of enough rounds over the weight copies are queued
/// lazily and evaluated together (GPU work plus the launch gaps of a real decode graph, not one
/// host round trip per product). The first evaluation (kernel compilation, graph capture) is
/// discarded; the mean of the next [`TIMED_RUNS`] is reported.
fn time_products(weights: &[[Array; 3]], f: impl Fn(&[Array; 3]) -> Result<Array, Exception>) -> Result<f64, Exception> {
    let rounds = MIN_PRODUCTS.div_ceil(weights.len());
    let mut total = 0.0;
    for run in 0..=TIMED_RUNS {
        let outs: Vec<Array> = (0..rounds).flat_map(|_| weights.iter()).map(&f).collect::<Result<_, _>>()?;
        let start = Instant::now();
        eval(&outs)?;
        if run > 0 {
            total += start.elapsed().as_secs_f64() * 1e6 / outs.len() as f64;
        }
    }
    Ok(total / TIMED_RUNS as f64)
}

fn max_abs(a: &Array) -> Result<f32, Exception> {
    a.abs()?.max(None)?.try_item_cast::<f32>().map_err(|e| Exception::custom(e.to_string()))
}
