//! Model definitions for vlmbench, written against mlx-rs: the MLX runtime, compute dtypes,
//! checkpoints, and one module per architecture.

pub mod dtype;
pub mod runtime;
pub mod selftest;
