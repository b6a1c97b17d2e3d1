//! A small end-to-end check that MLX's 4-bit path works on a device: quantize a random weight,
//! run `quantized_matmul` with activations, scales and biases in the compute dtype, and compare
//! with a float32 matmul of the same (rounded) activations against the weight dequantized from
//! the same (rounded) scales and biases. So the only difference left is the kernel's arithmetic.

use mlx_rs::error::Exception;
use mlx_rs::ops;
use mlx_rs::{random, with_device, Device, Dtype};
use serde::Serialize;

use crate::dtype::dtype_name;

/// The weights are 4-bit, in groups of 64.
pub const GROUP_SIZE: i32 = 64;
pub const BITS: i32 = 4;

/// A check's product: `rows` activations against an `outputs` x `inputs` weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CheckShape {
    pub rows: i32,
    pub inputs: i32,
    pub outputs: i32,
}

/// The main check: 4 rows against a 512x1024 weight.
pub const MAIN: CheckShape = CheckShape {
    rows: 4,
    inputs: 1024,
    outputs: 512,
};

/// One group of inputs: MLX 0.32.2's CUDA GEMM gets this wrong, and vlmbench pads such products
/// ([`crate::kernels::short_inner`]), so doctor reports it without failing.
pub const ONE_GROUP: CheckShape = CheckShape {
    rows: 4,
    inputs: GROUP_SIZE,
    outputs: 128,
};

#[derive(Clone, Debug, Serialize)]
pub struct QuantizedMatmulCheck {
    pub shape: CheckShape,
    pub activation_dtype: &'static str,
    /// max |quantized_matmul - float32 reference| / max |reference|.
    pub relative_error: f32,
    pub tolerance: f32,
    pub passed: bool,
}

/// The tolerance for an activation dtype: float32 kernels differ from the reference only in
/// summation order (~1e-6 relative over 1024 terms; we allow 1e-4). Half-precision kernels round
/// partial sums and the output to 8 (bf16) or 11 (f16) mantissa bits: allow 2e-2. (MLX 0.32's
/// CPU kernel with bf16 activations errs by ~6%, and fails this: the CPU computes in float32.)
pub fn tolerance(dtype: Dtype) -> f32 {
    match dtype {
        Dtype::Float32 => 1e-4,
        _ => 2e-2,
    }
}

/// Runs the check of `shape` on `device` with activations in `dtype`.
pub fn quantized_matmul_check(
    device: &Device,
    dtype: Dtype,
    shape: CheckShape,
) -> Result<QuantizedMatmulCheck, Exception> {
    let device = Device::new(device.get_type()?, device.get_index()?);
    with_device(device, || {
        let key = random::key(7)?;
        let keys = random::split(&key, 2)?;
        let w = random::normal::<f32>(&[shape.outputs, shape.inputs][..], None, None, &keys.0)?;
        let x = random::normal::<f32>(&[shape.rows, shape.inputs][..], None, None, &keys.1)?;
        let (wq, scales, biases) = ops::quantize(&w, GROUP_SIZE, BITS)?;
        let xd = x.as_dtype(dtype)?;
        let (scales_d, biases_d) = (scales.as_dtype(dtype)?, biases.as_dtype(dtype)?);
        let f32 = |a: &mlx_rs::Array| a.as_dtype(Dtype::Float32);
        let w_deq = ops::dequantize(&wq, &f32(&scales_d)?, &f32(&biases_d)?, GROUP_SIZE, BITS)?;
        let reference = ops::matmul(&f32(&xd)?, &w_deq.transpose()?)?;
        let y = ops::quantized_matmul(&xd, &wq, &scales_d, &biases_d, true, GROUP_SIZE, BITS)?;
        let err = y
            .as_dtype(Dtype::Float32)?
            .subtract(&reference)?
            .abs()?
            .max(None)?;
        let scale = reference.abs()?.max(None)?;
        let relative_error = scalar(&err)? / scalar(&scale)?.max(f32::MIN_POSITIVE);
        let tolerance = tolerance(dtype);
        Ok(QuantizedMatmulCheck {
            shape,
            activation_dtype: dtype_name(dtype),
            relative_error,
            tolerance,
            passed: relative_error.is_finite() && relative_error <= tolerance,
        })
    })
}

fn scalar(a: &mlx_rs::Array) -> Result<f32, Exception> {
    a.try_item_cast::<f32>()
        .map_err(|e| Exception::custom(e.to_string()))
}
