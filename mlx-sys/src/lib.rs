//! Raw bindings to mlx-c 0.7.0, generated at build time against MLX 0.32.2 (see `build.rs`).
#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// vlmbench's shim over MLX's `fast::precompiled_cuda_kernel` (`native/precompiled_kernel.cpp`).
pub mod precompiled {
    use super::{mlx_array, mlx_dtype, mlx_stream};
    use std::ffi::c_char;

    /// A registered PTX kernel (opaque).
    #[repr(C)]
    pub struct vlmbench_kernel {
        _private: [u8; 0],
    }

    extern "C" {
        /// Registers the PTX entry `name` of module `ptx`; NULL (message in `err`) on failure.
        pub fn vlmbench_kernel_new(
            name: *const c_char,
            ptx: *const c_char,
            ptx_len: usize,
            err: *mut c_char,
            err_len: usize,
        ) -> *mut vlmbench_kernel;
        /// Whether MLX loads the kernel from its PTX cache (cheap launches).
        pub fn vlmbench_kernel_is_cached(kernel: *const vlmbench_kernel) -> bool;
        /// Launches `kernel`; writes `n_outputs` arrays to `outputs`; 0 on success.
        pub fn vlmbench_kernel_apply(
            kernel: *const vlmbench_kernel,
            inputs: *const mlx_array,
            n_inputs: usize,
            shapes: *const i32,
            ndims: *const usize,
            dtypes: *const mlx_dtype,
            n_outputs: usize,
            scalars: *const i32,
            n_scalars: usize,
            grid_x: i32,
            block_x: i32,
            stream: mlx_stream,
            outputs: *mut mlx_array,
            err: *mut c_char,
            err_len: usize,
        ) -> i32;
    }
}
