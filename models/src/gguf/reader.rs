//! Parsing a GGUF file's header (metadata and tensor directory) and reading tensor data.
//!
//! The header is read through a bounds-checked cursor: every count and length is checked against
//! the bytes left in the file before anything is allocated, so a corrupt or truncated file gives
//! one error line instead of a huge allocation or a panic.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::dequant::dequantize;
use super::error::GgufError;
use super::types::GgmlType;
use super::value::MetaValue;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Nesting limit for array values (GGUF writers produce depth 1; deeper is suspicious).
const MAX_ARRAY_DEPTH: usize = 4;

/// One entry of the tensor directory.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGML order: `dims[0]` varies fastest (a Linear weight is `[in, out]`).
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// The row-major (numpy / MLX) shape: the GGML dims reversed (`[out, in]` for a Linear).
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }

    /// Bytes of data, or `None` when the type's block size is unknown.
    pub fn n_bytes(&self) -> Option<u64> {
        let (block, bytes) = self.ggml_type.block_geometry()?;
        Some(self.n_elements() / block * bytes)
    }
}

/// A GGUF file with its header parsed. Tensor data is read on demand.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset of the data section.
    pub data_start: u64,
    pub file_len: u64,
}

/// A reader that knows the file length and its position, for bounds checks before allocating.
struct Cursor<R> {
    inner: R,
    pos: u64,
    len: u64,
    path: PathBuf,
}

impl<R: Read> Cursor<R> {
    fn io(&self, source: std::io::Error) -> GgufError {
        GgufError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn need(&self, n: u64, what: &str) -> Result<(), GgufError> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(GgufError::Truncated {
                path: self.path.clone(),
                what: what.to_string(),
                needed: self.pos.saturating_add(n),
                len: self.len,
            }),
        }
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        self.need(N as u64, what)?;
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b).map_err(|e| self.io(e))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let n = self.u64(what)?;
        self.need(n, what)?;
        let mut b = vec![0u8; n as usize];
        self.inner.read_exact(&mut b).map_err(|e| self.io(e))?;
        self.pos += n;
        String::from_utf8(b).map_err(|_| GgufError::Format {
            path: self.path.clone(),
            reason: format!("{what} is not valid UTF-8"),
        })
    }

    /// A value of GGUF type `ty`; `key` names it in errors.
    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<MetaValue, GgufError> {
        let what = format!("metadata `{key}`");
        Ok(match ty {
            0 => MetaValue::U8(self.bytes::<1>(&what)?[0]),
            1 => MetaValue::I8(self.bytes::<1>(&what)?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.bytes(&what)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.bytes(&what)?)),
            4 => MetaValue::U32(u32::from_le_bytes(self.bytes(&what)?)),
            5 => MetaValue::I32(i32::from_le_bytes(self.bytes(&what)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.bytes(&what)?)),
            7 => match self.bytes::<1>(&what)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => {
                    return Err(GgufError::Format {
                        path: self.path.clone(),
                        reason: format!("{what}: bool byte {b} is neither 0 nor 1"),
                    })
                }
            },
            8 => MetaValue::String(self.string(&what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::Format {
                        path: self.path.clone(),
                        reason: format!("{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}"),
                    });
                }
                let elem = self.u32(&what)?;
                let n = self.u64(&what)?;
                // Every element takes at least one byte: a count beyond the bytes left is corrupt.
                // The reservation is capped too (a value is larger than a byte).
                self.need(n, &what)?;
                let mut v = Vec::with_capacity(n.min(1 << 16) as usize);
                for _ in 0..n {
                    v.push(self.value(elem, key, depth + 1)?);
                }
                MetaValue::Array(v)
            }
            10 => MetaValue::U64(u64::from_le_bytes(self.bytes(&what)?)),
            11 => MetaValue::I64(i64::from_le_bytes(self.bytes(&what)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.bytes(&what)?)),
            other => {
                return Err(GgufError::Format {
                    path: self.path.clone(),
                    reason: format!("{what}: unknown value type {other}"),
                })
            }
        })
    }
}

impl GgufFile {
    /// Parse the header of the GGUF file at `path` and validate the tensor directory (sizes,
    /// alignment, that every tensor lies inside the file, no duplicate names).
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let f = File::open(&path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        Self::parse(BufReader::with_capacity(1 << 20, f), len, path)
    }

    /// Parse a header from any reader positioned at the file's start; `len` is the file length.
    pub fn parse<R: Read>(reader: R, len: u64, path: PathBuf) -> Result<GgufFile, GgufError> {
        let mut c = Cursor {
            inner: reader,
            pos: 0,
            len,
            path: path.clone(),
        };
        let format = |reason: String| GgufError::Format {
            path: path.clone(),
            reason,
        };
        let magic: [u8; 4] = c.bytes("the magic number")?;
        if &magic != MAGIC {
            return Err(format(format!("magic is {magic:?}, not \"GGUF\"")));
        }
        let version = c.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(format(format!(
                "version {version} is not supported (2 or 3)"
            )));
        }
        let n_tensors = c.u64("the tensor count")?;
        let n_kv = c.u64("the metadata count")?;
        // A tensor info takes at least 8+4+8+4+8 bytes, a key/value at least 8+4+1.
        c.need(n_tensors.saturating_mul(32), "the tensor directory")?;
        c.need(n_kv.saturating_mul(13), "the metadata")?;

        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key #{i}"))?;
            let ty = c.u32(&format!("metadata `{key}` type"))?;
            let v = c.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), v).is_some() {
                return Err(format(format!("metadata key `{key}` appears twice")));
            }
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_i64() {
                Some(a) if a > 0 && (a as u64).is_power_of_two() => a as u64,
                _ => {
                    return Err(GgufError::Metadata {
                        path,
                        key: "general.alignment".into(),
                        reason: format!("{} is not a positive power of two", v.summary()),
                    })
                }
            },
        };

        let mut tensors = Vec::with_capacity(n_tensors.min(1 << 16) as usize);
        let mut seen = std::collections::HashSet::new();
        for i in 0..n_tensors {
            let name = c.string(&format!("tensor #{i} name"))?;
            let what = format!("tensor `{name}`");
            let n_dims = c.u32(&what)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(format(format!(
                    "{what}: {n_dims} dimensions (1..={MAX_DIMS} allowed)"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64(&what)?);
            }
            let ggml_type = GgmlType::from_id(c.u32(&what)?);
            let offset = c.u64(&what)?;
            if !seen.insert(name.clone()) {
                return Err(format(format!("tensor `{name}` appears twice")));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let data_start = c.pos.div_ceil(alignment) * alignment;
        let file = GgufFile {
            path,
            version,
            metadata,
            tensors,
            alignment,
            data_start,
            file_len: len,
        };
        for t in &file.tensors {
            file.check_tensor(t)?;
        }
        Ok(file)
    }

    fn check_tensor(&self, t: &TensorInfo) -> Result<(), GgufError> {
        let err = |reason: String| GgufError::Tensor {
            path: self.path.clone(),
            tensor: t.name.clone(),
            reason,
        };
        if t.dims.contains(&0) {
            return Err(err(format!("has an empty dimension {:?}", t.dims)));
        }
        let n = t
            .dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| err(format!("dims {:?} overflow", t.dims)))?;
        if t.offset % self.alignment != 0 {
            return Err(err(format!(
                "data offset {} is not a multiple of the alignment {}",
                t.offset, self.alignment
            )));
        }
        // Unknown types cannot be sized; they are reported when read (a converter may skip them).
        let Some((block, bytes)) = t.ggml_type.block_geometry() else {
            return Ok(());
        };
        if t.dims[0] % block != 0 {
            return Err(err(format!(
                "row length {} is not a multiple of the {} block size {block}",
                t.dims[0], t.ggml_type
            )));
        }
        let end = (n / block)
            .checked_mul(bytes)
            .and_then(|b| b.checked_add(self.data_start + t.offset));
        match end {
            Some(end) if end <= self.file_len => Ok(()),
            _ => Err(GgufError::Truncated {
                path: self.path.clone(),
                what: format!("tensor `{}` ({} {:?})", t.name, t.ggml_type, t.dims),
                needed: end.unwrap_or(u64::MAX),
                len: self.file_len,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A metadata value that must be present.
    pub fn require(&self, key: &str) -> Result<&MetaValue, GgufError> {
        self.metadata.get(key).ok_or_else(|| GgufError::Metadata {
            path: self.path.clone(),
            key: key.into(),
            reason: "missing".into(),
        })
    }

    /// An integer metadata value; `None` when absent, an error when present with another type.
    pub fn get_int(&self, key: &str) -> Result<Option<i64>, GgufError> {
        self.typed(key, "an integer", MetaValue::as_i64)
    }

    /// A numeric metadata value; `None` when absent.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.typed(key, "a number", MetaValue::as_f64)
    }

    /// A string metadata value; `None` when absent.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.typed(key, "a string", MetaValue::as_str)
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        f: impl Fn(&'a MetaValue) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(v) => f(v).map(Some).ok_or_else(|| GgufError::Metadata {
                path: self.path.clone(),
                key: key.into(),
                reason: format!(
                    "expected {expected}, found {} {}",
                    v.type_name(),
                    v.summary()
                ),
            }),
        }
    }

    /// The raw bytes of a tensor's data.
    pub fn read_raw(&self, t: &TensorInfo) -> Result<Vec<u8>, GgufError> {
        let n = t.n_bytes().ok_or_else(|| GgufError::UnsupportedType {
            path: self.path.clone(),
            tensor: t.name.clone(),
            ggml_type: t.ggml_type.name(),
            supported: GgmlType::DEQUANTIZABLE,
        })?;
        let io = |source| GgufError::Io {
            path: self.path.clone(),
            source,
        };
        let mut f = File::open(&self.path).map_err(io)?;
        f.seek(SeekFrom::Start(self.data_start + t.offset))
            .map_err(io)?;
        let mut buf = vec![0u8; n as usize];
        f.read_exact(&mut buf).map_err(io)?;
        Ok(buf)
    }

    /// A tensor dequantized to f32, in row-major order of [`TensorInfo::shape`].
    pub fn dequantize(&self, t: &TensorInfo) -> Result<Vec<f32>, GgufError> {
        if !t.ggml_type.can_dequantize() {
            return Err(GgufError::UnsupportedType {
                path: self.path.clone(),
                tensor: t.name.clone(),
                ggml_type: t.ggml_type.name(),
                supported: GgmlType::DEQUANTIZABLE,
            });
        }
        let raw = self.read_raw(t)?;
        dequantize(t.ggml_type, &raw, t.n_elements() as usize).map_err(|reason| GgufError::Tensor {
            path: self.path.clone(),
            tensor: t.name.clone(),
            reason,
        })
    }
}
