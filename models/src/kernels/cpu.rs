//! vlmbench's CPU kernels ([`cpu_matmul`], [`cpu_attention`]) on MLX arrays: each
//! entry point evaluates its operands (a synchronisation point: the work runs here, not in MLX's
//! graph), computes on their float32 slices and wraps the result in a new array. `None` means
//! the operands are not ones these kernels take, and MLX's own operation runs instead.

use mlx_rs::{Array, Dtype, Stream};

use super::cpu_quant::CpuMatrix;
use super::{cpu_attention, cpu_matmul, kernels_choice, qgemv, Kernels, QuantizedOperands};
use crate::error::Result;

/// Runs `f` on one of rayon's worker threads, so the parallel loops inside it are shared with
/// the other workers from that thread rather than handed over from outside the pool: a decode
/// step opens a few hundred of them, and each hand-over from outside costs two thread wake-ups.
pub fn on_workers<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// Whether the CPU kernels apply now: the current stream is a CPU one and the process's choice
/// includes vlmbench's products.
pub(crate) fn own_cpu_path() -> Result<bool> {
    Ok(kernels_choice()? >= Kernels::Gemv
        && !qgemv::stream_is_gpu(&Stream::thread_local_or_default()))
}

/// `x @ W^T` for a dense `W` (`[N, K]`) by [`cpu_matmul::matmul_t`] when the current stream is
/// a CPU one, both operands are float32 and row-contiguous, and the choice includes `gemv`;
/// `None` leaves the product to MLX.
pub fn try_dense_matmul(x: &Array, w: &Array) -> Result<Option<Array>> {
    if !own_cpu_path()? {
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
    if !own_cpu_path()? {
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

/// `logits - logsumexp(logits)` over the last axis of float32 `logits` on the host, when the
/// current stream is a CPU one and the choice includes vlmbench's kernels: MLX's CPU
/// `logsumexp` takes a scalar `exp` per value, a tenth of a small model's decode step over a
/// vocabulary of 262,144. `None` leaves it to MLX.
pub fn try_log_softmax(logits: &Array) -> Result<Option<Array>> {
    if !own_cpu_path()? || logits.dtype() != Dtype::Float32 || logits.ndim() == 0 {
        return Ok(None);
    }
    let logits = logits.contiguous()?;
    let Ok(values) = logits.try_as_slice::<f32>() else {
        return Ok(None);
    };
    let n = *logits.shape().last().expect("ndim > 0") as usize;
    if n == 0 {
        return Ok(None);
    }
    let mut out = values.to_vec();
    for row in out.chunks_exact_mut(n) {
        let top = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        let mut e: Vec<f32> = row.iter().map(|v| v - top).collect();
        super::cpu_ops::exp_in_place(&mut e);
        let lse = top + e.iter().sum::<f32>().ln();
        row.iter_mut().for_each(|v| *v -= lse);
    }
    Ok(Some(Array::from_slice(&out, logits.shape())))
}

/// A float32 parameter's values on the host (the CPU decoders copy norms and scalars).
pub fn floats(a: &Array) -> Result<Vec<f32>> {
    a.eval()?;
    a.try_as_slice::<f32>()
        .map(<[f32]>::to_vec)
        .map_err(|e| crate::error::ModelError::Input(format!("a float32 parameter: {e:?}")))
}

/// `x`'s shape with the last axis replaced by `n`.
fn with_last_axis(x: &Array, n: i32) -> Vec<i32> {
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("x has a last axis") = n;
    shape
}

/// `x @ W^T` by [`cpu_quant`] on MLX arrays: evaluates `x` (a synchronisation point: the
/// product runs here, not in MLX's graph) and wraps the result in a new array. `None` when the
/// operands are not float32 4- or 8-bit ones of a 2-D weight laid out row-contiguously.
pub(crate) fn quantized_matmul(x: &Array, q: QuantizedOperands) -> Result<Option<Array>> {
    if x.dtype() != Dtype::Float32 {
        return Ok(None);
    }
    let Some(w) = CpuMatrix::view_mlx(q.w, q.scales, q.biases, q.bits, q.group_size) else {
        return Ok(None);
    };
    let k = w.inputs();
    if *x.shape().last().unwrap_or(&0) as usize != k {
        return Ok(None);
    }
    let Ok(xs) = x.try_as_slice::<f32>() else {
        return Ok(None);
    };
    let y = w.matmul_t(xs, xs.len() / k);
    Ok(Some(Array::from_slice(
        &y,
        &with_last_axis(x, w.rows() as i32),
    )))
}
