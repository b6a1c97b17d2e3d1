//! Small building blocks shared by the model definitions: RMS norms, the tanh-approximated GELU,
//! logit soft-capping and rotary position embeddings. Each mirrors the MLX / mlx-vlm operation
//! sequence so that results match the Python reference bit for bit where MLX allows.

use mlx_rs::ops::{concatenate, power, tanh};
use mlx_rs::{Array, Dtype};

use crate::error::Result;

/// A scalar in `dtype` (how MLX promotes a Python float against an array of that dtype: the value
/// rounded to float32, then to `dtype`). Made on the host in its final dtype: a float32 array cast
/// with `as_dtype` would put one conversion kernel per scalar into every forward pass.
pub fn scalar(v: f64, dtype: Dtype) -> Result<Array> {
    let v = v as f32;
    Ok(match dtype {
        Dtype::Float32 => Array::from_f32(v),
        Dtype::Bfloat16 => Array::from_slice(&[half::bf16::from_f32(v)], &[]),
        Dtype::Float16 => Array::from_slice(&[half::f16::from_f32(v)], &[]),
        other => Array::from_f32(v).as_dtype(other)?,
    })
}

/// `x * rsqrt(mean(x^2) + eps) * weight` over the last axis (MLX `fast.rms_norm`, no `1 + w` offset).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub weight: Array,
    pub eps: f32,
}

impl RmsNorm {
    pub fn new(weight: Array, eps: f32) -> Self {
        RmsNorm { weight, eps }
    }

    /// Gemma's RMSNorm, `x * rsqrt(mean(x^2) + eps) * (1 + w)`: the scale `1 + w` is formed once,
    /// in the dtype of `w`, as mlx-lm's `gemma3_text.RMSNorm` forms it on every call.
    pub fn one_plus(weight: &Array, eps: f32) -> Result<Self> {
        let w = scalar(1.0, weight.dtype())?.add(weight)?;
        Ok(RmsNorm { weight: w, eps })
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(mlx_rs::fast::rms_norm(x, Some(&self.weight), self.eps)?)
    }
}

/// RMS normalisation without a learned scale.
pub fn rms_norm_no_scale(x: &Array, eps: f32) -> Result<Array> {
    Ok(mlx_rs::fast::rms_norm(x, None, eps)?)
}

/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` in the dtype of `x` (MLX `nn.gelu_approx`).
pub fn gelu_tanh(x: &Array) -> Result<Array> {
    let dt = x.dtype();
    let c = scalar((2.0 / std::f64::consts::PI).sqrt(), dt)?;
    let x3 = power(x, scalar(3.0, dt)?)?;
    let inner = x.add(x3.multiply(scalar(0.044715, dt)?)?)?;
    let t = tanh(c.multiply(&inner)?)?;
    let half_x = scalar(0.5, dt)?.multiply(x)?;
    Ok(half_x.multiply(scalar(1.0, dt)?.add(&t)?)?)
}

/// `gelu_tanh(gate) * up`, op by op (models call [`crate::kernels::fused::geglu`], which fuses
/// it where it can).
pub fn geglu_ops(gate: &Array, up: &Array) -> Result<Array> {
    Ok(gelu_tanh(gate)?.multiply(up)?)
}

/// `tanh(x / cap) * cap` op by op, `cap` a scalar in the dtype of `x` (models call
/// [`crate::kernels::fused::softcap`], which fuses it where it can).
pub fn softcap_ops(x: &Array, cap: &Array) -> Result<Array> {
    Ok(tanh(x.divide(cap)?)?.multiply(cap)?)
}

/// Rotary position embedding over the last axis, rotate-half (non-traditional) by default.
#[derive(Debug, Clone)]
pub enum Rope {
    /// `inv_freq_i = base^(-2i/dims)`, positions multiplied by `scale` (MLX `nn.RoPE`).
    Base {
        dims: i32,
        base: f32,
        scale: f32,
        traditional: bool,
    },
    /// Explicit frequencies (`angle = pos / freqs_i`, `inf` = no rotation), as mlx-vlm's
    /// `ProportionalRoPE` passes them to `mx.fast.rope`.
    Freqs {
        dims: i32,
        freqs: Array,
        traditional: bool,
    },
    /// Nothing rotates.
    Identity,
}

impl Rope {
    /// Standard RoPE over `dims` channels.
    pub fn base(dims: i32, base: f64, scale: f64, traditional: bool) -> Self {
        Rope::Base {
            dims,
            base: base as f32,
            scale: scale as f32,
            traditional,
        }
    }

    /// mlx-vlm `ProportionalRoPE`: the first `int(p*dims//2)` pairs rotate with
    /// `freq_i = factor * base^(2i/dims)` (exponent over the full `dims`); the other pairs get
    /// `inf` (identity).
    pub fn proportional(
        dims: i32,
        base: f64,
        partial_rotary_factor: f64,
        factor: f64,
        traditional: bool,
    ) -> Result<Self> {
        let rotated_dims = 2 * ((partial_rotary_factor * dims as f64) / 2.0).floor() as i32;
        let rope_angles = rotated_dims / 2;
        if rope_angles <= 0 {
            return Ok(Rope::Identity);
        }
        let nope = dims / 2 - rope_angles;
        let exps = Array::arange::<_, f32>(0, 2 * rope_angles, 2)?
            .divide(scalar(dims as f64, Dtype::Float32)?)?;
        let mut freqs = power(scalar(base, Dtype::Float32)?, &exps)?;
        if factor != 1.0 {
            freqs = scalar(factor, Dtype::Float32)?.multiply(&freqs)?;
        }
        if nope > 0 {
            let inf = Array::full::<f32>(&[nope], Array::from_f32(f32::INFINITY))?;
            freqs = concatenate(&[freqs, inf], 0)?;
        }
        freqs.eval()?;
        Ok(Rope::Freqs {
            dims,
            freqs,
            traditional,
        })
    }

    /// Rotate `x: [B, H, L, D]` for positions `offset .. offset + L`.
    pub fn apply(&self, x: &Array, offset: i32) -> Result<Array> {
        Ok(match self {
            Rope::Base {
                dims,
                base,
                scale,
                traditional,
            } => mlx_rs::fast::rope(x, *dims, *traditional, *base, *scale, offset, None)?,
            Rope::Freqs {
                dims,
                freqs,
                traditional,
            } => mlx_rs::fast::rope(x, *dims, *traditional, None, 1.0, offset, freqs)?,
            Rope::Identity => x.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_match_a_float32_value_cast_to_their_dtype() {
        for v in [
            0.044715,
            (2.0 / std::f64::consts::PI).sqrt(),
            1.0 / 3.0,
            30.0,
            1e-6,
        ] {
            for dt in [Dtype::Float32, Dtype::Bfloat16, Dtype::Float16] {
                let direct = scalar(v, dt).unwrap();
                let cast = Array::from_f32(v as f32).as_dtype(dt).unwrap();
                assert_eq!(direct.dtype(), dt);
                let (a, b) = (
                    direct.as_dtype(Dtype::Float32).unwrap(),
                    cast.as_dtype(Dtype::Float32).unwrap(),
                );
                assert_eq!(
                    a.item_exact::<f32>().to_bits(),
                    b.item_exact::<f32>().to_bits(),
                    "{v} in {dt:?}"
                );
            }
        }
    }
}
