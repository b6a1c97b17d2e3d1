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
    pub fn load(ckpt: &Checkpoint, path: &str, in_dim: i32, out_dim: i32, dtype: Dtype) -> Result<Self> {
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
    pub fn load(ckpt: &Checkpoint, path: &str, in_dim: i32, inner: i32, out_dim: i32, dtype: Dtype) -> Result<Self> {
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

/// Softmax attention in float32 (PyTorch's CPU kernel accumulates bf16 attention in float32):
/// `q: [B, H, L, D]`, `k, v: [B, H, S, D]`, `mask: [L, S]` (true = attend) or none.
pub fn attention(q: &Array, k: &Array, v: &Array, mask: Option<&Array>) -> Result<Array> {
    use crate::attention::{sdpa, Mask};
    let dt = q.dtype();
    let f = |a: &Array| a.as_dtype(Dtype::Float32);
    let scale = 1.0 / (q.dim(3) as f32).sqrt();
    let m = match mask {
        Some(m) => Mask::Array(m.clone()),
        None => Mask::None,
    };
    Ok(sdpa(&f(q)?, &f(k)?, &f(v)?, scale, &m)?.as_dtype(dt)?)
}
