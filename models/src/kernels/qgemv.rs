//! `qgemv4`: one activation row times an MLX affine 4-bit weight (group size 64), on CUDA.
//! The kernel body is `qgemv4.cu`; this file builds it once and applies it.

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use mlx_rs::error::Exception;
use mlx_rs::{Array, Dtype, Stream};

/// Threads per block (4 warps: small blocks keep the k/v projections' few rows spread over
/// every SM) and output rows per warp, as qgemv4.cu is written.
const THREADS_PER_BLOCK: i32 = 128;
const ROWS_PER_WARP: i32 = 2;
const ROWS_PER_BLOCK: i32 = THREADS_PER_BLOCK / 32 * ROWS_PER_WARP;
pub const BITS: i32 = 4;
pub const GROUP_SIZE: i32 = 64;

/// MLX's PTX cache (`MLX_PTX_CACHE_DIR`, by default under /tmp) is keyed by kernel name, not
/// source: bump the version whenever qgemv4.cu or its header changes.
const KERNEL_NAME: &str = "vlmbench_qgemv4_v4";
const SOURCE: &str = include_str!("qgemv4.cu");
const HEADER: &str = include_str!("qgemv4_header.cuh");

/// The compiled-on-demand kernel object (MLX compiles one module per set of template values
/// at first use and keeps it; `MLX_PTX_CACHE_DIR` keeps the PTX across processes).
struct Kernel(mlx_sys::mlx_fast_cuda_kernel);
// SAFETY: the handle wraps an immutable std::function that MLX calls from any thread.
unsafe impl Send for Kernel {}
unsafe impl Sync for Kernel {}

fn kernel() -> &'static Kernel {
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let cstr = |s: &str| CString::new(s).expect("kernel strings have no NUL");
        let (name, source, header) = (cstr(KERNEL_NAME), cstr(SOURCE), cstr(HEADER));
        let names = |list: &[&str]| {
            let owned: Vec<CString> = list.iter().map(|s| cstr(s)).collect();
            let ptrs: Vec<*const c_char> = owned.iter().map(|s| s.as_ptr()).collect();
            // SAFETY: the strings outlive the call; mlx-c copies them.
            unsafe {
                mlx_sys::mlx_vector_string_new_data(ptrs.as_ptr() as *mut *const c_char, ptrs.len())
            }
        };
        let inputs = names(&["x", "w", "scales", "biases"]);
        let outputs = names(&["y"]);
        // SAFETY: plain constructor over copied arguments; the vectors are freed right after.
        let raw = unsafe {
            let k = mlx_sys::mlx_fast_cuda_kernel_new(
                name.as_ptr(),
                inputs,
                outputs,
                source.as_ptr(),
                header.as_ptr(),
                true,
                0,
            );
            mlx_sys::mlx_vector_string_free(inputs);
            mlx_sys::mlx_vector_string_free(outputs);
            k
        };
        Kernel(raw)
    })
}

/// Whether [`qgemv4`] computes `x @ W^T` for these operands: one row of `K` activations in a
/// floating dtype shared with the scales, a 4-bit weight with groups of 64, `K % 64 == 0`.
pub fn supports(x: &Array, w: &Array, scales: &Array, bits: i32, group_size: i32) -> bool {
    let k = *x.shape().last().unwrap_or(&0);
    bits == BITS
        && group_size == GROUP_SIZE
        && k > 0
        && k % GROUP_SIZE == 0
        && x.size() as i32 == k
        && w.ndim() == 2
        && w.shape()[1] * 8 == k
        && w.dtype() == Dtype::Uint32
        && matches!(x.dtype(), Dtype::Bfloat16 | Dtype::Float16 | Dtype::Float32)
        && scales.dtype() == x.dtype()
}

/// `x @ W^T` for a weight `w` `[N, K/8]` with `scales`/`biases` `[N, K/64]`; `x` has `K`
/// elements in any leading shape (e.g. `[1, 1, K]`); the result has shape `[.., N]`.
/// Check [`supports`] first. Runs on `stream`, which must be a CUDA GPU stream.
pub fn qgemv4(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    stream: &Stream,
) -> Result<Array, Exception> {
    let k = *x.shape().last().expect("supports() checked the shape");
    let n = w.shape()[0];
    let mut out_shape: Vec<i32> = x.shape().to_vec();
    *out_shape.last_mut().unwrap() = n;
    let dtype = x.dtype();
    // SAFETY: every handle created here is freed here; `res` is owned by the returned Array.
    unsafe {
        let config = mlx_sys::mlx_fast_cuda_kernel_config_new();
        let guard = ConfigGuard(config);
        mlx_sys::mlx_fast_cuda_kernel_config_add_output_arg(
            config,
            out_shape.as_ptr(),
            out_shape.len(),
            dtype.into(),
        );
        mlx_sys::mlx_fast_cuda_kernel_config_set_grid(
            config,
            (n + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK * THREADS_PER_BLOCK,
            1,
            1,
        );
        mlx_sys::mlx_fast_cuda_kernel_config_set_thread_group(config, THREADS_PER_BLOCK, 1, 1);
        let t = CString::new("T").unwrap();
        mlx_sys::mlx_fast_cuda_kernel_config_add_template_arg_dtype(
            config,
            t.as_ptr(),
            dtype.into(),
        );
        let k_name = CString::new("K").unwrap();
        mlx_sys::mlx_fast_cuda_kernel_config_add_template_arg_int(config, k_name.as_ptr(), k);
        let handles = [x.as_ptr(), w.as_ptr(), scales.as_ptr(), biases.as_ptr()];
        let inputs = mlx_sys::mlx_vector_array_new_data(handles.as_ptr(), handles.len());
        let mut outputs = mlx_sys::mlx_vector_array_new();
        let status = mlx_sys::mlx_fast_cuda_kernel_apply(
            &mut outputs,
            kernel().0,
            inputs,
            config,
            stream.as_ptr(),
        );
        mlx_sys::mlx_vector_array_free(inputs);
        drop(guard);
        if status != 0 {
            mlx_sys::mlx_vector_array_free(outputs);
            return Err(Exception::custom(format!(
                "vlmbench's 4-bit GEMV kernel could not be applied to a {dtype:?} [{k}] x [{n}, {k}] product \
                 (MLX's message is above; VLMBENCH_KERNELS=mlx selects MLX's stock kernel)"
            )));
        }
        let mut res = mlx_sys::mlx_array_new();
        mlx_sys::mlx_vector_array_get(&mut res, outputs, 0);
        mlx_sys::mlx_vector_array_free(outputs);
        Ok(Array::from_ptr(res))
    }
}

struct ConfigGuard(mlx_sys::mlx_fast_cuda_kernel_config);
impl Drop for ConfigGuard {
    fn drop(&mut self) {
        // SAFETY: created by mlx_fast_cuda_kernel_config_new, freed once.
        unsafe { mlx_sys::mlx_fast_cuda_kernel_config_free(self.0) }
    }
}

/// Whether `stream` runs on a GPU.
pub fn stream_is_gpu(stream: &Stream) -> bool {
    // SAFETY: out-parameters over handles freed here.
    unsafe {
        let mut device = mlx_sys::mlx_device_new();
        let mut kind: mlx_sys::mlx_device_type = 0;
        let ok = mlx_sys::mlx_stream_get_device(&mut device, stream.as_ptr()) == 0
            && mlx_sys::mlx_device_get_type(&mut kind, device) == 0;
        mlx_sys::mlx_device_free(device);
        ok && kind == mlx_sys::mlx_device_type__MLX_GPU
    }
}
