use std::fmt::Write;

use anyhow::{bail, Result};
use clap::Args;
use vlm_models::dtype::DtypeChoice;
use vlm_models::kernels::PREFILL_MIN_ROWS;

use crate::doctor::{self, device_label, DoctorReport};
use crate::report::human_bytes;

/// Show the MLX runtime, its devices and memory, and check 4-bit matmul on every device.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Activation dtype for the checks: auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16.
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(DtypeChoice))]
    pub dtype: DtypeChoice,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &DoctorArgs) -> Result<()> {
    let report = doctor::run(args.dtype)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    if !report.passed {
        bail!("doctor: a device failed its 4-bit matmul check (see above)");
    }
    Ok(())
}

pub fn render(r: &DoctorReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "vlmbench {}", r.vlmbench_version);
    let _ = writeln!(
        s,
        "MLX             {} (backend: {})",
        r.mlx_version, r.backend
    );
    if let Some(lib) = &r.mlx_library {
        let _ = writeln!(s, "library         {lib}");
    }
    let _ = writeln!(
        s,
        "default device  {}",
        r.default_device.as_deref().unwrap_or("none")
    );
    let _ = writeln!(s, "memory limit    {}", human_bytes(r.memory.limit as u64));
    let _ = writeln!(s, "kernels         {} (VLMBENCH_KERNELS)", r.kernels);
    let _ = writeln!(
        s,
        "prefill         {} for prompts of {}+ tokens (VLMBENCH_PREFILL)",
        r.prefill, PREFILL_MIN_ROWS
    );
    let _ = writeln!(s, "devices");
    for d in &r.devices {
        let name = d.property("device_name").unwrap_or("");
        // CUDA reports total_memory, Metal memory_size.
        let mem = ["total_memory", "memory_size"]
            .iter()
            .find_map(|key| d.property(key)?.parse().ok())
            .map(human_bytes)
            .unwrap_or_default();
        let arch = d.property("architecture").unwrap_or("");
        let state = if d.available {
            "available"
        } else {
            "unavailable"
        };
        let _ = writeln!(
            s,
            "  {:<6} {:<11} {name} ({arch}) {mem}",
            device_label(d),
            state
        );
    }
    let _ = writeln!(
        s,
        "checks: 4-bit quantized matmul vs float32 on the dequantized weight"
    );
    for c in &r.checks {
        match (&c.quantized_matmul, &c.error) {
            (Some(q), _) => {
                let verdict = if q.passed { "PASS" } else { "FAIL" };
                let _ = writeln!(
                    s,
                    "  {:<6} {:<9} relative error {:.1e} (tolerance {:.0e})  {verdict}",
                    c.device, q.activation_dtype, q.relative_error, q.tolerance
                );
            }
            (None, Some(e)) => {
                let _ = writeln!(s, "  {:<6} FAIL: {e}", c.device);
            }
            (None, None) => {}
        }
        if let Some(q) = &c.one_group {
            let verdict = if q.passed {
                "PASS"
            } else {
                "WRONG in this MLX; vlmbench pads such products to 128 inputs"
            };
            let _ = writeln!(
                s,
                "  {:<6} {:<9} {} inputs (one group), {} rows: relative error {:.1e}  {verdict}",
                c.device, q.activation_dtype, q.shape.inputs, q.shape.rows, q.relative_error
            );
        }
    }
    let _ = writeln!(
        s,
        "{}",
        if r.passed {
            "all checks passed"
        } else {
            "SOME CHECKS FAILED"
        }
    );
    s
}
