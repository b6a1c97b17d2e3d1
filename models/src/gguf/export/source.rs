//! Raw bytes of a checkpoint's safetensors tensors, read by byte range (the exporter streams
//! large tensors in row blocks instead of loading them whole).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ExportError;
use crate::checkpoint::Checkpoint;

/// Storage dtype of a tensor, as safetensors names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    U32,
    BF16,
    F16,
    F32,
}

impl Dtype {
    fn parse(s: &str) -> Option<Dtype> {
        Some(match s {
            "U32" => Dtype::U32,
            "BF16" => Dtype::BF16,
            "F16" => Dtype::F16,
            "F32" => Dtype::F32,
            _ => return None,
        })
    }

    pub fn size(self) -> u64 {
        match self {
            Dtype::BF16 | Dtype::F16 => 2,
            Dtype::U32 | Dtype::F32 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::U32 => "U32",
            Dtype::BF16 => "BF16",
            Dtype::F16 => "F16",
            Dtype::F32 => "F32",
        }
    }
}

/// Where a tensor's bytes are.
#[derive(Debug, Clone)]
pub struct Entry {
    pub file: PathBuf,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    /// Absolute offset of the first byte in the file.
    pub start: u64,
}

impl Entry {
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Elements per row (the last dim; 1 for a scalar).
    pub fn row_len(&self) -> u64 {
        self.shape.last().copied().unwrap_or(1)
    }

    /// Rows (every dim but the last).
    pub fn rows(&self) -> u64 {
        self.numel() / self.row_len().max(1)
    }
}

/// The tensors of a checkpoint (already validated by [`Checkpoint::open`]).
pub struct Source {
    entries: HashMap<String, Entry>,
}

fn header(path: &Path) -> Result<(u64, serde_json::Map<String, Value>), ExportError> {
    let io = |e| ExportError::io(path, e);
    let mut f = File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(io)?;
    let n = u64::from_le_bytes(len);
    let mut buf = vec![0u8; n as usize];
    f.read_exact(&mut buf).map_err(io)?;
    let v: Value = serde_json::from_slice(&buf).map_err(|e| ExportError::Source {
        path: path.into(),
        reason: format!("safetensors header: {e}"),
    })?;
    match v {
        Value::Object(m) => Ok((8 + n, m)),
        _ => Err(ExportError::Source {
            path: path.into(),
            reason: "safetensors header is not a JSON object".into(),
        }),
    }
}

impl Source {
    /// Index every tensor of `ckpt` by its file's header.
    pub fn open(ckpt: &Checkpoint) -> Result<Source, ExportError> {
        let mut files: Vec<PathBuf> = ckpt
            .tensor_names()
            .map(|n| ckpt.file_of(n).to_path_buf())
            .collect();
        files.sort();
        files.dedup();
        let mut entries = HashMap::new();
        for file in files {
            let (data_start, map) = header(&file)?;
            for (name, e) in map {
                if name == "__metadata__" || ckpt.file_of(&name) != file {
                    continue;
                }
                let bad = |reason: String| ExportError::Source {
                    path: file.clone(),
                    reason: format!("tensor `{name}`: {reason}"),
                };
                let dtype_name = e.get("dtype").and_then(Value::as_str).unwrap_or("?");
                let dtype = Dtype::parse(dtype_name).ok_or_else(|| {
                    bad(format!(
                        "dtype {dtype_name} is not one the exporter reads (U32, BF16, F16, F32)"
                    ))
                })?;
                let shape: Vec<u64> = e
                    .get("shape")
                    .and_then(Value::as_array)
                    .and_then(|s| s.iter().map(Value::as_u64).collect())
                    .ok_or_else(|| bad("bad shape".into()))?;
                let start = e
                    .get("data_offsets")
                    .and_then(|o| o.get(0))
                    .and_then(Value::as_u64)
                    .ok_or_else(|| bad("bad data_offsets".into()))?;
                entries.insert(
                    name,
                    Entry {
                        file: file.clone(),
                        dtype,
                        shape,
                        start: data_start + start,
                    },
                );
            }
        }
        Ok(Source { entries })
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// Bytes `[from, to)` of a tensor's data.
    pub fn read(&self, name: &str, from: u64, to: u64) -> Result<Vec<u8>, ExportError> {
        let e = &self.entries[name];
        let io = |err| ExportError::io(&e.file, err);
        let mut f = File::open(&e.file).map_err(io)?;
        f.seek(SeekFrom::Start(e.start + from)).map_err(io)?;
        let mut buf = vec![0u8; (to - from) as usize];
        f.read_exact(&mut buf).map_err(io)?;
        Ok(buf)
    }

    /// Rows `[r0, r1)` of a float tensor (BF16, F16 or F32) as f32 (exact).
    pub fn read_f32_rows(&self, name: &str, r0: u64, r1: u64) -> Result<Vec<f32>, ExportError> {
        let e = &self.entries[name];
        let row = e.row_len() * e.dtype.size();
        let bytes = self.read(name, r0 * row, r1 * row)?;
        Ok(to_f32(e.dtype, &bytes))
    }

    /// A whole float tensor as f32.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, ExportError> {
        let rows = self.entries[name].rows();
        self.read_f32_rows(name, 0, rows)
    }
}

/// Little-endian floats of `dtype` as f32 (exact for all three). U32 is not a float dtype.
pub fn to_f32(dtype: Dtype, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::U32 => panic!("U32 data is packed codes, not floats"),
    }
}
