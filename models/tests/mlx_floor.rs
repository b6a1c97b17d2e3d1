//! The floor everything stands on: real MLX work through mlx-rs on this machine's CPU.

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::ops::{dequantize, quantize};
use mlx_rs::{random, Array, Device, Dtype};
use vlm_models::selftest::{quantized_matmul_check, BITS, GROUP_SIZE, MAIN, ONE_GROUP};

fn normal(shape: &[i32], seed: u64) -> Array {
    random::normal::<f32>(shape, None, None, &random::key(seed).unwrap()).unwrap()
}

#[test]
fn quantize_dequantize_round_trip_stays_within_one_step_per_group() {
    let w = normal(&[128, 256], 1);
    let (wq, scales, biases) = quantize(&w, GROUP_SIZE, BITS).unwrap();
    // 4-bit values pack eight to a uint32; one scale and bias per group of 64.
    assert_eq!(wq.shape(), &[128, 256 / 8]);
    assert_eq!(wq.dtype(), Dtype::Uint32);
    assert_eq!(scales.shape(), &[128, 256 / GROUP_SIZE]);
    let back = dequantize(&wq, &scales, &biases, GROUP_SIZE, BITS).unwrap();
    assert_eq!(back.shape(), w.shape());

    let w = w.as_slice::<f32>().to_vec();
    let back = back.as_slice::<f32>();
    let scales = scales.as_slice::<f32>();
    // MLX's affine quantization snaps the group's larger-magnitude edge onto the grid exactly, so
    // the other edge may be off by up to one step; inside the range rounding errs by half a step.
    let mut squared_steps = 0.0;
    for (i, (a, b)) in w.iter().zip(back).enumerate() {
        let (row, col) = (i / 256, i % 256);
        let step = scales[row * (256 / GROUP_SIZE as usize) + col / GROUP_SIZE as usize].abs();
        assert!(
            (a - b).abs() <= step + 1e-5,
            "element {i}: {a} -> {b}, step {step}"
        );
        squared_steps += ((a - b) / step).powi(2);
    }
    // Uniform rounding error has an RMS of 1/sqrt(12) = 0.29 steps.
    let rms_steps = (squared_steps / w.len() as f32).sqrt();
    assert!(rms_steps < 0.35, "RMS error {rms_steps} steps");
    // A real round trip, not the identity: 4 bits cannot hold a normal sample exactly.
    assert!(w.iter().zip(back).any(|(a, b)| (a - b).abs() > 1e-3));
}

#[test]
fn quantized_matmul_matches_float32_reference_on_cpu() {
    // float32 is the CPU compute dtype (see dtype.rs). MLX 0.32's CPU kernel with bf16
    // activations errs by ~6% of the output's range on the same inputs (Python MLX agrees),
    // another reason the CPU computes in float32.
    for shape in [MAIN, ONE_GROUP] {
        let check = quantized_matmul_check(&Device::cpu(), Dtype::Float32, shape).unwrap();
        assert!(check.passed, "{check:?}");
        assert!(check.relative_error < 1e-5, "{check:?}");
    }
}

#[test]
fn safetensors_round_trip_keeps_names_dtypes_shapes_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.safetensors");
    let w = normal(&[3, 5], 2);
    let (wq, scales, _) = quantize(normal(&[64, 64], 3), GROUP_SIZE, BITS).unwrap();
    let scales_bf16 = scales.as_dtype(Dtype::Bfloat16).unwrap();
    let tensors = [
        ("a.weight", &w),
        ("q.weight", &wq),
        ("q.scales", &scales_bf16),
    ];
    Array::save_safetensors(tensors, None, &path).unwrap();

    let loaded = Array::load_safetensors(&path).unwrap();
    assert_eq!(loaded.len(), 3);
    for (name, original) in tensors {
        let got = &loaded[name];
        assert_eq!(got.dtype(), original.dtype(), "{name}");
        assert_eq!(got.shape(), original.shape(), "{name}");
        assert!(got.eq_values(original).unwrap(), "{name} values differ");
    }
}

#[test]
fn half_precision_elements_are_readable_on_this_target() {
    let values = [1.5f32, -2.25, 65504.0];
    let a = Array::from_slice(&values, &[3]);
    let f16 = a.as_dtype(Dtype::Float16).unwrap();
    let bf16 = a.as_dtype(Dtype::Bfloat16).unwrap();
    assert_eq!(f16.as_slice::<half::f16>(), values.map(half::f16::from_f32));
    // bf16 keeps 8 significant bits: 65504 rounds to 65536.
    assert_eq!(
        bf16.as_slice::<half::bf16>(),
        values.map(half::bf16::from_f32)
    );
    assert_eq!(bf16.as_slice::<half::bf16>()[2].to_f32(), 65536.0);
    let scalar = Array::from_f32(-2.25).as_dtype(Dtype::Bfloat16).unwrap();
    assert_eq!(scalar.item_exact::<half::bf16>().to_f32(), -2.25);
    assert_eq!(f16.index(1).item_exact::<half::f16>().to_f32(), -2.25);
}
