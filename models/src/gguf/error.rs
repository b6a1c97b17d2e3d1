//! Errors of the GGUF reader: each names the file and, where there is one, the tensor or key.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Not a GGUF file, an unsupported version, or a header that contradicts itself.
    #[error("{path}: not a valid GGUF file: {reason}")]
    Format { path: PathBuf, reason: String },

    /// The header ends, or a tensor's data runs, past the end of the file.
    #[error("{path}: truncated: {what} needs bytes up to {needed} but the file has {len}")]
    Truncated {
        path: PathBuf,
        what: String,
        needed: u64,
        len: u64,
    },

    /// A tensor's GGML type has no dequantizer here.
    #[error("{path}: tensor `{tensor}`: GGML type {ggml_type} is not supported (supported: {supported})")]
    UnsupportedType {
        path: PathBuf,
        tensor: String,
        ggml_type: String,
        supported: &'static str,
    },

    /// A tensor's shape does not fit its type (row length not a multiple of the block size, ...).
    #[error("{path}: tensor `{tensor}`: {reason}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },

    /// A metadata key is missing or has an unexpected type.
    #[error("{path}: metadata `{key}`: {reason}")]
    Metadata {
        path: PathBuf,
        key: String,
        reason: String,
    },
}
