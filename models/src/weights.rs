//! A scoped view of a checkpoint's weights, as a model's modules load them: the name prefix and the
//! compute dtype travel with it, so a module's `load` names only its own tensors (`q_proj`, not
//! `model.language_model.layers.3.self_attn.q_proj`), in the spirit of candle's `VarBuilder` and
//! of mlx-lm's module tree.

use std::fmt::Display;

use mlx_rs::{Array, Dtype};

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::nn::RmsNorm;
use crate::quantized::{load_param, Embedding, Linear};

/// The weights under one module path of a checkpoint.
#[derive(Clone)]
pub struct Weights<'a> {
    ckpt: &'a Checkpoint,
    /// Empty or ending in `.`.
    prefix: String,
    dtype: Dtype,
}

impl<'a> Weights<'a> {
    /// The weights under `prefix` (empty, or a module path ending in `.`), every floating
    /// parameter cast to `dtype`.
    pub fn new(ckpt: &'a Checkpoint, prefix: &str, dtype: Dtype) -> Self {
        Weights {
            ckpt,
            prefix: prefix.to_string(),
            dtype,
        }
    }

    /// The scope of child module `name`.
    pub fn pp(&self, name: impl Display) -> Weights<'a> {
        Weights {
            ckpt: self.ckpt,
            prefix: format!("{}{name}.", self.prefix),
            dtype: self.dtype,
        }
    }

    /// The full checkpoint name of `name` in this scope.
    pub fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn checkpoint(&self) -> &'a Checkpoint {
        self.ckpt
    }

    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Linear layer `name` (`[out, in]`, quantized or not, with its bias if stored).
    pub fn linear(&self, name: &str, in_dim: i32, out_dim: i32) -> Result<Linear> {
        Linear::load(self.ckpt, &self.path(name), in_dim, out_dim, self.dtype)
    }

    /// Embedding table `name` (`[vocab, dim]`).
    pub fn embedding(&self, name: &str, vocab: i32, dim: i32) -> Result<Embedding> {
        Embedding::load(self.ckpt, &self.path(name), vocab, dim, self.dtype)
    }

    /// RMS norm `name` (its `weight` of `dim`).
    pub fn rms_norm(&self, name: &str, dim: i32, eps: f32) -> Result<RmsNorm> {
        Ok(RmsNorm::new(
            self.param(&format!("{name}.weight"), &[dim])?,
            eps,
        ))
    }

    /// Floating parameter `name` of `shape`, in the compute dtype.
    pub fn param(&self, name: &str, shape: &[i32]) -> Result<Array> {
        load_param(self.ckpt, &self.path(name), shape, self.dtype)
    }
}
