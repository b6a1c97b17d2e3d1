//! One GGUF tensor → the MLX checkpoint tensors of its module: dense, re-quantized with MLX's
//! affine quantization, or (lossless) the GGUF's own blocks repacked as MLX affine groups of 32.

use mlx_rs::{Array, Dtype};

use super::error::{ConvertError, Result};
use super::names::{Mapped, Role};
use crate::checkpoint::QuantParams;
use crate::gguf::affine::{affine_bits, pack_codes, to_affine, AFFINE_GROUP};
use crate::gguf::{GgufFile, TensorInfo};

/// How Linear and Embedding weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantMode {
    /// Repack Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K blocks as MLX affine 4/5/8-bit, group size 32,
    /// with no loss; other types (Q6_K, floats) stay dense.
    KeepGguf,
    /// Dequantize, then MLX affine quantization (`mx.quantize`); dense when the input dimension is
    /// not a multiple of the group size (as mlx-lm does).
    Affine(QuantParams),
    /// Dequantize only.
    Dense,
}

/// The converted tensors of one module and how its weight is stored.
pub struct Converted {
    pub arrays: Vec<(String, Array)>,
    pub quant: Option<QuantParams>,
    /// e.g. `Q5_0 -> affine 5-bit g32 (exact)`.
    pub how: String,
}

fn tensor_err(f: &GgufFile, t: &TensorInfo, reason: String) -> ConvertError {
    ConvertError::Tensor {
        path: f.path().into(),
        tensor: t.name.clone(),
        reason,
    }
}

fn cast(a: Array, dtype: Dtype) -> Result<Array> {
    Ok(if a.dtype() == dtype {
        a
    } else {
        a.as_dtype(dtype)?
    })
}

/// Norm statistics: how many stored values, and how many are bf16-exact before and after the
/// `- 1` (llama.cpp adds 1 to a bf16 checkpoint's norms in f32: then every `w - 1` is bf16-exact).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NormStats {
    pub values: usize,
    pub bf16_exact_stored: usize,
    pub bf16_exact_minus_one: usize,
}

fn bf16_exact(x: f32) -> bool {
    x.to_bits() & 0xFFFF == 0
}

/// Convert tensor `t` mapped to `m`, of row-major shape `shape` (`[out, in]`, or `[len]`).
pub fn convert(
    f: &GgufFile,
    t: &TensorInfo,
    m: &Mapped,
    shape: &[u64],
    mode: QuantMode,
    dtype: Dtype,
    norms: &mut NormStats,
) -> Result<Converted> {
    let dims: Vec<i32> = shape.iter().map(|&d| d as i32).collect();
    let wname = format!("{}.weight", m.module);
    let dense =
        |values: Vec<f32>| -> Result<Array> { cast(Array::from_slice(&values, &dims), dtype) };
    if m.role == Role::Norm {
        let mut w = f.dequantize(t)?;
        for x in w.iter_mut() {
            norms.values += 1;
            norms.bf16_exact_stored += bf16_exact(*x) as usize;
            *x -= 1.0;
            norms.bf16_exact_minus_one += bf16_exact(*x) as usize;
        }
        return Ok(Converted {
            arrays: vec![(wname, dense(w)?)],
            quant: None,
            how: format!("{} norm, minus 1", t.ggml_type),
        });
    }
    if shape.len() != 2 {
        return Err(tensor_err(
            f,
            t,
            format!("expected a matrix, found shape {shape:?}"),
        ));
    }
    let (rows, cols) = (shape[0] as usize, shape[1] as usize);
    match mode {
        QuantMode::KeepGguf if affine_bits(t.ggml_type).is_some() => {
            let raw = f.read_raw(t)?;
            let a = to_affine(t.ggml_type, &raw, rows * cols).map_err(|r| tensor_err(f, t, r))?;
            let words = cols * a.bits as usize / 32;
            let mut packed = Vec::with_capacity(rows * words);
            for row in a.codes.chunks_exact(cols) {
                packed.extend(pack_codes(row, a.bits));
            }
            let gdims = [rows as i32, (cols / AFFINE_GROUP) as i32];
            let q = QuantParams {
                group_size: AFFINE_GROUP as i32,
                bits: a.bits,
            };
            Ok(Converted {
                arrays: vec![
                    (
                        wname,
                        Array::from_slice(&packed, &[rows as i32, words as i32]),
                    ),
                    (
                        format!("{}.scales", m.module),
                        cast(Array::from_slice(&a.scales, &gdims), dtype)?,
                    ),
                    (
                        format!("{}.biases", m.module),
                        cast(Array::from_slice(&a.biases, &gdims), dtype)?,
                    ),
                ],
                quant: Some(q),
                how: format!("{} -> affine {}-bit g32 (exact)", t.ggml_type, a.bits),
            })
        }
        QuantMode::Affine(q) if cols % q.group_size as usize == 0 => {
            let w = Array::from_slice(&f.dequantize(t)?, &dims);
            let (wq, scales, biases) = mlx_rs::ops::quantize(&w, q.group_size, q.bits)?;
            let out = vec![
                (wname, wq),
                (format!("{}.scales", m.module), cast(scales, dtype)?),
                (format!("{}.biases", m.module), cast(biases, dtype)?),
            ];
            mlx_rs::transforms::eval(out.iter().map(|(_, a)| a))?;
            Ok(Converted {
                arrays: out,
                quant: Some(q),
                how: format!("{} -> affine {}-bit g{}", t.ggml_type, q.bits, q.group_size),
            })
        }
        _ => Ok(Converted {
            arrays: vec![(wname, dense(f.dequantize(t)?)?)],
            quant: None,
            how: format!(
                "{} -> dense {}",
                t.ggml_type,
                crate::dtype::dtype_name(dtype)
            ),
        }),
    }
}
