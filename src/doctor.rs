//! `vlmbench doctor`: what MLX runtime this process loaded, its devices, and whether 4-bit
//! quantized matmul gives correct answers on each available device.

use mlx_rs::Device;
use serde::Serialize;
use vlm_models::dtype::{dtype_name, DtypeChoice};
use vlm_models::runtime::{self, DeviceInfo, MemoryFigures};
use vlm_models::selftest::{self, QuantizedMatmulCheck};

#[derive(Debug, Serialize)]
pub struct DoctorReport {
    pub vlmbench_version: &'static str,
    pub mlx_version: String,
    /// "cuda", "metal" or "cpu".
    pub backend: &'static str,
    /// The shared library the dynamic loader picked for libmlx.
    pub mlx_library: Option<String>,
    pub default_device: Option<String>,
    pub devices: Vec<DeviceInfo>,
    pub memory: MemoryFigures,
    /// `VLMBENCH_KERNELS` in effect: who runs the hot-path products.
    pub kernels: String,
    /// `VLMBENCH_PREFILL` in effect for prompts of
    /// [`PREFILL_MIN_ROWS`](vlm_models::kernels::PREFILL_MIN_ROWS)+ tokens.
    pub prefill: &'static str,
    pub checks: Vec<DeviceCheck>,
    pub passed: bool,
}

#[derive(Debug, Serialize)]
pub struct DeviceCheck {
    pub device: String,
    pub quantized_matmul: Option<QuantizedMatmulCheck>,
    /// The same with one group of inputs ([`selftest::ONE_GROUP`]): informational, as vlmbench
    /// pads such products where MLX gets them wrong; `None` when MLX raised an error.
    pub one_group: Option<QuantizedMatmulCheck>,
    /// Set when MLX raised an error instead of computing.
    pub error: Option<String>,
}

impl DeviceCheck {
    pub fn passed(&self) -> bool {
        self.quantized_matmul.as_ref().is_some_and(|c| c.passed)
    }
}

pub fn device_label(info: &DeviceInfo) -> String {
    format!("{}:{}", info.kind, info.index)
}

/// Gathers the report, running the 4-bit check on every available device in the dtype `dtype`
/// resolves to there. Fails on a bad `VLMBENCH_KERNELS` or `VLMBENCH_PREFILL`.
pub fn run(dtype: DtypeChoice) -> anyhow::Result<DoctorReport> {
    let (kernels, prefill) = crate::bench::kernel_choices()?;
    let devices = runtime::devices();
    let checks: Vec<DeviceCheck> = devices
        .iter()
        .filter(|d| d.available)
        .map(|info| {
            let device: Device = info.device();
            let compute = dtype.resolve(&device);
            let check = |shape| selftest::quantized_matmul_check(&device, compute, shape);
            let (quantized_matmul, error) = match check(selftest::MAIN) {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(format!("{} ({})", e, dtype_name(compute)))),
            };
            DeviceCheck {
                device: device_label(info),
                quantized_matmul,
                one_group: check(selftest::ONE_GROUP).ok(),
                error,
            }
        })
        .collect();
    let passed = !checks.is_empty() && checks.iter().all(DeviceCheck::passed);
    Ok(DoctorReport {
        vlmbench_version: env!("CARGO_PKG_VERSION"),
        mlx_version: runtime::mlx_version(),
        backend: runtime::backend(),
        mlx_library: runtime::mlx_library_path(),
        default_device: runtime::default_device().map(|d| device_label(&d)),
        devices,
        memory: runtime::memory(),
        kernels,
        prefill,
        checks,
        passed,
    })
}
