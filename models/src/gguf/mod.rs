//! GGUF (llama.cpp's model file format, version 2 and 3): the header, the metadata key/values, the
//! tensor directory, and exact dequantization of the GGML block formats.
//!
//! Layout of a file: magic `GGUF`, version, tensor count, metadata count, the metadata, the tensor
//! infos (name, dims with the fastest-varying first, GGML type, offset), padding to
//! `general.alignment` (default 32), then the tensor data, each tensor at `data_start + offset`.
//! All integers are little-endian.

pub mod affine;
mod dequant;
mod error;
pub mod export;
pub mod quantize;
mod reader;
pub mod tiny_gemma3;
mod types;
mod value;
pub mod writer;

#[cfg(test)]
mod tests;

pub use dequant::{dequantize, f16_to_f32};
pub use error::GgufError;
pub use reader::{GgufFile, TensorInfo};
pub use types::GgmlType;
pub use value::MetaValue;
