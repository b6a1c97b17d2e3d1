//! Model definitions for vlmbench, written against mlx-rs: the MLX runtime, compute dtypes,
//! checkpoints, and one module per architecture.

pub mod dtype;
// Resolving --model to a checkpoint directory: a local path or a Hugging Face repo id.
pub mod hub;
pub mod runtime;
pub mod selftest;

// Checkpoints and the building blocks every architecture shares.
pub mod attention;
pub mod cache;
pub mod checkpoint;
pub mod convert;
// MLX's distributed layer (ring, MPI, NCCL) for multi-process runs.
pub mod distributed;
pub mod error;
pub mod gguf;
// Custom CUDA kernels (MLX's custom kernel API) for the decode hot path.
pub mod kernels;
pub mod nn;
// Images: files to RGB pixels, and Pillow's bicubic resize.
pub mod image_io;
pub mod jpeg;
pub mod pil_resize;
pub mod quantized;
// One rank's slice of a weight, read straight from the checkpoint (tensor parallelism).
pub mod sharding;
// A checkpoint's weights under one module path, as modules load them.
pub mod weights;

// Architectures.
pub mod gemma3;
pub mod gemma4;
pub mod model;
pub mod moondream2;

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
