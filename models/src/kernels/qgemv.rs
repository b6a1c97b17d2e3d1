//! `qgemv4`: one activation row times an MLX affine 4-bit weight (group size 64) on CUDA:
//! `qgemv4.cu`, precompiled (see [`super::precompiled`]).

use std::sync::OnceLock;

use mlx_rs::error::Exception;
use mlx_rs::{Array, Dtype, Stream};

use super::precompiled::{OutputSpec, Registry};
use super::QuantizedOperands;

/// Threads per block (4 warps: small blocks keep the k/v projections' few rows spread over
/// every SM) and output rows per warp, as qgemv4.cu is written.
const THREADS_PER_BLOCK: i32 = 128;
const ROWS_PER_WARP: i32 = 2;
pub const BITS: i32 = 4;
pub const GROUP_SIZE: i32 = 64;

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

/// Whether [`qgemv4`] computes `x @ W^T` for these operands: one row of `K` activations in a
/// floating dtype shared with the scales, a 4-bit weight with groups of 64, `K % 64 == 0`.
pub fn supports(x: &Array, q: QuantizedOperands) -> bool {
    let QuantizedOperands {
        w,
        scales,
        bits,
        group_size,
        ..
    } = q;
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
pub fn qgemv4(x: &Array, q: QuantizedOperands, stream: &Stream) -> Result<Array, Exception> {
    let k = *x.shape().last().expect("supports() checked the shape");
    let n = q.w.shape()[0];
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("x has a last axis") = n;
    let output = OutputSpec {
        shape,
        dtype: x.dtype(),
    };
    let warps = (n + ROWS_PER_WARP - 1) / ROWS_PER_WARP;
    let warps_per_block = THREADS_PER_BLOCK / 32;
    let grid = (warps + warps_per_block - 1) / warps_per_block * THREADS_PER_BLOCK;
    let mut y = registry()?.get("qgemv4", x.dtype())?.launch(
        &[x, q.w, q.scales, q.biases],
        &[output],
        &[k, n],
        (grid, THREADS_PER_BLOCK),
        stream,
        || format!("4-bit GEMV of a {:?} [{k}] row by [{n}, {k}]", x.dtype()),
    )?;
    Ok(y.remove(0))
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
    fn the_committed_ptx_was_built_from_the_current_source_for_every_dtype() {
        super::super::precompiled::tests::check_ptx_file(
            PTX,
            &[include_str!("qgemv4.cu"), include_str!("dtypes.cuh")],
            &["qgemv4"],
        );
    }
}
