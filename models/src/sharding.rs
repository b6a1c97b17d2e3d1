//! Loading one rank's slice of a weight straight from its safetensors file, for tensor
//! parallelism: only the bytes of the slice are read (MLX's lazy loader would read a whole tensor
//! and the slice would keep the whole buffer alive), so no rank ever holds a full sharded weight.
//!
//! Slices are rectangles of the last two axes (`[.., rows, cols]`), every leading index kept.
//! Linear layers split by output rows (column-parallel) or input columns (row-parallel); for an
//! affine-quantized weight the rows of the packed weight, scales and biases go together, and a
//! column split must fall on quantization-group boundaries (a group shares one scale and bias).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use mlx_rs::{Array, Dtype};
use serde_json::Value;

use crate::checkpoint::{cast, Checkpoint};
use crate::error::{ModelError, Result};
use crate::quantized::{Linear, QuantizedWeight, SwitchLinear};

/// Which part of a linear layer `y = x W^T` (`W: [.., out, in]`) a rank keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// Output features `rows` of `out` (column-parallel: the rank computes those outputs).
    Rows(Range<i32>),
    /// Input features `cols` of `in` (row-parallel: the rank's outputs are partial sums).
    Cols(Range<i32>),
    /// Whole experts `range` of a bank `[E, out, in]` (expert parallelism).
    Experts(Range<i32>),
}

struct Entry {
    dtype: Dtype,
    elem: u64,
    shape: Vec<i64>,
    /// Absolute file offset of the tensor's first byte.
    begin: u64,
}

struct FileIndex {
    file: File,
    entries: HashMap<String, Entry>,
}

/// Reads slices of a checkpoint's tensors from their files (headers parsed once per file).
pub struct TensorSlicer<'a> {
    ckpt: &'a Checkpoint,
    files: RefCell<HashMap<PathBuf, Rc<FileIndex>>>,
}

fn safetensors_dtype(name: &str) -> Option<(Dtype, u64)> {
    Some(match name {
        "BF16" => (Dtype::Bfloat16, 2),
        "F16" => (Dtype::Float16, 2),
        "F32" => (Dtype::Float32, 4),
        "U32" => (Dtype::Uint32, 4),
        "I32" => (Dtype::Int32, 4),
        "U8" => (Dtype::Uint8, 1),
        _ => return None,
    })
}

fn index_file(path: &Path) -> Result<FileIndex> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |reason: String| ModelError::CorruptSafetensors {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    file.read_exact_at(&mut len, 0).map_err(io)?;
    let header_len = u64::from_le_bytes(len);
    // Checkpoint::open validated the header; re-check the size only as a guard.
    if header_len > 100 * 1024 * 1024 {
        return Err(corrupt(format!(
            "header length {header_len} is implausibly large"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact_at(&mut header, 8).map_err(io)?;
    let header: Value = serde_json::from_slice(&header)
        .map_err(|e| corrupt(format!("header is not valid JSON: {e}")))?;
    let data_start = 8 + header_len;
    let mut entries = HashMap::new();
    for (name, e) in header.as_object().into_iter().flatten() {
        if name == "__metadata__" {
            continue;
        }
        let Some((dtype, elem)) = e
            .get("dtype")
            .and_then(Value::as_str)
            .and_then(safetensors_dtype)
        else {
            continue; // not a dtype weights are sliced in; reading it is refused below
        };
        let shape: Option<Vec<i64>> = e
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|s| s.iter().map(Value::as_i64).collect());
        let begin = e
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|o| o.first())
            .and_then(Value::as_u64);
        if let (Some(shape), Some(begin)) = (shape, begin) {
            entries.insert(
                name.clone(),
                Entry {
                    dtype,
                    elem,
                    shape,
                    begin: data_start + begin,
                },
            );
        }
    }
    Ok(FileIndex { file, entries })
}

impl<'a> TensorSlicer<'a> {
    pub fn new(ckpt: &'a Checkpoint) -> Self {
        TensorSlicer {
            ckpt,
            files: RefCell::new(HashMap::new()),
        }
    }

    pub fn checkpoint(&self) -> &'a Checkpoint {
        self.ckpt
    }

    fn file_index(&self, name: &str) -> Result<Rc<FileIndex>> {
        self.ckpt.tensor(name)?; // a missing tensor is reported as such
        let path = self.ckpt.file_of(name).to_path_buf();
        if let Some(f) = self.files.borrow().get(&path) {
            return Ok(f.clone());
        }
        let f = Rc::new(index_file(&path)?);
        self.files.borrow_mut().insert(path, f.clone());
        Ok(f)
    }

    /// `tensor[.., rows, cols]` in the stored dtype, read from the file.
    pub fn block(&self, name: &str, rows: Range<i32>, cols: Range<i32>) -> Result<Array> {
        let index = self.file_index(name)?;
        let path = self.ckpt.file_of(name);
        let e = index
            .entries
            .get(name)
            .ok_or_else(|| ModelError::DtypeMismatch {
                file: path.to_path_buf(),
                name: name.to_string(),
                expected: "bf16, f16, f32, u32, i32 or u8 to be sliced".into(),
                found: "another dtype".into(),
            })?;
        let n = e.shape.len();
        if n < 2 {
            return Err(ModelError::Input(format!(
                "tensor `{name}` has shape {:?}: only 2-D or higher tensors are sliced",
                e.shape
            )));
        }
        let (r, c) = (e.shape[n - 2], e.shape[n - 1]);
        let (r0, r1, c0, c1) = (
            rows.start as i64,
            rows.end as i64,
            cols.start as i64,
            cols.end as i64,
        );
        if !(0 <= r0 && r0 < r1 && r1 <= r && 0 <= c0 && c0 < c1 && c1 <= c) {
            return Err(ModelError::Input(format!(
                "tensor `{name}` of shape {:?} has no block [{r0}..{r1}, {c0}..{c1}]",
                e.shape
            )));
        }
        let lead: i64 = e.shape[..n - 2].iter().product();
        let (nr, nc) = ((r1 - r0) as u64, (c1 - c0) as u64);
        let row_bytes = nc * e.elem;
        let mut buf = vec![0u8; (lead as u64 * nr * row_bytes) as usize];
        let io = |source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut at = 0usize;
        for l in 0..lead as u64 {
            let first_row = l * r as u64 + r0 as u64;
            if c0 == 0 && c1 == c {
                // Whole rows: one contiguous read per leading index.
                let len = (nr * row_bytes) as usize;
                let off = e.begin + first_row * c as u64 * e.elem;
                index
                    .file
                    .read_exact_at(&mut buf[at..at + len], off)
                    .map_err(io)?;
                at += len;
            } else {
                for i in 0..nr {
                    let off = e.begin + ((first_row + i) * c as u64 + c0 as u64) * e.elem;
                    let len = row_bytes as usize;
                    index
                        .file
                        .read_exact_at(&mut buf[at..at + len], off)
                        .map_err(io)?;
                    at += len;
                }
            }
        }
        let mut shape: Vec<i32> = e.shape[..n - 2].iter().map(|&d| d as i32).collect();
        shape.push(nr as i32);
        shape.push(nc as i32);
        // SAFETY: `buf` holds exactly prod(shape) elements of `dtype`, little-endian as MLX
        // expects on every platform it runs on; MLX copies the data.
        Ok(unsafe {
            Array::from_raw_data(buf.as_ptr() as *const std::ffi::c_void, &shape, e.dtype)
        })
    }

    /// `tensor[range]` along the first axis (whole sub-tensors, one contiguous read).
    pub fn leading(&self, name: &str, range: Range<i32>) -> Result<Array> {
        let index = self.file_index(name)?;
        let path = self.ckpt.file_of(name);
        let e = index
            .entries
            .get(name)
            .ok_or_else(|| ModelError::Input(format!("tensor `{name}` cannot be sliced")))?;
        let n0 = e.shape.first().copied().unwrap_or(0);
        let (a, b) = (range.start as i64, range.end as i64);
        if !(0 <= a && a < b && b <= n0) {
            return Err(ModelError::Input(format!(
                "tensor `{name}` of shape {:?} has no entries {a}..{b}",
                e.shape
            )));
        }
        let per: u64 = e.shape[1..].iter().product::<i64>() as u64 * e.elem;
        let mut buf = vec![0u8; ((b - a) as u64 * per) as usize];
        index
            .file
            .read_exact_at(&mut buf, e.begin + a as u64 * per)
            .map_err(|source| ModelError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let mut shape: Vec<i32> = e.shape.iter().map(|&d| d as i32).collect();
        shape[0] = (b - a) as i32;
        // SAFETY: as in `block`.
        Ok(unsafe {
            Array::from_raw_data(buf.as_ptr() as *const std::ffi::c_void, &shape, e.dtype)
        })
    }

    fn float_block(
        &self,
        name: &str,
        rows: Range<i32>,
        cols: Range<i32>,
        dtype: Dtype,
    ) -> Result<Array> {
        Ok(cast(&self.block(name, rows, cols)?, dtype)?)
    }

    /// The part of `full` (already loaded lazily and validated, never evaluated) that `split`
    /// keeps, read from the file. `path` is the module path `full` was loaded from.
    pub fn linear(&self, full: &Linear, path: &str, split: &Split, dtype: Dtype) -> Result<Linear> {
        match full {
            Linear::Dense { weight } => Ok(Linear::Dense {
                weight: self.dense(weight, path, split, dtype)?,
            }),
            Linear::Quantized(q) => Ok(Linear::Quantized(self.quantized(q, path, split, dtype)?)),
        }
    }

    /// As [`TensorSlicer::linear`] for a bank of experts `[E, out, in]` (every expert keeps the
    /// same rows or columns).
    pub fn switch_linear(
        &self,
        full: &SwitchLinear,
        path: &str,
        split: &Split,
        dtype: Dtype,
    ) -> Result<SwitchLinear> {
        match full {
            SwitchLinear::Dense { weight } => Ok(SwitchLinear::Dense {
                weight: self.dense(weight, path, split, dtype)?,
            }),
            SwitchLinear::Quantized(q) => Ok(SwitchLinear::Quantized(
                self.quantized(q, path, split, dtype)?,
            )),
        }
    }

    fn dense(&self, weight: &Array, path: &str, split: &Split, dtype: Dtype) -> Result<Array> {
        let (out_dim, in_dim) = (weight.dim(-2), weight.dim(-1));
        let name = format!("{path}.weight");
        let (rows, cols) = match split {
            Split::Rows(r) => (r.clone(), 0..in_dim),
            Split::Cols(c) => (0..out_dim, c.clone()),
            Split::Experts(e) => return Ok(cast(&self.leading(&name, e.clone())?, dtype)?),
        };
        self.float_block(&name, rows, cols, dtype)
    }

    fn quantized(
        &self,
        q: &QuantizedWeight,
        path: &str,
        split: &Split,
        dtype: Dtype,
    ) -> Result<QuantizedWeight> {
        let out_dim = q.weight.dim(-2);
        let packed = q.weight.dim(-1);
        let groups = q.scales.dim(-1);
        let (w_cols, s_cols, rows) = match split {
            Split::Experts(e) => {
                return Ok(QuantizedWeight {
                    weight: self.leading(&format!("{path}.weight"), e.clone())?,
                    scales: cast(&self.leading(&format!("{path}.scales"), e.clone())?, dtype)?,
                    biases: cast(&self.leading(&format!("{path}.biases"), e.clone())?, dtype)?,
                    group_size: q.group_size,
                    bits: q.bits,
                })
            }
            Split::Rows(r) => (0..packed, 0..groups, r.clone()),
            Split::Cols(c) => {
                let gs = q.group_size;
                if c.start % gs != 0 || c.end % gs != 0 {
                    return Err(ModelError::config(
                        self.ckpt.config_path(),
                        format!("quantization (group_size of `{path}`)"),
                        format!(
                            "input columns {}..{} of `{path}` do not start and end on a quantization group \
                             boundary (group_size {gs}), so this rank's slice would split a group's scale",
                            c.start, c.end
                        ),
                    ));
                }
                // group_size * bits is a multiple of 32 for every supported pair, so a group
                // boundary is a word boundary of the packed weight.
                let words = |col: i32| col * q.bits / 32;
                (
                    words(c.start)..words(c.end),
                    c.start / gs..c.end / gs,
                    0..out_dim,
                )
            }
        };
        Ok(QuantizedWeight {
            weight: self.block(&format!("{path}.weight"), rows.clone(), w_cols)?,
            scales: self.float_block(
                &format!("{path}.scales"),
                rows.clone(),
                s_cols.clone(),
                dtype,
            )?,
            biases: self.float_block(&format!("{path}.biases"), rows, s_cols, dtype)?,
            group_size: q.group_size,
            bits: q.bits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::ops::indexing::IndexOp;
    use std::collections::HashMap as Map;

    fn write_ckpt(dir: &Path, tensors: &[(&str, Array)], quant: bool) {
        let map: Map<String, Array> = tensors
            .iter()
            .map(|(n, a)| (n.to_string(), a.clone()))
            .collect();
        Array::save_safetensors(
            map,
            None::<&Map<String, String>>,
            dir.join("model.safetensors"),
        )
        .unwrap();
        let cfg = if quant {
            r#"{"model_type":"x","quantization":{"group_size":64,"bits":4}}"#
        } else {
            r#"{"model_type":"x"}"#
        };
        std::fs::write(dir.join("config.json"), cfg).unwrap();
    }

    #[test]
    fn blocks_of_a_dense_weight_equal_the_same_slice_of_the_whole() {
        let dir = tempfile::tempdir().unwrap();
        let w = mlx_rs::random::normal::<f32>(&[2, 6, 10], None, None, None)
            .unwrap()
            .as_dtype(Dtype::Bfloat16)
            .unwrap();
        write_ckpt(dir.path(), &[("a.weight", w.clone())], false);
        let ckpt = Checkpoint::open(dir.path()).unwrap();
        let s = TensorSlicer::new(&ckpt);
        let rows = s.block("a.weight", 2..5, 0..10).unwrap();
        assert_eq!(rows.dtype(), Dtype::Bfloat16);
        assert!(rows.eq_values(w.index((.., 2..5, ..))).unwrap());
        let cols = s.block("a.weight", 0..6, 3..7).unwrap();
        assert!(cols.eq_values(w.index((.., .., 3..7))).unwrap());
        let err = s.block("a.weight", 0..7, 0..10).unwrap_err().to_string();
        assert!(
            err.contains("`a.weight`") && err.contains("no block"),
            "{err}"
        );
        assert!(s
            .block("b.weight", 0..1, 0..1)
            .unwrap_err()
            .to_string()
            .contains("missing tensor `b.weight`"));
    }

    /// Row-parallel halves of a quantized layer, each fed its half of the input, must sum to
    /// the whole layer's output; column-parallel halves must be the halves of the output.
    #[test]
    fn quantized_row_and_column_halves_reassemble_the_whole_layer() {
        let dir = tempfile::tempdir().unwrap();
        let w = mlx_rs::random::normal::<f32>(&[8, 256], None, None, None).unwrap();
        let (qw, sc, bi) = mlx_rs::ops::quantize(&w, 64, 4).unwrap();
        write_ckpt(
            dir.path(),
            &[("l.weight", qw), ("l.scales", sc), ("l.biases", bi)],
            true,
        );
        let ckpt = Checkpoint::open(dir.path()).unwrap();
        let full = Linear::load(&ckpt, "l", 256, 8, Dtype::Float32).unwrap();
        let s = TensorSlicer::new(&ckpt);
        let x = mlx_rs::random::normal::<f32>(&[1, 3, 256], None, None, None).unwrap();
        let y = full.forward(&x).unwrap();

        let a = s
            .linear(&full, "l", &Split::Cols(0..128), Dtype::Float32)
            .unwrap();
        let b = s
            .linear(&full, "l", &Split::Cols(128..256), Dtype::Float32)
            .unwrap();
        let ya = a.forward(&x.index((.., .., 0..128))).unwrap();
        let yb = b.forward(&x.index((.., .., 128..256))).unwrap();
        assert!(ya
            .add(&yb)
            .unwrap()
            .all_close(&y, 1e-4, 1e-4, None)
            .unwrap());

        let top = s
            .linear(&full, "l", &Split::Rows(0..4), Dtype::Float32)
            .unwrap();
        assert!(top
            .forward(&x)
            .unwrap()
            .eq_values(y.index((.., .., 0..4)))
            .unwrap());

        let err = s
            .linear(&full, "l", &Split::Cols(0..96), Dtype::Float32)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("group_size 64") && err.contains("`l`"),
            "{err}"
        );
    }
}
