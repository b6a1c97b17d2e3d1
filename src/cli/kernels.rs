use std::fmt::Write;

use anyhow::{bail, Context, Result};
use clap::Args;
use mlx_rs::{Device, Dtype, Stream};
use vlm_models::kernels::check::{check_gemv, GemvShapeReport};

/// Check vlmbench's custom CUDA kernels against MLX's stock ones and time both (GPU only).
///
/// For each K x N shape: a random weight quantized to 4 bits (groups of 64), one activation row;
/// both kernels compared with a float32 product, then timed over weight copies that do not fit
/// the L2 cache. Prints microseconds and GB/s per kernel.
#[derive(Debug, Args)]
pub struct KernelsArgs {
    /// Shapes as KxN (input features x output features), comma-separated. The default is every
    /// 4-bit matrix of a Gemma-4-31B decode step and its LM head.
    #[arg(long, value_delimiter = ',', default_value = "5376x8192,5376x4096,8192x5376,5376x16384,5376x2048,16384x5376,5376x21504,21504x5376,5376x262144")]
    pub shapes: Vec<String>,
    /// Activation dtype: bfloat16, float16 or float32.
    #[arg(long, default_value = "bfloat16")]
    pub dtype: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &KernelsArgs) -> Result<()> {
    let shapes = args.shapes.iter().map(|s| parse_shape(s)).collect::<Result<Vec<_>>>()?;
    let dtype = match args.dtype.as_str() {
        "bfloat16" => Dtype::Bfloat16,
        "float16" => Dtype::Float16,
        "float32" => Dtype::Float32,
        other => bail!("--dtype {other:?}: use bfloat16, float16 or float32"),
    };
    let backend = vlm_models::runtime::backend();
    if backend != "cuda" {
        bail!("kernels: vlmbench's custom kernels run on CUDA GPUs; this MLX library's backend is {backend} (see docs/gpu.md)");
    }
    let stream = Stream::new_with_device(&Device::gpu());
    let reports = check_gemv(&shapes, dtype, &stream).map_err(|e| anyhow::anyhow!("kernels: {}", e.what()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", render(&reports));
    }
    if let Some(bad) = reports.iter().find(|r| !r.passed) {
        bail!("kernels: the custom GEMV is outside the tolerance at K={} N={} (relative error {:.2e})", bad.k, bad.n, bad.vlmbench_relative_error);
    }
    Ok(())
}

fn parse_shape(s: &str) -> Result<(i32, i32)> {
    let (k, n) = s.split_once(['x', 'X']).with_context(|| format!("--shapes {s:?}: write KxN, e.g. 5376x8192"))?;
    let num = |v: &str| v.trim().parse::<i32>().ok().filter(|v| *v > 0);
    match (num(k), num(n)) {
        (Some(k), Some(n)) => Ok((k, n)),
        _ => bail!("--shapes {s:?}: K and N must be positive integers, e.g. 5376x8192"),
    }
}

fn render(reports: &[GemvShapeReport]) -> String {
    let mut s = String::from(
        "| K x N | MB read | MLX us | MLX GB/s | vlmbench us | vlmbench GB/s | speedup | rel. error MLX | rel. error vlmbench | ok |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        let _ = writeln!(
            s,
            "| {}x{} | {:.1} | {:.1} | {:.0} | {:.1} | {:.0} | {:.2} | {:.1e} | {:.1e} | {} |",
            r.k,
            r.n,
            r.bytes as f64 / 1e6,
            r.mlx_us,
            r.mlx_gb_per_s,
            r.vlmbench_us,
            r.vlmbench_gb_per_s,
            r.mlx_us / r.vlmbench_us,
            r.mlx_relative_error,
            r.vlmbench_relative_error,
            if r.passed { "yes" } else { "NO" }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_as_k_by_n_and_bad_ones_say_how_to_write_them() {
        assert_eq!(parse_shape("5376x8192").unwrap(), (5376, 8192));
        assert_eq!(parse_shape("64X2").unwrap(), (64, 2));
        for bad in ["5376", "0x5", "ax5", "5x-1"] {
            let err = parse_shape(bad).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("5376x8192"), "{err}");
        }
    }
}
