//! The layers Moondream2 is built from, with PyTorch's CPU bf16 numerics where they decide
//! results: a biased linear rounds once (`addmm`: float32 accumulation, bias added before the
//! bf16 rounding), LayerNorm and the tanh GELU compute in float32 and round once.

use mlx_rs::ops::addmm;
use mlx_rs::{Array, Dtype};

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::nn::gelu_tanh;
use crate::quantized::Linear;

/// `y = x W^T + b` (`nn.Linear` with bias). The weight may be MLX-affine quantized.
#[derive(Debug, Clone)]
pub struct BiasedLinear {
    pub linear: Linear,
    pub bias: Array,
}

impl BiasedLinear {
    pub fn load(
        ckpt: &Checkpoint,
        path: &str,
        in_dim: i32,
        out_dim: i32,
        dtype: Dtype,
    ) -> Result<Self> {
        Ok(BiasedLinear {
            linear: Linear::load(ckpt, path, in_dim, out_dim, dtype)?,
            bias: ckpt.float_tensor(&format!("{path}.bias"), &[out_dim], dtype)?,
        })
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        match &self.linear {
            Linear::Dense { weight } => {
                // addmm works on matrices: flatten the leading axes.
                let shape = x.shape().to_vec();
                let k = shape[shape.len() - 1];
                let x2 = x.reshape(&[-1, k])?;
                let y = addmm(&self.bias, &x2, weight.t(), None, None)?;
                let mut out_shape = shape;
                *out_shape.last_mut().unwrap() = y.dim(1);
                Ok(y.reshape(&out_shape)?)
            }
            Linear::Quantized(_) => Ok(self.linear.forward(x)?.add(&self.bias)?),
        }
    }

    pub(crate) fn arrays(&self) -> Vec<&Array> {
        let mut v = self.linear.arrays();
        v.push(&self.bias);
        v
    }
}

/// `F.layer_norm` (eps 1e-5) computed in float32 and rounded to the input dtype once.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Array,
    bias: Array,
}

impl LayerNorm {
    pub fn load(ckpt: &Checkpoint, path: &str, dim: i32) -> Result<Self> {
        Ok(LayerNorm {
            weight: ckpt.float_tensor(&format!("{path}.weight"), &[dim], Dtype::Float32)?,
            bias: ckpt.float_tensor(&format!("{path}.bias"), &[dim], Dtype::Float32)?,
        })
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        let dt = x.dtype();
        let x32 = x.as_dtype(Dtype::Float32)?;
        let y = mlx_rs::fast::layer_norm(&x32, &self.weight, &self.bias, 1e-5)?;
        Ok(y.as_dtype(dt)?)
    }

    pub(crate) fn arrays(&self) -> Vec<&Array> {
        vec![&self.weight, &self.bias]
    }
}

/// `F.gelu(x, approximate="tanh")` in float32, rounded to the input dtype.
pub fn gelu(x: &Array) -> Result<Array> {
    let dt = x.dtype();
    Ok(gelu_tanh(&x.as_dtype(Dtype::Float32)?)?.as_dtype(dt)?)
}

/// `fc2(gelu_tanh(fc1 x))`.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub fc1: BiasedLinear,
    pub fc2: BiasedLinear,
}

impl Mlp {
    pub fn load(
        ckpt: &Checkpoint,
        path: &str,
        in_dim: i32,
        inner: i32,
        out_dim: i32,
        dtype: Dtype,
    ) -> Result<Self> {
        Ok(Mlp {
            fc1: BiasedLinear::load(ckpt, &format!("{path}.fc1"), in_dim, inner, dtype)?,
            fc2: BiasedLinear::load(ckpt, &format!("{path}.fc2"), inner, out_dim, dtype)?,
        })
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        self.fc2.forward(&gelu(&self.fc1.forward(x)?)?)
    }

    pub(crate) fn arrays(&self) -> Vec<&Array> {
        let mut v = self.fc1.arrays();
        v.extend(self.fc2.arrays());
        v
    }
}

/// Key block of PyTorch's CPU flash-attention kernel (`kvSplitSize` for 512+ keys).
const KV_BLOCK: i32 = 512;

/// Scaled dot-product attention as PyTorch's CPU flash-attention kernel computes it for bf16:
/// scores in float32, an online softmax over blocks of 512 keys (running max, float32 sums),
/// and the exponentials rounded to bf16 before they multiply `v` (float32 accumulation); the
/// output is divided by the sum and rounded once. Rounding the weights relative to each block's
/// running max is what makes the result bit-identical far more often than a float32 softmax.
///
/// `q: [B, H, L, D]`, `k, v: [B, H, S, D]`, `mask: [L, S]` (true = attend) or none. Every query
/// must see at least one key in the first block (true for Moondream: key 0 is BOS).
pub fn attention(q: &Array, k: &Array, v: &Array, mask: Option<&Array>) -> Result<Array> {
    use mlx_rs::ops::indexing::IndexOp;
    use mlx_rs::ops::{exp, maximum, select};
    let dt = q.dtype();
    let f = |a: &Array| a.as_dtype(Dtype::Float32);
    let (q, k, v) = (f(q)?, f(k)?, f(v)?);
    let scale = Array::from_f32(1.0 / (q.dim(3) as f32).sqrt());
    let mut s = q
        .matmul(k.transpose_axes(&[0, 1, 3, 2])?)?
        .multiply(&scale)?;
    if let Some(m) = mask {
        s = select(m, &s, Array::from_f32(f32::NEG_INFINITY))?;
    }
    let n = s.dim(3);
    let mut run_max: Option<Array> = None;
    let mut total: Option<Array> = None;
    let mut acc: Option<Array> = None;
    let mut b0 = 0;
    while b0 < n {
        let b1 = (b0 + KV_BLOCK).min(n);
        let sb = s.index((.., .., .., b0..b1));
        let block_max = sb.max_axis(-1, true)?;
        let new_max = match &run_max {
            Some(m) => maximum(m, &block_max)?,
            None => block_max,
        };
        let p = exp(sb.subtract(&new_max)?)?;
        let pv = p
            .as_dtype(Dtype::Bfloat16)?
            .as_dtype(Dtype::Float32)?
            .matmul(v.index((.., .., b0..b1, ..)))?;
        let psum = p.sum_axis(-1, true)?;
        (total, acc) = match (&run_max, total, acc) {
            (Some(m), Some(t), Some(a)) => {
                let corr = exp(m.subtract(&new_max)?)?;
                (
                    Some(t.multiply(&corr)?.add(&psum)?),
                    Some(a.multiply(&corr)?.add(&pv)?),
                )
            }
            _ => (Some(psum), Some(pv)),
        };
        run_max = Some(new_max);
        b0 = b1;
    }
    let out = acc
        .expect("at least one key")
        .divide(total.expect("at least one key"))?;
    Ok(out.as_dtype(dt)?)
}
