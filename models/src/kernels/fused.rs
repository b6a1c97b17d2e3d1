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

/// `gelu_tanh(gate) * up`, fused.
pub fn geglu(gate: &Array, up: &Array) -> Result<Array, Exception> {
    GEGLU.with(|f| (f.borrow_mut())((gate, up)))
}

/// `tanh(x / cap) * cap` with `cap` a scalar array in the dtype of `x`, fused. (The cap is an
/// input, not a constant of the trace, so one compiled function serves every cap value.)
pub fn softcap(x: &Array, cap: &Array) -> Result<Array, Exception> {
    SOFTCAP.with(|f| (f.borrow_mut())((x, cap)))
}
