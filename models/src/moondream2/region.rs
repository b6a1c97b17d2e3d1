//! Moondream2's region model (reference `region.py`): coordinates and sizes enter and leave
//! the text model without the vocabulary.
//!
//! * `fourier(x, w) = cat(cos f, sin f)`, `f = (2*pi*x) @ w`. The order matters in bf16: the
//!   scalar product `2*pi*x` is one float32 multiply rounded to bf16 (the Python float 2*pi is
//!   not rounded to bf16 first), then a bf16 matmul, then cos and sin rounded to bf16.
//! * coordinates: `coord_encoder(fourier(c))`; decoded by an MLP to 1024 logits whose argmax `k`
//!   gives `k / 1024`.
//! * sizes `(w, h)`: `size_encoder(fourier(wh))`; decoded to 2x1024 log-scale bins,
//!   `size = 2^((bin / 1023) * 10 - 10)`.
//!
//! The decoders read the hidden state *before* the text model's `post_ln`.

use half::bf16;
use mlx_rs::ops::{concatenate, cos, sin};
use mlx_rs::{Array, Dtype};

use super::config::RegionConfig;
use super::layers::{BiasedLinear, Mlp};
use crate::checkpoint::Checkpoint;
use crate::error::Result;

/// `2 * math.pi` as PyTorch's CPU kernel holds a Python float scalar for a bf16 tensor (float32).
const TWO_PI_F32: f32 = (2.0 * std::f64::consts::PI) as f32;

#[derive(Debug, Clone)]
pub struct Region {
    dtype: Dtype,
    coord_features: Array,
    size_features: Array,
    coord_encoder: BiasedLinear,
    coord_decoder: Mlp,
    size_encoder: BiasedLinear,
    size_decoder: Mlp,
}

impl Region {
    pub fn load(ckpt: &Checkpoint, cfg: &RegionConfig, dtype: Dtype) -> Result<Self> {
        let p = "model.region";
        let d = cfg.dim;
        Ok(Region {
            dtype,
            coord_features: ckpt.float_tensor(
                &format!("{p}.coord_features"),
                &[1, cfg.coord_feat_dim / 2],
                dtype,
            )?,
            size_features: ckpt.float_tensor(
                &format!("{p}.size_features"),
                &[2, cfg.size_feat_dim / 2],
                dtype,
            )?,
            coord_encoder: BiasedLinear::load(
                ckpt,
                &format!("{p}.coord_encoder"),
                cfg.coord_feat_dim,
                d,
                dtype,
            )?,
            coord_decoder: Mlp::load(
                ckpt,
                &format!("{p}.coord_decoder"),
                d,
                cfg.inner_dim,
                cfg.coord_out_dim,
                dtype,
            )?,
            size_encoder: BiasedLinear::load(
                ckpt,
                &format!("{p}.size_encoder"),
                cfg.size_feat_dim,
                d,
                dtype,
            )?,
            size_decoder: Mlp::load(
                ckpt,
                &format!("{p}.size_decoder"),
                d,
                cfg.inner_dim,
                cfg.size_out_dim,
                dtype,
            )?,
        })
    }

    fn fourier(&self, x: &Array, w: &Array) -> Result<Array> {
        let scaled = x
            .as_dtype(Dtype::Float32)?
            .multiply(Array::from_f32(TWO_PI_F32))?
            .as_dtype(self.dtype)?;
        let f = scaled.matmul(w)?.as_dtype(Dtype::Float32)?;
        let c = cos(&f)?.as_dtype(self.dtype)?;
        let s = sin(&f)?.as_dtype(self.dtype)?;
        Ok(concatenate(&[c, s], -1)?)
    }

    /// `encode_coordinate`: one coordinate (rounded to the compute dtype first, as the reference
    /// does with `coord.to(dtype)`) to a `[1, 1, dim]` input embedding.
    pub fn encode_coordinate(&self, c: f32) -> Result<Array> {
        let x = Array::from_slice(&[c], &[1, 1]).as_dtype(self.dtype)?;
        let e = self
            .coord_encoder
            .forward(&self.fourier(&x, &self.coord_features)?)?;
        Ok(e.reshape(&[1, 1, -1])?)
    }

    /// `encode_size`: `(w, h)` to a `[1, 1, dim]` input embedding.
    pub fn encode_size(&self, w: f32, h: f32) -> Result<Array> {
        let x = Array::from_slice(&[w, h], &[1, 2]).as_dtype(self.dtype)?;
        let e = self
            .size_encoder
            .forward(&self.fourier(&x, &self.size_features)?)?;
        Ok(e.reshape(&[1, 1, -1])?)
    }

    /// `decode_coordinate` + argmax: the bin `k` (the coordinate is `k / 1024`) and the gap
    /// between the best and second-best logit.
    pub fn decode_coordinate(&self, hidden: &Array) -> Result<(usize, f32)> {
        let logits = host_values(&self.coord_decoder.forward(&last_position(hidden)?)?)?;
        Ok((argmax_first(&logits), top2_gap(&logits)))
    }

    /// `decode_size` + argmax per row: the `(w, h)` bins, each with its logit gap.
    pub fn decode_size(&self, hidden: &Array) -> Result<((usize, f32), (usize, f32))> {
        let logits = host_values(&self.size_decoder.forward(&last_position(hidden)?)?)?;
        let half = logits.len() / 2;
        let (w, h) = (&logits[..half], &logits[half..]);
        Ok((
            (argmax_first(w), top2_gap(w)),
            (argmax_first(h), top2_gap(h)),
        ))
    }

    pub(crate) fn arrays(&self) -> Vec<&Array> {
        let mut v = vec![&self.coord_features, &self.size_features];
        v.extend(self.coord_encoder.arrays());
        v.extend(self.coord_decoder.arrays());
        v.extend(self.size_encoder.arrays());
        v.extend(self.size_decoder.arrays());
        v
    }
}

/// `k / 1024` as the reference computes it (integer tensor true-divided: float32).
pub fn coordinate_of_bin(k: usize) -> f32 {
    k as f32 / 1024.0
}

/// `2^((bin / 1023) * 10 - 10)`, each step in float32 as the reference's tensor ops.
pub fn size_of_bin(bin: usize) -> f32 {
    let e = (bin as f32 / 1023.0) * 10.0 - 10.0;
    2f32.powf(e)
}

fn last_position(hidden: &Array) -> Result<Array> {
    use mlx_rs::ops::indexing::IndexOp;
    Ok(hidden.index((.., -1, ..)))
}

/// Values of a logits array as f32 (exact for bf16/f16/f32).
pub(crate) fn host_values(a: &Array) -> Result<Vec<f32>> {
    let a = a.as_dtype(Dtype::Float32)?;
    a.eval()?;
    Ok(a.as_slice::<f32>().to_vec())
}

/// Index of the first maximum (PyTorch's argmax tie rule).
pub fn argmax_first(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Best minus second-best value (0 on a tie); how close an argmax decision was.
pub fn top2_gap(v: &[f32]) -> f32 {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &x in v {
        if x > a {
            b = a;
            a = x;
        } else if x > b {
            b = x;
        }
    }
    a - b
}

/// A float32 value rounded to bf16 and back (what `torch.tensor([w, h], dtype=bf16)` keeps).
pub fn round_bf16(x: f32) -> f32 {
    bf16::from_f32(x).to_f32()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_bins_span_one_over_1024_to_one() {
        assert_eq!(size_of_bin(0), 1.0 / 1024.0);
        assert_eq!(size_of_bin(1023), 1.0);
    }

    #[test]
    fn argmax_ties_go_to_the_first_index() {
        assert_eq!(argmax_first(&[0.5, 2.0, 2.0, 1.0]), 1);
        assert_eq!(coordinate_of_bin(512), 0.5);
    }
}
