//! Gemma's sandwich norms around the residual adds in one CUDA launch each (`residual_norm.cu`,
//! precompiled, see [`super::precompiled`]): after attention `h = x + rms_norm(o, w_post)` and the
//! MLP's input `rms_norm(h, w_pre)`; after the MLP `(x + rms_norm(o, w_post)) * scale`.

use std::sync::OnceLock;

use mlx_rs::error::Exception;
use mlx_rs::{Array, Dtype, Stream};

use super::precompiled::{dtype_name, OutputSpec, Registry};

const PTX: &str = include_str!("residual_norm.ptx");
/// Threads per block (one block per row), as residual_norm.cu is written.
const BLOCK: i32 = 256;

fn registry() -> Result<&'static Registry, Exception> {
    static REGISTRY: OnceLock<Result<Registry, String>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| Registry::new("residual_norm.ptx", PTX))
        .as_ref()
        .map_err(|e| Exception::custom(e.clone()))
}

/// Whether the kernels take these operands: `o` and `x` of one shape `[.., K]` and dtype, every
/// weight `[K]` (the scale `[1]`) in that dtype.
pub fn supports(o: &Array, x: &Array, weights: &[&Array], scale: Option<&Array>) -> bool {
    let k = *o.shape().last().unwrap_or(&0);
    let dtype = o.dtype();
    k > 0
        && dtype_name(dtype).is_some()
        && x.shape() == o.shape()
        && x.dtype() == dtype
        && weights
            .iter()
            .all(|w| w.shape() == [k] && w.dtype() == dtype)
        && scale.is_none_or(|s| s.size() == 1 && s.dtype() == dtype)
}

fn launch(
    variant: &str,
    inputs: &[&Array],
    outputs: usize,
    eps: f32,
    stream: &Stream,
) -> Result<Vec<Array>, Exception> {
    let o = inputs[0];
    let k = *o.shape().last().expect("supports() checked the shape");
    let rows = (o.size() / k as usize) as i32;
    let dtype: Dtype = o.dtype();
    let specs: Vec<OutputSpec> = (0..outputs)
        .map(|_| OutputSpec {
            shape: o.shape().to_vec(),
            dtype,
        })
        .collect();
    let scalars = [k, eps.to_bits() as i32];
    registry()?.get(variant, dtype)?.launch(
        inputs,
        &specs,
        &scalars,
        (rows * BLOCK, BLOCK),
        stream,
        || format!("{variant} over {rows} {dtype:?} rows of {k}"),
    )
}

/// `(h, rms_norm(h, w_pre))` with `h = x + rms_norm(o, w_post)`. Check [`supports`] first.
pub fn norm_add_norm(
    o: &Array,
    x: &Array,
    w_post: &Array,
    w_pre: &Array,
    eps: f32,
    stream: &Stream,
) -> Result<(Array, Array), Exception> {
    let mut out = launch("norm_add_norm", &[o, x, w_post, w_pre], 2, eps, stream)?;
    let y = out.pop().expect("two outputs");
    let h = out.pop().expect("two outputs");
    Ok((h, y))
}

/// `(x + rms_norm(o, w_post)) * scale`. Check [`supports`] first.
pub fn norm_add_scale(
    o: &Array,
    x: &Array,
    w_post: &Array,
    scale: &Array,
    eps: f32,
    stream: &Stream,
) -> Result<Array, Exception> {
    Ok(launch("norm_add_scale", &[o, x, w_post, scale], 1, eps, stream)?.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_ptx_was_built_from_the_current_source_with_both_kernels() {
        super::super::precompiled::tests::check_ptx_file(
            PTX,
            &[include_str!("residual_norm.cu"), include_str!("dtypes.cuh")],
            &["norm_add_norm", "norm_add_scale"],
        );
    }
}
