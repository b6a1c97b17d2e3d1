//! Errors of the GGUF → MLX converter. Each names the file, tensor or field at fault.

use std::path::PathBuf;

use crate::gguf::GgufError;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Gguf(#[from] GgufError),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The GGUF's `general.architecture` has no converter.
    #[error("{path}: general.architecture `{arch}` is not supported (supported: {supported})")]
    UnsupportedArchitecture {
        path: PathBuf,
        arch: String,
        supported: &'static str,
    },

    /// A tensor whose name the mapping does not know (converting it would drop weights silently).
    #[error("{path}: tensor `{tensor}` has no {arch} counterpart in the MLX checkpoint")]
    UnknownTensor {
        path: PathBuf,
        tensor: String,
        arch: &'static str,
    },

    /// A tensor the model needs is absent, or has the wrong shape.
    #[error("{path}: tensor `{tensor}`: {reason}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },

    /// The tokenizer files do not fit the GGUF's vocabulary.
    #[error("{path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },

    /// The output directory is not usable.
    #[error("{path}: {reason}")]
    Output { path: PathBuf, reason: String },

    #[error("invalid option: {0}")]
    Options(String),

    #[error("mlx: {0}")]
    Mlx(#[from] mlx_rs::error::Exception),

    #[error("{path}: cannot write safetensors: {reason}")]
    Save { path: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, ConvertError>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ConvertError {
    let path = path.into();
    move |source| ConvertError::Io { path, source }
}
