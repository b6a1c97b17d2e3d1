//! The GELU gate and the logit soft-cap as MLX-compiled functions: tracing them once with
//! `compile(shapeless)` lets MLX fuse each elementwise chain into one GPU kernel (the GELU gate
//! is nine kernels op by op). Compilation keeps every intermediate's dtype, so the results are
//! those of the op-by-op graph in [`crate::nn`].

use std::cell::RefCell;

use mlx_rs::error::Exception;
use mlx_rs::transforms::compile::compile;
use mlx_rs::Array;

use crate::nn;

type Binary = Box<dyn for<'a> FnMut((&'a Array, &'a Array)) -> Result<Array, Exception>>;

fn mlx_error(e: crate::error::ModelError) -> Exception {
    Exception::custom(e.to_string())
}

thread_local! {
    // Compiled functions hold MLX state tied to the thread that traced them.
    static GEGLU: RefCell<Binary> = RefCell::new(Box::new(compile(
        |(gate, up): (&Array, &Array)| nn::geglu_ops(gate, up).map_err(mlx_error),
        true,
    )));
    static SOFTCAP: RefCell<Binary> = RefCell::new(Box::new(compile(
        |(x, cap): (&Array, &Array)| nn::softcap_ops(x, cap).map_err(mlx_error),
        true,
    )));
}

/// `gelu_tanh(gate) * up`: one fused kernel where the fused chains apply
/// ([`super::fuse_elementwise`]), else op by op.
pub fn geglu(gate: &Array, up: &Array) -> crate::error::Result<Array> {
    if super::fuse_elementwise()? {
        return Ok(GEGLU.with(|f| (f.borrow_mut())((gate, up)))?);
    }
    nn::geglu_ops(gate, up)
}

/// `tanh(x / cap) * cap`, fused where the fused chains apply, else op by op. (The cap is an input
/// of the trace, not a constant, so one compiled function serves every cap value.)
pub fn softcap(x: &Array, cap: f64) -> crate::error::Result<Array> {
    let cap = nn::scalar(cap, x.dtype())?;
    if super::fuse_elementwise()? {
        return Ok(SOFTCAP.with(|f| (f.borrow_mut())((x, &cap)))?);
    }
    nn::softcap_ops(x, &cap)
}
