//! `qgemv4`: one activation row times one, two or three MLX affine 4-bit weights (group size 64)
//! in one CUDA launch: `qgemv4.cu`, precompiled (see [`super::precompiled`]).

use std::sync::OnceLock;

use mlx_rs::error::Exception;
use mlx_rs::{Array, Dtype, Stream};

use super::precompiled::{OutputSpec, Registry};

/// Threads per block (4 warps: small blocks keep the k/v projections' few rows spread over
/// every SM) and output rows per warp, as qgemv4.cu is written.
const THREADS_PER_BLOCK: i32 = 128;
const ROWS_PER_WARP: i32 = 2;
pub const BITS: i32 = 4;
pub const GROUP_SIZE: i32 = 64;
/// The most matrices one launch multiplies (the q, k and v projections).
pub const MAX_MATRICES: usize = 3;

const PTX: &str = include_str!("qgemv4.ptx");

fn registry() -> Result<&'static Registry, Exception> {
    static REGISTRY: OnceLock<Result<Registry, String>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| Registry::new("qgemv4.ptx", PTX))
        .as_ref()
        .map_err(|e| Exception::custom(e.clone()))
}

/// Whether MLX loads the GEMV from its PTX cache (cheap launches): `vlmbench kernels` reports it.
pub fn launches_are_cheap() -> Result<bool, Exception> {
    Ok(registry()?.launches_are_cheap())
}

/// One quantized weight of a [`qgemv4_many`] launch: `w` `[N, K/8]`, `scales`/`biases` `[N, K/64]`.
#[derive(Clone, Copy)]
pub struct Weight<'a> {
    pub w: &'a Array,
    pub scales: &'a Array,
    pub biases: &'a Array,
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
    let weight = Weight { w, scales, biases };
    Ok(qgemv4_many(x, &[weight], stream)?.remove(0))
}

/// `x @ W_m^T` for up to [`MAX_MATRICES`] weights sharing `x`, in one launch (each weight
/// checked with [`supports`]); one result per weight, in order.
pub fn qgemv4_many(
    x: &Array,
    weights: &[Weight],
    stream: &Stream,
) -> Result<Vec<Array>, Exception> {
    assert!(
        (1..=MAX_MATRICES).contains(&weights.len()),
        "qgemv4_many takes 1 to {MAX_MATRICES} weights"
    );
    let kernel = registry()?.get(&weights.len().to_string(), x.dtype())?;
    let k = *x.shape().last().expect("supports() checked the shape");
    let mut inputs = vec![x];
    let mut outputs = Vec::new();
    let mut scalars = vec![k];
    let mut warps = 0;
    for weight in weights {
        inputs.extend([weight.w, weight.scales, weight.biases]);
        let n = weight.w.shape()[0];
        let mut shape = x.shape().to_vec();
        *shape.last_mut().expect("x has a last axis") = n;
        outputs.push(OutputSpec {
            shape,
            dtype: x.dtype(),
        });
        scalars.push(n);
        warps += (n + ROWS_PER_WARP - 1) / ROWS_PER_WARP;
    }
    let warps_per_block = THREADS_PER_BLOCK / 32;
    let grid = (warps + warps_per_block - 1) / warps_per_block * THREADS_PER_BLOCK;
    kernel.launch(
        &inputs,
        &outputs,
        &scalars,
        (grid, THREADS_PER_BLOCK),
        stream,
        || {
            let dims: Vec<String> = weights
                .iter()
                .map(|w| format!("[{}, {k}]", w.w.shape()[0]))
                .collect();
            format!(
                "4-bit GEMV of a {:?} [{k}] row by {}",
                x.dtype(),
                dims.join(" + ")
            )
        },
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_ptx_was_built_from_the_current_source_with_every_matrix_count() {
        super::super::precompiled::tests::check_ptx_file(
            PTX,
            &[include_str!("qgemv4.cu"), include_str!("dtypes.cuh")],
            &["1", "2", "3"],
        );
    }
}
