//! Which floating dtype activations are computed in.
//!
//! Policy: float32 on the CPU, bfloat16 on GPUs. MLX 0.32's CPU 4-bit matmul is several times
//! slower with bf16 activations than with f32 (same in Python MLX; docs/building.md), and
//! vlmbench's own CPU kernels take float32, while GPUs are built for bf16 and the checkpoints store
//! bf16. `--dtype` overrides the policy.

use std::fmt;
use std::str::FromStr;

use mlx_rs::{Device, DeviceType, Dtype};

/// A `--dtype` choice: a fixed dtype or the per-device policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DtypeChoice {
    #[default]
    Auto,
    Float32,
    Bfloat16,
    Float16,
}

impl DtypeChoice {
    /// The compute dtype on `device`.
    pub fn resolve(self, device: &Device) -> Dtype {
        match self {
            DtypeChoice::Float32 => Dtype::Float32,
            DtypeChoice::Bfloat16 => Dtype::Bfloat16,
            DtypeChoice::Float16 => Dtype::Float16,
            DtypeChoice::Auto => match device.get_type() {
                Ok(DeviceType::Gpu) => Dtype::Bfloat16,
                _ => Dtype::Float32,
            },
        }
    }

    pub const NAMES: &'static [&'static str] = &["auto", "float32", "bfloat16", "float16"];
}

impl FromStr for DtypeChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(DtypeChoice::Auto),
            "float32" | "f32" | "fp32" => Ok(DtypeChoice::Float32),
            "bfloat16" | "bf16" => Ok(DtypeChoice::Bfloat16),
            "float16" | "f16" | "fp16" | "half" => Ok(DtypeChoice::Float16),
            other => Err(format!(
                "unknown dtype {other:?}: use one of {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

impl fmt::Display for DtypeChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::NAMES[*self as usize])
    }
}

/// Short lowercase name of a floating dtype, as users write it.
pub fn dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::Float32 => "float32",
        Dtype::Bfloat16 => "bfloat16",
        Dtype::Float16 => "float16",
        Dtype::Float64 => "float64",
        _ => "non-float",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_computes_in_float32_on_the_cpu() {
        assert_eq!(DtypeChoice::Auto.resolve(&Device::cpu()), Dtype::Float32);
    }

    #[test]
    fn auto_computes_in_bfloat16_on_a_gpu() {
        assert_eq!(DtypeChoice::Auto.resolve(&Device::gpu()), Dtype::Bfloat16);
    }

    #[test]
    fn explicit_choice_overrides_the_device_policy() {
        assert_eq!(
            DtypeChoice::Bfloat16.resolve(&Device::cpu()),
            Dtype::Bfloat16
        );
        assert_eq!(DtypeChoice::Float32.resolve(&Device::gpu()), Dtype::Float32);
    }

    #[test]
    fn parses_the_names_users_write_and_rejects_others() {
        assert_eq!("bf16".parse::<DtypeChoice>(), Ok(DtypeChoice::Bfloat16));
        assert_eq!("FLOAT32".parse::<DtypeChoice>(), Ok(DtypeChoice::Float32));
        let err = "int8".parse::<DtypeChoice>().unwrap_err();
        assert!(err.contains("int8") && err.contains("bfloat16"), "{err}");
        for name in DtypeChoice::NAMES {
            assert_eq!(name.parse::<DtypeChoice>().unwrap().to_string(), *name);
        }
    }
}
