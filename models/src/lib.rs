//! Model definitions for vlmbench, written against mlx-rs: the MLX runtime, compute dtypes,
//! checkpoints, and one module per architecture.

pub mod dtype;
pub mod runtime;
pub mod selftest;

// Checkpoints and the building blocks every architecture shares.
pub mod attention;
pub mod cache;
pub mod checkpoint;
pub mod convert;
pub mod error;
pub mod gguf;
pub mod nn;
pub mod quantized;

// Architectures.
pub mod gemma3;
pub mod gemma4;
pub mod model;

// Text side: tokenizer, streaming detokenizer, chat template, tiny tokenizer,
// stop tokens and sampling defaults, sampler.
pub mod chat_messages;
pub mod chat_template;
pub mod detokenizer;
pub mod generation_config;
pub mod sampling;
pub mod tiny_tokenizer;
pub mod tokenizer;
pub mod tokenizer_config;
