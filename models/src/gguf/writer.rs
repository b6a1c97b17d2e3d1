//! GGUF v3 writers: [`gguf_bytes`] builds a whole small file in memory (test fixtures: synthetic
//! models and malformed files that exercise the reader's and converter's error paths), and
//! [`StreamWriter`] writes the header first and then streams each tensor's data, so a model of
//! several GB is never held in memory (`vlmbench convert --to-gguf`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::types::GgmlType;
use super::value::MetaValue;

/// Data alignment of the files written here (GGUF's default; `general.alignment` is not written).
pub const ALIGNMENT: u64 = 32;

/// The GGUF id of a GGML type.
pub fn ggml_type_id(ty: GgmlType) -> u32 {
    match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q5_0 => 6,
        GgmlType::Q5_1 => 7,
        GgmlType::Q8_0 => 8,
        GgmlType::Q8_1 => 9,
        GgmlType::Q2K => 10,
        GgmlType::Q3K => 11,
        GgmlType::Q4K => 12,
        GgmlType::Q5K => 13,
        GgmlType::Q6K => 14,
        GgmlType::Q8K => 15,
        GgmlType::I8 => 24,
        GgmlType::I16 => 25,
        GgmlType::I32 => 26,
        GgmlType::I64 => 27,
        GgmlType::F64 => 28,
        GgmlType::BF16 => 30,
        GgmlType::Other(id) => id,
    }
}

/// A tensor to write: name, GGML dims (fastest first), type id and its raw block bytes.
pub struct RawTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub data: Vec<u8>,
}

impl RawTensor {
    /// An F32 tensor of row-major `shape` (written with reversed GGML dims).
    pub fn f32(name: &str, shape: &[u64], values: &[f32]) -> RawTensor {
        RawTensor {
            name: name.into(),
            dims: shape.iter().rev().copied().collect(),
            ggml_type: 0,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// A tensor of row-major `shape` from raw blocks of `ty`.
    pub fn blocks(name: &str, shape: &[u64], ty: GgmlType, data: Vec<u8>) -> RawTensor {
        RawTensor {
            name: name.into(),
            dims: shape.iter().rev().copied().collect(),
            ggml_type: ggml_type_id(ty),
            data,
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn type_id(v: &MetaValue) -> u32 {
    match v {
        MetaValue::U8(_) => 0,
        MetaValue::I8(_) => 1,
        MetaValue::U16(_) => 2,
        MetaValue::I16(_) => 3,
        MetaValue::U32(_) => 4,
        MetaValue::I32(_) => 5,
        MetaValue::F32(_) => 6,
        MetaValue::Bool(_) => 7,
        MetaValue::String(_) => 8,
        MetaValue::Array(_) => 9,
        MetaValue::U64(_) => 10,
        MetaValue::I64(_) => 11,
        MetaValue::F64(_) => 12,
    }
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.push(*x as u8),
        MetaValue::U16(x) => out.extend(x.to_le_bytes()),
        MetaValue::I16(x) => out.extend(x.to_le_bytes()),
        MetaValue::U32(x) => out.extend(x.to_le_bytes()),
        MetaValue::I32(x) => out.extend(x.to_le_bytes()),
        MetaValue::F32(x) => out.extend(x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(*x as u8),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::Array(a) => {
            out.extend(a.first().map(type_id).unwrap_or(4).to_le_bytes());
            out.extend((a.len() as u64).to_le_bytes());
            for x in a {
                put_value(out, x);
            }
        }
        MetaValue::U64(x) => out.extend(x.to_le_bytes()),
        MetaValue::I64(x) => out.extend(x.to_le_bytes()),
        MetaValue::F64(x) => out.extend(x.to_le_bytes()),
    }
}

fn put_metadata<K: AsRef<str>>(out: &mut Vec<u8>, n_tensors: usize, metadata: &[(K, MetaValue)]) {
    out.extend(b"GGUF");
    out.extend(3u32.to_le_bytes());
    out.extend((n_tensors as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_str(out, k.as_ref());
        out.extend(type_id(v).to_le_bytes());
        put_value(out, v);
    }
}

/// The bytes of a GGUF v3 file with these metadata and tensors, aligned to 32 bytes.
pub fn gguf_bytes(metadata: &[(&str, MetaValue)], tensors: &[RawTensor]) -> Vec<u8> {
    const ALIGN: usize = ALIGNMENT as usize;
    let mut out = Vec::new();
    put_metadata(&mut out, tensors.len(), metadata);
    let mut offset = 0usize;
    let mut offsets = vec![];
    for t in tensors {
        put_str(&mut out, &t.name);
        out.extend((t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(t.ggml_type.to_le_bytes());
        out.extend((offset as u64).to_le_bytes());
        offsets.push(offset);
        offset = (offset + t.data.len()).div_ceil(ALIGN) * ALIGN;
    }
    out.resize(out.len().div_ceil(ALIGN) * ALIGN, 0);
    let start = out.len();
    for (t, off) in tensors.iter().zip(offsets) {
        out.resize(start + off, 0);
        out.extend(&t.data);
    }
    out
}

/// A tensor of a [`StreamWriter`] file: its name, GGML dims (fastest first) and type.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
}

impl TensorSpec {
    /// A tensor of row-major `shape` (written with reversed GGML dims).
    pub fn new(name: impl Into<String>, shape: &[u64], ty: GgmlType) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dims: shape.iter().rev().copied().collect(),
            ty,
        }
    }

    /// Bytes of its data. Panics when the type has no block geometry or the row length is not a
    /// whole number of blocks (a bug of the caller, who chose the type).
    pub fn n_bytes(&self) -> u64 {
        let (block, bytes) = self
            .ty
            .block_geometry()
            .unwrap_or_else(|| panic!("no block geometry for {}", self.ty));
        let row = self.dims.first().copied().unwrap_or(1);
        assert!(
            row % block == 0,
            "{}: rows of {row} values are not whole {} blocks",
            self.name,
            self.ty
        );
        self.dims.iter().product::<u64>() / block * bytes
    }
}

/// Writes a GGUF v3 file whose header (metadata and tensor directory, with every offset) is
/// known up front, then takes the tensors' data in directory order, in pieces of any size.
pub struct StreamWriter {
    out: BufWriter<File>,
    sizes: Vec<u64>,
    /// Index of the tensor being written and how many of its bytes are written.
    current: usize,
    done: u64,
}

impl StreamWriter {
    /// Create (or truncate) `path` and write the header.
    pub fn create<K: AsRef<str>>(
        path: &Path,
        metadata: &[(K, MetaValue)],
        tensors: &[TensorSpec],
    ) -> std::io::Result<StreamWriter> {
        let mut head = Vec::new();
        put_metadata(&mut head, tensors.len(), metadata);
        let mut offset = 0u64;
        let mut sizes = Vec::with_capacity(tensors.len());
        for t in tensors {
            put_str(&mut head, &t.name);
            head.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                head.extend(d.to_le_bytes());
            }
            head.extend(ggml_type_id(t.ty).to_le_bytes());
            head.extend(offset.to_le_bytes());
            let n = t.n_bytes();
            sizes.push(n);
            offset = (offset + n).div_ceil(ALIGNMENT) * ALIGNMENT;
        }
        head.resize(
            (head.len() as u64).div_ceil(ALIGNMENT) as usize * ALIGNMENT as usize,
            0,
        );
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
        out.write_all(&head)?;
        let mut w = StreamWriter {
            out,
            sizes,
            current: 0,
            done: 0,
        };
        w.skip_empty()?;
        Ok(w)
    }

    fn skip_empty(&mut self) -> std::io::Result<()> {
        while self.current < self.sizes.len() && self.done == self.sizes[self.current] {
            let pad = self.done.div_ceil(ALIGNMENT) * ALIGNMENT - self.done;
            if self.current + 1 < self.sizes.len() {
                self.out.write_all(&vec![0u8; pad as usize])?;
            }
            self.current += 1;
            self.done = 0;
        }
        Ok(())
    }

    /// Append `bytes` to the data of the current tensor (moving on to the next tensor, after
    /// the alignment padding, once a tensor is complete). Bytes that would run past the current
    /// tensor are an error: pieces never straddle two tensors.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let left = match self.sizes.get(self.current) {
            Some(size) => size - self.done,
            None => 0,
        };
        if bytes.len() as u64 > left {
            return Err(std::io::Error::other(format!(
                "GGUF writer: {} bytes given where tensor #{} has {left} left",
                bytes.len(),
                self.current
            )));
        }
        self.out.write_all(bytes)?;
        self.done += bytes.len() as u64;
        self.skip_empty()
    }

    /// Index of the tensor the next bytes belong to (`tensors.len()` once all are written).
    pub fn current(&self) -> usize {
        self.current
    }

    /// Flush and close; an error when some tensor's data is missing.
    pub fn finish(mut self) -> std::io::Result<()> {
        if self.current < self.sizes.len() {
            return Err(std::io::Error::other(format!(
                "GGUF writer: tensor #{} of {} is incomplete",
                self.current,
                self.sizes.len()
            )));
        }
        self.out.flush()?;
        self.out
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()
    }
}
