//! Linear layers and embeddings, dense or MLX-affine-quantized, as loaded from a checkpoint.
//!
//! Quantized tensors are the triplet `<path>.weight` (uint32, packed `[.., out, in*bits/32]`),
//! `<path>.scales` and `<path>.biases` (`[.., out, in/group_size]`). Floating tensors (dense
//! weights, scales, biases) are cast to the compute dtype at load time.

use mlx_rs::ops::{dequantize, gather_qmm, quantized_matmul};
use mlx_rs::{Array, Dtype};

use crate::checkpoint::{Checkpoint, QuantParams};
use crate::error::{ModelError, Result};
use crate::kernels::cpu_quant::CpuMatrix;

/// Packed affine-quantized weight with its scales and biases.
#[derive(Debug, Clone)]
pub struct QuantizedWeight {
    pub weight: Array,
    pub scales: Array,
    pub biases: Array,
    pub group_size: i32,
    pub bits: i32,
}

impl QuantizedWeight {
    /// Load the triplet at `path` for a logical weight of shape `[lead.., out, in]`.
    pub fn load(
        ckpt: &Checkpoint,
        path: &str,
        lead: &[i32],
        out_dim: i32,
        in_dim: i32,
        q: QuantParams,
        dtype: Dtype,
    ) -> Result<Self> {
        let wname = format!("{path}.weight");
        let w = ckpt.tensor(&wname)?;
        let file = ckpt.file_of(&wname).to_path_buf();
        if w.dtype() != Dtype::Uint32 {
            return Err(ModelError::DtypeMismatch {
                file,
                name: wname,
                expected: "uint32 (packed quantized weight, since `.scales` is present)".into(),
                found: format!("{:?}", w.dtype()),
            });
        }
        let mut expected: Vec<i32> = lead.to_vec();
        expected.push(out_dim);
        expected.push(in_dim * q.bits / 32);
        let found = w.shape().to_vec();
        let ndim_ok = found.len() == expected.len();
        if ndim_ok && found[..found.len() - 1] != expected[..expected.len() - 1] {
            return Err(ckpt.shape_error(&wname, &expected, &found));
        }
        if !ndim_ok
            || (in_dim * q.bits) % 32 != 0
            || in_dim % q.group_size != 0
            || found != expected
        {
            return Err(ModelError::QuantizedShape {
                file,
                name: wname,
                bits: q.bits,
                group_size: q.group_size,
                out_dim,
                in_dim,
                expected,
                found,
            });
        }
        let mut sshape: Vec<i32> = lead.to_vec();
        sshape.push(out_dim);
        sshape.push(in_dim / q.group_size);
        let scales = ckpt.float_tensor(&format!("{path}.scales"), &sshape, dtype)?;
        let biases = ckpt.float_tensor(&format!("{path}.biases"), &sshape, dtype)?;
        Ok(QuantizedWeight {
            weight: w.clone(),
            scales,
            biases,
            group_size: q.group_size,
            bits: q.bits,
        })
    }

    /// `x @ W^T` (MLX `quantized_matmul(transpose=True)`; vlmbench's own kernels where they
    /// apply: one-row products on a CUDA GPU, float32 4-bit products on the CPU, see
    /// [`crate::kernels`]).
    pub fn matmul_t(&self, x: &Array) -> Result<Array> {
        if let Some(y) = crate::kernels::try_quantized_matmul(x, self.operands())? {
            return Ok(y);
        }
        Ok(quantized_matmul(
            x,
            &self.weight,
            &self.scales,
            &self.biases,
            true,
            self.group_size,
            self.bits,
        )?)
    }

    fn cpu_matrix(&self) -> std::result::Result<CpuMatrix, String> {
        CpuMatrix::from_mlx(
            &self.weight,
            &self.scales,
            &self.biases,
            self.bits,
            self.group_size,
        )
    }

    fn operands(&self) -> crate::kernels::QuantizedOperands<'_> {
        crate::kernels::QuantizedOperands {
            w: &self.weight,
            scales: &self.scales,
            biases: &self.biases,
            bits: self.bits,
            group_size: self.group_size,
        }
    }

    fn arrays(&self) -> [&Array; 3] {
        [&self.weight, &self.scales, &self.biases]
    }
}

/// `x @ W^T` for a dense `W` (vlmbench's CPU product where it applies, see [`crate::kernels`]).
fn dense_matmul_t(x: &Array, weight: &Array) -> Result<Array> {
    match crate::kernels::cpu::try_dense_matmul(x, weight)? {
        Some(y) => Ok(y),
        None => Ok(x.matmul(weight.t())?),
    }
}

/// A bias-free linear layer `y = x W^T`, `W: [out, in]`.
#[derive(Debug, Clone)]
pub enum Linear {
    Dense { weight: Array },
    Quantized(QuantizedWeight),
}

impl Linear {
    /// Load `<path>`; quantized iff the checkpoint says so (see [`Checkpoint::module_quantization`]).
    pub fn load(
        ckpt: &Checkpoint,
        path: &str,
        in_dim: i32,
        out_dim: i32,
        dtype: Dtype,
    ) -> Result<Self> {
        match ckpt.module_quantization(path)? {
            Some(q) => Ok(Linear::Quantized(QuantizedWeight::load(
                ckpt,
                path,
                &[],
                out_dim,
                in_dim,
                q,
                dtype,
            )?)),
            None => Ok(Linear::Dense {
                weight: ckpt.float_tensor(&format!("{path}.weight"), &[out_dim, in_dim], dtype)?,
            }),
        }
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        match self {
            Linear::Dense { weight } => dense_matmul_t(x, weight),
            Linear::Quantized(q) => q.matmul_t(x),
        }
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self, Linear::Quantized(_))
    }

    /// This weight as the CPU kernels take it (see [`crate::kernels::cpu_quant`]).
    pub fn cpu_matrix(&self) -> std::result::Result<CpuMatrix, String> {
        match self {
            Linear::Dense { weight } => CpuMatrix::from_dense(weight),
            Linear::Quantized(q) => q.cpu_matrix(),
        }
    }

    pub(crate) fn arrays(&self) -> Vec<&Array> {
        match self {
            Linear::Dense { weight } => vec![weight],
            Linear::Quantized(q) => q.arrays().to_vec(),
        }
    }
}

/// An embedding table `[vocab, dim]`, dense or quantized; usable as a tied LM head.
#[derive(Debug, Clone)]
pub enum Embedding {
    Dense { weight: Array },
    Quantized(QuantizedWeight),
}

impl Embedding {
    pub fn load(ckpt: &Checkpoint, path: &str, vocab: i32, dim: i32, dtype: Dtype) -> Result<Self> {
        match ckpt.module_quantization(path)? {
            Some(q) => Ok(Embedding::Quantized(QuantizedWeight::load(
                ckpt,
                path,
                &[],
                vocab,
                dim,
                q,
                dtype,
            )?)),
            None => Ok(Embedding::Dense {
                weight: ckpt.float_tensor(&format!("{path}.weight"), &[vocab, dim], dtype)?,
            }),
        }
    }

    /// Rows for integer `ids` of any shape: result `[..ids.shape, dim]`.
    /// The quantized lookup dequantizes the gathered rows (MLX `QuantizedEmbedding`).
    pub fn lookup(&self, ids: &Array) -> Result<Array> {
        match self {
            Embedding::Dense { weight } => Ok(weight.take_axis(ids, 0)?),
            Embedding::Quantized(q) => {
                let w = q.weight.take_axis(ids, 0)?;
                let s = q.scales.take_axis(ids, 0)?;
                let b = q.biases.take_axis(ids, 0)?;
                Ok(dequantize(&w, &s, &b, q.group_size, q.bits)?)
            }
        }
    }

    /// This table as the CPU kernels take it (see [`crate::kernels::cpu_quant`]).
    pub fn cpu_matrix(&self) -> std::result::Result<CpuMatrix, String> {
        match self {
            Embedding::Dense { weight } => CpuMatrix::from_dense(weight),
            Embedding::Quantized(q) => q.cpu_matrix(),
        }
    }

    /// The tied LM head: `x @ E^T` (MLX `QuantizedEmbedding.as_linear`).
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        match self {
            Embedding::Dense { weight } => dense_matmul_t(x, weight),
            Embedding::Quantized(q) => q.matmul_t(x),
        }
    }

    pub(crate) fn arrays(&self) -> Vec<&Array> {
        match self {
            Embedding::Dense { weight } => vec![weight],
            Embedding::Quantized(q) => q.arrays().to_vec(),
        }
    }
}

/// A bank of per-expert linear layers `W: [E, out, in]` applied to gathered experts
/// (mlx-vlm `SwitchLinear` / `QuantizedSwitchLinear`).
#[derive(Debug, Clone)]
pub enum SwitchLinear {
    Dense { weight: Array },
    Quantized(QuantizedWeight),
}

impl SwitchLinear {
    pub fn load(
        ckpt: &Checkpoint,
        path: &str,
        experts: i32,
        in_dim: i32,
        out_dim: i32,
        dtype: Dtype,
    ) -> Result<Self> {
        match ckpt.module_quantization(path)? {
            Some(q) => Ok(SwitchLinear::Quantized(QuantizedWeight::load(
                ckpt,
                path,
                &[experts],
                out_dim,
                in_dim,
                q,
                dtype,
            )?)),
            None => Ok(SwitchLinear::Dense {
                weight: ckpt.float_tensor(
                    &format!("{path}.weight"),
                    &[experts, out_dim, in_dim],
                    dtype,
                )?,
            }),
        }
    }

    /// `x: [.., 1, in]` times the experts named by `indices` → `[.., 1, out]` (gather_qmm / gather_mm).
    pub fn forward(&self, x: &Array, indices: &Array, sorted: bool) -> Result<Array> {
        match self {
            SwitchLinear::Dense { weight } => {
                let wt = weight.swap_axes(-1, -2)?;
                Ok(mlx_rs::ops::gather_mm(x, &wt, None, indices, sorted)?)
            }
            SwitchLinear::Quantized(q) => Ok(gather_qmm(
                x,
                &q.weight,
                &q.scales,
                &q.biases,
                None,
                indices,
                true,
                q.group_size,
                q.bits,
                sorted,
            )?),
        }
    }

    pub(crate) fn arrays(&self) -> Vec<&Array> {
        match self {
            SwitchLinear::Dense { weight } => vec![weight],
            SwitchLinear::Quantized(q) => q.arrays().to_vec(),
        }
    }
}

/// Load a 1-D (or any shape) floating parameter cast to `dtype`.
pub fn load_param(ckpt: &Checkpoint, name: &str, shape: &[i32], dtype: Dtype) -> Result<Array> {
    ckpt.float_tensor(name, shape, dtype)
}
