//! Error types of the model crate. Every variant names the file, tensor or field it is about.

use std::path::PathBuf;

/// Result alias used across the crate's model code.
pub type Result<T> = std::result::Result<T, ModelError>;

/// Errors from checkpoint loading, configuration parsing and model evaluation.
/// A JSON side file of a checkpoint that cannot be used: unreadable, not JSON, or a field with
/// the wrong form (`tokenizer_config.json`, `generation_config.json`).
#[derive(Debug, thiserror::Error)]
pub enum JsonFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: field `{field}` {problem}")]
    Field {
        path: PathBuf,
        field: String,
        problem: String,
    },
}

impl JsonFileError {
    /// The JSON in `path`.
    pub fn read(path: &std::path::Path) -> std::result::Result<serde_json::Value, JsonFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| JsonFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| JsonFileError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Field `field` of `path` is not as it must be.
    pub fn field(path: &std::path::Path, field: &str, problem: &str) -> JsonFileError {
        JsonFileError::Field {
            path: path.to_path_buf(),
            field: field.to_string(),
            problem: problem.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON file is not valid JSON (or not the expected shape of JSON).
    #[error("{path}: invalid JSON: {reason}")]
    Json { path: PathBuf, reason: String },

    /// The checkpoint directory has no weights.
    #[error("{dir}: no model.safetensors, model.safetensors.index.json or *.safetensors found")]
    NoWeights { dir: PathBuf },

    /// A safetensors file is corrupt or truncated.
    #[error("{path}: corrupt safetensors file: {reason}")]
    CorruptSafetensors { path: PathBuf, reason: String },

    /// The shard index refers to something that is not there.
    #[error("{path}: {reason}")]
    ShardIndex { path: PathBuf, reason: String },

    /// The same tensor name appears in two files.
    #[error("tensor `{name}` appears in both {first} and {second}")]
    DuplicateTensor {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },

    /// A tensor the model needs is not in the checkpoint.
    #[error("{dir}: missing tensor `{name}`")]
    MissingTensor { dir: PathBuf, name: String },

    /// A tensor has the wrong shape.
    #[error("{file}: tensor `{name}`: expected shape {expected:?}, found {found:?}")]
    ShapeMismatch {
        file: PathBuf,
        name: String,
        expected: Vec<i32>,
        found: Vec<i32>,
    },

    /// A tensor has a dtype the model cannot use there.
    #[error("{file}: tensor `{name}`: expected {expected}, found dtype {found}")]
    DtypeMismatch {
        file: PathBuf,
        name: String,
        expected: String,
        found: String,
    },

    /// A packed quantized weight does not match the declared bits / group size.
    #[error(
        "{file}: tensor `{name}`: packed shape {found:?} is inconsistent with bits={bits}, \
         group_size={group_size} for a [{out_dim}, {in_dim}] weight (expected {expected:?})"
    )]
    QuantizedShape {
        file: PathBuf,
        name: String,
        bits: i32,
        group_size: i32,
        out_dim: i32,
        in_dim: i32,
        expected: Vec<i32>,
        found: Vec<i32>,
    },

    /// `model_type` is not one this crate implements.
    #[error("{path}: unsupported model_type `{found}` (supported: {supported})")]
    UnsupportedModelType {
        path: PathBuf,
        found: String,
        supported: String,
    },

    /// A config field is missing, malformed, or has a value this implementation does not support.
    #[error("{path}: field `{field}`: {reason}")]
    Config {
        path: PathBuf,
        field: String,
        reason: String,
    },

    /// Bad arguments to a model call (shapes, lengths, cache).
    #[error("invalid input: {0}")]
    Input(String),

    /// Joining the MLX distributed group or a collective failed.
    #[error(transparent)]
    Distributed(#[from] crate::distributed::DistributedError),

    /// An error raised by MLX.
    #[error("mlx: {0}")]
    Mlx(#[from] mlx_rs::error::Exception),
}

/// Every `(field, value)` must be positive; the first that is not becomes a config error naming
/// `{prefix}{field}` in `path`. Shared by the architectures' config validation.
pub(crate) fn require_positive(
    path: &std::path::Path,
    prefix: &str,
    fields: &[(&str, i32)],
) -> Result<()> {
    match fields.iter().find(|(_, v)| *v <= 0) {
        Some((name, v)) => Err(ModelError::config(
            path,
            format!("{prefix}{name}"),
            format!("must be positive, found {v}"),
        )),
        None => Ok(()),
    }
}

/// The compute dtypes the models run in: float32, bfloat16, float16.
pub(crate) fn check_compute_dtype(dtype: mlx_rs::Dtype) -> Result<()> {
    use mlx_rs::Dtype;
    if matches!(dtype, Dtype::Float32 | Dtype::Bfloat16 | Dtype::Float16) {
        return Ok(());
    }
    Err(ModelError::Input(format!(
        "compute dtype {dtype:?} is not supported (float32, bfloat16, float16)"
    )))
}

impl ModelError {
    pub(crate) fn config(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ModelError::Config {
            path: path.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}
