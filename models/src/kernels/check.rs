//! Checks and times vlmbench's 4-bit products (the CUDA GEMV, or the CPU products of
//! [`super::cpu_matmul`]) against MLX's stock `quantized_matmul`, shape by shape: both against a
//! float32 product with the dequantized weight (so only the kernels' arithmetic differs), then
//! each timed over enough distinct weight copies that no copy is still in a cache when it is
//! read again.

use std::time::Instant;

use mlx_rs::error::Exception;
use mlx_rs::{ops, random, transforms::eval, Array, Dtype, Stream};
use serde::Serialize;

use super::qgemv::{qgemv4, stream_is_gpu, supports, BITS, GROUP_SIZE};

/// The quantization of the checked weights: bits per value and values per group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantization {
    pub bits: i32,
    pub group_size: i32,
}

impl Default for Quantization {
    /// The GPU GEMV's (4-bit, groups of 64).
    fn default() -> Self {
        Quantization {
            bits: BITS,
            group_size: GROUP_SIZE,
        }
    }
}
use super::QuantizedOperands;

/// Weight bytes touched per timing round, well above the 50 MB L2 of an H100/H200 and the last
/// level caches of CPUs.
const BYTES_PER_ROUND: usize = 512 << 20;
/// Weight copies at most (the smallest decode matrix of Gemma-4-31B needs 93).
const MAX_COPIES: usize = 1024;
/// Products per timed evaluation (at least) on a GPU, and timed evaluations per kernel and shape.
/// (On a CPU one round over the copies is enough: there is no launch gap to amortise.)
const MIN_GPU_PRODUCTS: usize = 64;
const TIMED_RUNS: usize = 3;

/// One `[M, K] x [N, K]^T` product: errors against float32 and the time of each kernel.
#[derive(Clone, Debug, Serialize)]
pub struct GemvShapeReport {
    /// Activation rows (1 for decode).
    pub m: i32,
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

/// Runs the check for each `(K, N)` with `m` activation rows in `dtype` on `stream`: a CUDA GPU
/// stream (any floating dtype: the GEMV for one row, the dequantized product for more) or a CPU
/// stream (any rows, float32).
pub fn check_gemv(
    shapes: &[(i32, i32)],
    m: i32,
    dtype: Dtype,
    quant: Quantization,
    stream: &Stream,
) -> Result<Vec<GemvShapeReport>, Exception> {
    let gpu = stream_is_gpu(stream);
    if gpu && quant != Quantization::default() {
        return Err(Exception::custom(format!(
            "the custom GEMV takes {BITS}-bit weights in groups of {GROUP_SIZE}, not {}-bit in groups of {}",
            quant.bits, quant.group_size
        )));
    }
    if gpu && crate::runtime::backend() != "cuda" {
        return Err(Exception::custom(format!(
            "the custom GEMV runs on CUDA GPUs only; this MLX library's backend is {}",
            crate::runtime::backend()
        )));
    }
    if !gpu && dtype != Dtype::Float32 {
        return Err(Exception::custom(format!(
            "the CPU products take float32 activations, not {dtype:?}"
        )));
    }
    mlx_rs::with_stream(stream, || {
        shapes
            .iter()
            .map(|&(k, n)| check_shape(m, k, n, dtype, quant, stream))
            .collect()
    })
}

/// vlmbench's product on `stream`'s device: on a GPU the GEMV for one row, the dequantized
/// product (`VLMBENCH_PREFILL=dequant`) for more.
fn ours(
    x: &Array,
    w: &[Array; 3],
    quant: Quantization,
    stream: &Stream,
) -> Result<Array, Exception> {
    let q = operands(w, quant);
    if stream_is_gpu(stream) {
        if x.shape()[0] > 1 {
            return super::dequantized_matmul(x, q);
        }
        return qgemv4(x, q, stream);
    }
    super::cpu::quantized_matmul(x, q)
        .map_err(|e| Exception::custom(e.to_string()))?
        .ok_or_else(|| Exception::custom("the CPU products do not apply to these operands"))
}

/// `[weight, scales, biases]` as operands of `quant`.
fn operands(w: &[Array; 3], quant: Quantization) -> QuantizedOperands<'_> {
    QuantizedOperands {
        w: &w[0],
        scales: &w[1],
        biases: &w[2],
        bits: quant.bits,
        group_size: quant.group_size,
    }
}

fn check_shape(
    m: i32,
    k: i32,
    n: i32,
    dtype: Dtype,
    quant: Quantization,
    stream: &Stream,
) -> Result<GemvShapeReport, Exception> {
    let Quantization { bits, group_size } = quant;
    if m <= 0 || k <= 0 || n <= 0 || k % group_size != 0 {
        return Err(Exception::custom(format!(
            "shape M={m} K={k} N={n}: M and N must be positive, K a positive multiple of {group_size}"
        )));
    }
    let key = random::key(k as u64 * 1_000_003 + n as u64)?;
    let (kw, kx) = random::split(&key, 2)?;
    let w = random::normal::<f32>(&[n, k][..], None, None, &kw)?;
    let x = random::normal::<f32>(&[m, k][..], None, None, &kx)?.as_dtype(dtype)?;
    let (wq, scales, biases) = ops::quantize(&w, group_size, bits)?;
    let (scales, biases) = (scales.as_dtype(dtype)?, biases.as_dtype(dtype)?);
    eval([&wq, &scales, &biases, &x])?;
    drop(w);
    let quantized = [wq.clone(), scales.clone(), biases.clone()];
    if stream_is_gpu(stream) && m == 1 && !supports(&x, operands(&quantized, quant)) {
        return Err(Exception::custom(format!(
            "shape K={k} N={n} in {dtype:?} is not one the custom GEMV supports"
        )));
    }
    let f32 = |a: &Array| a.as_dtype(Dtype::Float32);
    let w_deq = ops::dequantize(&wq, &f32(&scales)?, &f32(&biases)?, group_size, bits)?;
    let reference = ops::matmul(&f32(&x)?, &w_deq.transpose()?)?;
    let stock = ops::quantized_matmul(&x, &wq, &scales, &biases, true, group_size, bits)?;
    let mine = ours(&x, &quantized, quant, stream)?;
    let scale = max_abs(&reference)?.max(f32::MIN_POSITIVE);
    let rel = |a: &Array, b: &Array| -> Result<f32, Exception> {
        Ok(max_abs(&f32(a)?.subtract(&f32(b)?)?)? / scale)
    };
    let mlx_relative_error = rel(&stock, &reference)?;
    let vlmbench_relative_error = rel(&mine, &reference)?;
    let relative_difference = rel(&mine, &stock)?;
    drop(w_deq);

    let weight_bytes = wq.nbytes() + scales.nbytes() + biases.nbytes();
    let bytes = weight_bytes + x.nbytes() + (m * n) as usize * x.item_size();
    // At most MAX_COPIES: tiny shapes (tests) would otherwise allocate tens of thousands.
    let copies = (BYTES_PER_ROUND / weight_bytes).clamp(1, MAX_COPIES);
    // Distinct buffers (x + 0 in the same dtype), so each product streams its weight from memory.
    let copy = |a: &Array| a.add(&ops::zeros_dtype(&[1], a.dtype())?);
    let weights: Vec<[Array; 3]> = (0..copies)
        .map(|_| Ok([copy(&wq)?, copy(&scales)?, copy(&biases)?]))
        .collect::<Result<_, Exception>>()?;
    eval(weights.iter().flatten())?;
    let min_products = if stream_is_gpu(stream) {
        MIN_GPU_PRODUCTS
    } else {
        1
    };
    let mlx_us = time_products(&weights, min_products, |w| {
        ops::quantized_matmul(&x, &w[0], &w[1], &w[2], true, group_size, bits)
    })?;
    let vlmbench_us = time_products(&weights, min_products, |w| ours(&x, w, quant, stream))?;
    let gbps = |us: f64| bytes as f64 / (us * 1e-6) / 1e9;
    Ok(GemvShapeReport {
        m,
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
        passed: vlmbench_relative_error.is_finite()
            && vlmbench_relative_error <= crate::selftest::tolerance(dtype),
    })
}

/// Microseconds per product: the products of enough rounds over the weight copies are queued
/// lazily and evaluated together (GPU work plus the launch gaps of a real decode graph, not one
/// host round trip per product; the CPU products compute while being queued, so the clock
/// starts before). The first evaluation (kernel compilation, graph capture) is discarded; the
/// mean of the next [`TIMED_RUNS`] is reported.
fn time_products(
    weights: &[[Array; 3]],
    min_products: usize,
    f: impl Fn(&[Array; 3]) -> Result<Array, Exception>,
) -> Result<f64, Exception> {
    let rounds = min_products.div_ceil(weights.len());
    let mut total = 0.0;
    for run in 0..=TIMED_RUNS {
        let start = Instant::now();
        let outs: Vec<Array> = (0..rounds)
            .flat_map(|_| weights.iter())
            .map(&f)
            .collect::<Result<_, _>>()?;
        eval(&outs)?;
        if run > 0 {
            total += start.elapsed().as_secs_f64() * 1e6 / outs.len() as f64;
        }
    }
    Ok(total / TIMED_RUNS as f64)
}

fn max_abs(a: &Array) -> Result<f32, Exception> {
    a.abs()?
        .max(None)?
        .try_item_cast::<f32>()
        .map_err(|e| Exception::custom(e.to_string()))
}
