//! Model definitions for vlmbench, written against mlx-rs: the MLX runtime, compute dtypes,
//! checkpoints, and one module per architecture.

pub mod dtype;
pub mod runtime;
pub mod selftest;

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

// Tiny random-weight Gemma 4 checkpoints (tests, offline default model).
pub mod tiny_checkpoint;
