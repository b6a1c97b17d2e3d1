//! Raw bindings to mlx-c 0.7.0, generated at build time against MLX 0.32.2 (see `build.rs`).
#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
