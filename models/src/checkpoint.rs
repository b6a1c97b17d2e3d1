//! Reading an MLX checkpoint directory: `config.json`, the safetensors weights (one file or shards
//! listed by `model.safetensors.index.json`) and the `quantization` block of the config.
//!
//! Tensors are loaded lazily by MLX (nothing is read until a tensor is evaluated); every file's
//! header is validated first so that a truncated or corrupt file is reported by name.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use mlx_rs::{Array, Dtype};
use serde_json::Value;

use crate::error::{ModelError, Result};

/// Quantization parameters of one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantParams {
    pub group_size: i32,
    pub bits: i32,
}

/// A per-module entry of the `quantization` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleQuant {
    /// `"path": {"group_size": .., "bits": ..}`
    Quantized(QuantParams),
    /// `"path": false`: the module is left unquantized.
    Disabled,
}

/// The `quantization` block of `config.json` (mlx-community layout).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizationConfig {
    /// Top-level parameters, used by every quantized module without its own entry.
    pub default: QuantParams,
    /// Only `"affine"` is supported.
    pub mode: String,
    /// Per-module entries keyed by module path (as written in the config).
    pub overrides: BTreeMap<String, ModuleQuant>,
}

const SUPPORTED_BITS: [i32; 6] = [2, 3, 4, 5, 6, 8];
const SUPPORTED_GROUP_SIZES: [i32; 3] = [32, 64, 128];

impl QuantizationConfig {
    /// Parse the block. `field` names it in errors (`quantization` or `quantization_config`).
    pub fn from_json(v: &Value, path: &Path, field: &str) -> Result<Self> {
        let obj = v
            .as_object()
            .ok_or_else(|| ModelError::config(path, field, "expected an object"))?;
        if let Some(m) = obj.get("quant_method") {
            return Err(ModelError::config(
                path,
                format!("{field}.quant_method"),
                format!("{m} is not supported (only MLX affine quantization is)"),
            ));
        }
        let mode = match obj.get("mode") {
            None | Some(Value::Null) => "affine".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(ModelError::config(
                    path,
                    format!("{field}.mode"),
                    format!("expected a string, found {other}"),
                ))
            }
        };
        check_mode(&mode, path, &format!("{field}.mode"))?;
        let default = QuantParams {
            group_size: int_field(obj, "group_size", path, field)?.unwrap_or(64),
            bits: int_field(obj, "bits", path, field)?.unwrap_or(4),
        };
        check_params(default, path, field)?;
        let mut overrides = BTreeMap::new();
        for (k, v) in obj {
            match v {
                Value::Object(m) => {
                    let sub = format!("{field}.{k}");
                    if let Some(mode) = m.get("mode") {
                        let mode = mode.as_str().unwrap_or("?");
                        check_mode(mode, path, &format!("{sub}.mode"))?;
                    }
                    // Missing keys take MLX's defaults for the mode (affine: 64, 4), as
                    // `to_quantized(**entry)` does in mlx-vlm, not the top-level values.
                    let p = QuantParams {
                        group_size: int_field(m, "group_size", path, &sub)?.unwrap_or(64),
                        bits: int_field(m, "bits", path, &sub)?.unwrap_or(4),
                    };
                    check_params(p, path, &sub)?;
                    overrides.insert(k.clone(), ModuleQuant::Quantized(p));
                }
                Value::Bool(false) => {
                    overrides.insert(k.clone(), ModuleQuant::Disabled);
                }
                _ => {}
            }
        }
        Ok(QuantizationConfig {
            default,
            mode,
            overrides,
        })
    }

    /// The per-module entry for `module_path`, also trying the path without its
    /// `language_model.` prefix (text-checkpoint keys omit the VLM wrapper), as mlx-vlm does.
    pub fn module_entry(&self, module_path: &str) -> Option<ModuleQuant> {
        if let Some(e) = self.overrides.get(module_path) {
            return Some(*e);
        }
        module_path
            .strip_prefix("language_model.")
            .and_then(|p| self.overrides.get(p))
            .copied()
    }
}

fn check_mode(mode: &str, path: &Path, field: &str) -> Result<()> {
    if mode != "affine" {
        return Err(ModelError::config(
            path,
            field,
            format!("quantization mode `{mode}` is not supported (only `affine`)"),
        ));
    }
    Ok(())
}

fn check_params(p: QuantParams, path: &Path, field: &str) -> Result<()> {
    if !SUPPORTED_BITS.contains(&p.bits) {
        return Err(ModelError::config(
            path,
            format!("{field}.bits"),
            format!(
                "{} is not supported (expected one of {SUPPORTED_BITS:?})",
                p.bits
            ),
        ));
    }
    if !SUPPORTED_GROUP_SIZES.contains(&p.group_size) {
        return Err(ModelError::config(
            path,
            format!("{field}.group_size"),
            format!(
                "{} is not supported (expected one of {SUPPORTED_GROUP_SIZES:?})",
                p.group_size
            ),
        ));
    }
    Ok(())
}

fn int_field(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    path: &Path,
    field: &str,
) -> Result<Option<i32>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .and_then(|x| i32::try_from(x).ok())
            .map(Some)
            .ok_or_else(|| {
                ModelError::config(
                    path,
                    format!("{field}.{key}"),
                    format!("expected an integer, found {v}"),
                )
            }),
    }
}

/// A checkpoint directory opened for reading.
pub struct Checkpoint {
    dir: PathBuf,
    config_path: PathBuf,
    config: Value,
    quantization: Option<QuantizationConfig>,
    tensors: HashMap<String, Array>,
    tensor_file: HashMap<String, PathBuf>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("dir", &self.dir)
            .field("tensors", &self.tensors.len())
            .field("quantization", &self.quantization)
            .finish()
    }
}

impl Checkpoint {
    /// Open a local checkpoint directory: parse `config.json`, validate and (lazily) load every
    /// safetensors file. With `model.safetensors.index.json` the files it names are loaded and each
    /// tensor must be in the file the index says; otherwise every `*.safetensors` file of the
    /// directory is loaded (as mlx-vlm does).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let config_path = dir.join("config.json");
        let config = read_json(&config_path)?;
        if !config.is_object() {
            return Err(ModelError::Json {
                path: config_path,
                reason: "expected a JSON object".into(),
            });
        }
        let quantization = parse_quantization(&config, &config_path)?;

        let index_path = dir.join("model.safetensors.index.json");
        let mut tensors = HashMap::new();
        let mut tensor_file: HashMap<String, PathBuf> = HashMap::new();
        if index_path.exists() {
            let index = read_json(&index_path)?;
            let map = index
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| ModelError::ShardIndex {
                    path: index_path.clone(),
                    reason: "no `weight_map` object".into(),
                })?;
            let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (name, file) in map {
                let file = file.as_str().ok_or_else(|| ModelError::ShardIndex {
                    path: index_path.clone(),
                    reason: format!("weight_map[`{name}`] is not a file name"),
                })?;
                expected
                    .entry(file.to_string())
                    .or_default()
                    .push(name.clone());
            }
            for (file, names) in &expected {
                let path = dir.join(file);
                if !path.is_file() {
                    return Err(ModelError::ShardIndex {
                        path: index_path.clone(),
                        reason: format!(
                            "shard `{file}` (holding e.g. `{}`) does not exist",
                            names[0]
                        ),
                    });
                }
                let loaded = load_file(&path)?;
                for name in names {
                    if !loaded.contains_key(name) {
                        return Err(ModelError::ShardIndex {
                            path: index_path.clone(),
                            reason: format!("tensor `{name}` is listed in shard `{file}` but that file does not contain it"),
                        });
                    }
                }
                insert_all(&mut tensors, &mut tensor_file, loaded, &path)?;
            }
        } else {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|source| ModelError::Io {
                    path: dir.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors") && p.is_file())
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(ModelError::NoWeights { dir });
            }
            for path in files {
                let loaded = load_file(&path)?;
                insert_all(&mut tensors, &mut tensor_file, loaded, &path)?;
            }
        }
        Ok(Checkpoint {
            dir,
            config_path,
            config,
            quantization,
            tensors,
            tensor_file,
        })
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `config.json`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The parsed `config.json`.
    pub fn config_json(&self) -> &Value {
        &self.config
    }

    /// `config.json`'s `model_type`, if any.
    pub fn model_type(&self) -> Option<&str> {
        self.config.get("model_type").and_then(Value::as_str)
    }

    /// The `quantization` block (or `quantization_config` when only that is present).
    pub fn quantization(&self) -> Option<&QuantizationConfig> {
        self.quantization.as_ref()
    }

    /// Whether the checkpoint holds a tensor of this name.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// All tensor names (unordered).
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the checkpoint holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The file a tensor comes from (the directory if unknown).
    pub fn file_of(&self, name: &str) -> &Path {
        self.tensor_file
            .get(name)
            .map(PathBuf::as_path)
            .unwrap_or(&self.dir)
    }

    /// A tensor as stored (lazy).
    pub fn tensor(&self, name: &str) -> Result<&Array> {
        self.tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                dir: self.dir.clone(),
                name: name.to_string(),
            })
    }

    /// A tensor whose shape must be `expected`.
    pub fn tensor_with_shape(&self, name: &str, expected: &[i32]) -> Result<&Array> {
        let t = self.tensor(name)?;
        if t.shape() != expected {
            return Err(self.shape_error(name, expected, t.shape()));
        }
        Ok(t)
    }

    /// A floating tensor of shape `expected`, cast to `dtype`.
    pub fn float_tensor(&self, name: &str, expected: &[i32], dtype: Dtype) -> Result<Array> {
        let t = self.tensor_with_shape(name, expected)?;
        if !t.dtype().is_float() {
            return Err(ModelError::DtypeMismatch {
                file: self.file_of(name).to_path_buf(),
                name: name.to_string(),
                expected: "a floating-point dtype".into(),
                found: format!("{:?}", t.dtype()),
            });
        }
        Ok(cast(t, dtype)?)
    }

    pub(crate) fn shape_error(&self, name: &str, expected: &[i32], found: &[i32]) -> ModelError {
        ModelError::ShapeMismatch {
            file: self.file_of(name).to_path_buf(),
            name: name.to_string(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        }
    }

    /// How the module at `module_path` is quantized, resolved as mlx-vlm 0.7.10 does:
    /// a per-module entry of the `quantization` block wins (`false` = unquantized); otherwise the
    /// module is quantized with the top-level parameters iff `<module_path>.scales` exists.
    pub fn module_quantization(&self, module_path: &str) -> Result<Option<QuantParams>> {
        let scales = format!("{module_path}.scales");
        match &self.quantization {
            Some(q) => match q.module_entry(module_path) {
                Some(ModuleQuant::Quantized(p)) => Ok(Some(p)),
                Some(ModuleQuant::Disabled) => {
                    if self.contains(&scales) {
                        return Err(ModelError::config(
                            &self.config_path,
                            format!("quantization.{module_path}"),
                            format!("is `false` but the checkpoint has `{scales}`"),
                        ));
                    }
                    Ok(None)
                }
                None => Ok(self.contains(&scales).then_some(q.default)),
            },
            None => {
                if self.contains(&scales) {
                    return Err(ModelError::config(
                        &self.config_path,
                        "quantization",
                        format!("missing, but the checkpoint has quantized tensor `{scales}`"),
                    ));
                }
                Ok(None)
            }
        }
    }
}

/// Cast a floating array to `dtype` (no-op when it already has it).
pub(crate) fn cast(
    a: &Array,
    dtype: Dtype,
) -> std::result::Result<Array, mlx_rs::error::Exception> {
    if a.dtype() == dtype {
        Ok(a.clone())
    } else {
        a.as_dtype(dtype)
    }
}

fn parse_quantization(config: &Value, path: &Path) -> Result<Option<QuantizationConfig>> {
    if let Some(q) = config.get("quantization").filter(|v| !v.is_null()) {
        return QuantizationConfig::from_json(q, path, "quantization").map(Some);
    }
    if let Some(q) = config.get("quantization_config").filter(|v| !v.is_null()) {
        return QuantizationConfig::from_json(q, path, "quantization_config").map(Some);
    }
    if let Some(q) = config
        .get("text_config")
        .and_then(|t| t.get("quantization_config"))
        .filter(|v| !v.is_null())
    {
        return QuantizationConfig::from_json(q, path, "text_config.quantization_config").map(Some);
    }
    Ok(None)
}

fn insert_all(
    tensors: &mut HashMap<String, Array>,
    tensor_file: &mut HashMap<String, PathBuf>,
    loaded: HashMap<String, Array>,
    path: &Path,
) -> Result<()> {
    for (name, arr) in loaded {
        if let Some(prev) = tensor_file.get(&name) {
            return Err(ModelError::DuplicateTensor {
                name,
                first: prev.clone(),
                second: path.to_path_buf(),
            });
        }
        tensor_file.insert(name.clone(), path.to_path_buf());
        tensors.insert(name, arr);
    }
    Ok(())
}

pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ModelError::Json {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Validate the header of a safetensors file, then hand it to MLX's loader.
fn load_file(path: &Path) -> Result<HashMap<String, Array>> {
    validate_safetensors(path)?;
    Array::load_safetensors(path).map_err(|e| ModelError::CorruptSafetensors {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" => 8,
        _ => return None,
    })
}

/// Check the 8-byte length, the JSON header, every entry's dtype/shape/offsets, and that the
/// data section is exactly as long as the header says (a truncated download fails here).
pub fn validate_safetensors(path: &Path) -> Result<()> {
    let corrupt = |reason: String| ModelError::CorruptSafetensors {
        path: path.to_path_buf(),
        reason,
    };
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    if file_len < 8 {
        return Err(corrupt(format!(
            "file is {file_len} bytes, shorter than the 8-byte header length"
        )));
    }
    let mut len_buf = [0u8; 8];
    f.read_exact(&mut len_buf).map_err(io)?;
    let header_len = u64::from_le_bytes(len_buf);
    if header_len > file_len - 8 {
        return Err(corrupt(format!(
            "header length {header_len} exceeds the file size {file_len} (truncated?)"
        )));
    }
    if header_len > 100 * 1024 * 1024 {
        return Err(corrupt(format!(
            "header length {header_len} is implausibly large"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header).map_err(io)?;
    let header: Value = serde_json::from_slice(&header)
        .map_err(|e| corrupt(format!("header is not valid JSON: {e}")))?;
    let obj = header
        .as_object()
        .ok_or_else(|| corrupt("header is not a JSON object".into()))?;
    let data_len = file_len - 8 - header_len;
    let mut max_end = 0u64;
    for (name, entry) in obj {
        if name == "__metadata__" {
            continue;
        }
        let dtype = entry
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| corrupt(format!("tensor `{name}`: no dtype")))?;
        let size = dtype_size(dtype)
            .ok_or_else(|| corrupt(format!("tensor `{name}`: unsupported dtype {dtype}")))?;
        let shape: Vec<u64> = entry
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|s| s.iter().map(Value::as_u64).collect::<Option<Vec<_>>>())
            .ok_or_else(|| corrupt(format!("tensor `{name}`: bad shape")))?;
        let offs: Vec<u64> = entry
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|s| s.iter().map(Value::as_u64).collect::<Option<Vec<_>>>())
            .filter(|o| o.len() == 2)
            .ok_or_else(|| corrupt(format!("tensor `{name}`: bad data_offsets")))?;
        let numel = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let nbytes = numel.and_then(|n| n.checked_mul(size));
        if offs[1] < offs[0] || Some(offs[1] - offs[0]) != nbytes {
            return Err(corrupt(format!(
                "tensor `{name}`: data_offsets {offs:?} do not match dtype {dtype} and shape {shape:?}"
            )));
        }
        if offs[1] > data_len {
            return Err(corrupt(format!(
                "tensor `{name}`: data ends at byte {} of the data section but the file holds only {data_len} bytes (truncated?)",
                offs[1]
            )));
        }
        max_end = max_end.max(offs[1]);
    }
    if max_end != data_len {
        return Err(corrupt(format!(
            "data section is {data_len} bytes but the tensors cover {max_end} bytes"
        )));
    }
    Ok(())
}
