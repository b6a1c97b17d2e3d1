use std::fmt::Write;

use anyhow::{bail, Context, Result};
use clap::Args;
use mlx_rs::{Device, Dtype, Stream};
use vlm_models::kernels::check::{check_gemv, GemvShapeReport, Quantization};

/// Check vlmbench's own 4-bit matrix products against MLX's stock ones and time both.
///
/// For each K x N shape: a random weight quantized to 4 bits (groups of 64) and --rows activation
/// rows; both products compared with a float32 product, then timed over weight copies that do
/// not fit the caches. Prints microseconds and GB/s per kernel. On a CUDA GPU this is the GEMV
/// (one row) or, with --rows above 1, the dequantized product that VLMBENCH_PREFILL=dequant
/// uses for prompts; on the CPU the Rust products (float32, any number of rows).
#[derive(Debug, Args)]
pub struct KernelsArgs {
    /// Shapes as KxN (input features x output features), comma-separated. The default is every
    /// 4-bit matrix of a decode step and the LM head: Gemma-4-31B's on a GPU, Gemma 4 E2B's on
    /// the CPU.
    #[arg(long, value_delimiter = ',')]
    pub shapes: Vec<String>,
    /// Where to run: gpu (CUDA builds) or cpu. Default: gpu when the MLX library is the CUDA one.
    #[arg(long)]
    pub device: Option<String>,
    /// Activation rows (1 = decode; more = a prefill chunk).
    #[arg(long, default_value_t = 1)]
    pub rows: i32,
    /// Activation dtype: bfloat16, float16 or float32 (CPU: float32). Default: bfloat16 on a GPU,
    /// float32 on the CPU.
    #[arg(long)]
    pub dtype: Option<String>,
    /// Bits per weight of the checked matrices (the GPU GEMV: 4; the CPU products: 4 or 8).
    #[arg(long, default_value_t = 4)]
    pub bits: i32,
    /// Weights per quantization group (the GPU GEMV: 64; the CPU products: 32, 64 or 128).
    #[arg(long, default_value_t = 64)]
    pub group_size: i32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

const GPU_SHAPES: &str = "5376x8192,5376x4096,8192x5376,5376x16384,5376x2048,16384x5376,5376x21504,21504x5376,5376x262144";
const CPU_SHAPES: &str = "1536x2048,1536x256,2048x1536,1536x6144,6144x1536,1536x262144";

pub fn run(args: &KernelsArgs) -> Result<()> {
    let backend = vlm_models::runtime::backend();
    let gpu = match args.device.as_deref() {
        None => backend == "cuda",
        Some("gpu") if backend != "cuda" => {
            bail!("kernels --device gpu: vlmbench's GPU kernels run on CUDA GPUs; this MLX library's backend is {backend} (see docs/gpu.md)")
        }
        Some("gpu") => true,
        Some("cpu") => false,
        Some(other) => bail!("--device {other:?}: use cpu or gpu"),
    };
    let shapes = if args.shapes.is_empty() {
        let defaults = match (gpu, args.rows) {
            (true, 1) => GPU_SHAPES,
            // A prompt's LM head runs on its last row only.
            (true, _) => GPU_SHAPES
                .rsplit_once(',')
                .map_or(GPU_SHAPES, |(decoder, _)| decoder),
            (false, _) => CPU_SHAPES,
        };
        defaults
            .split(',')
            .map(parse_shape)
            .collect::<Result<Vec<_>>>()?
    } else {
        args.shapes
            .iter()
            .map(|s| parse_shape(s))
            .collect::<Result<Vec<_>>>()?
    };
    let dtype = match args.dtype.as_deref() {
        None if gpu => Dtype::Bfloat16,
        None | Some("float32") => Dtype::Float32,
        Some("bfloat16") => Dtype::Bfloat16,
        Some("float16") => Dtype::Float16,
        Some(other) => bail!("--dtype {other:?}: use bfloat16, float16 or float32"),
    };
    if args.rows < 1 {
        bail!("--rows {}: use 1 (decode) or more (a prompt)", args.rows);
    }
    let (bits, groups): (&[i32], &[i32]) = if gpu {
        (&[4], &[64])
    } else {
        (&[4, 8], &[32, 64, 128])
    };
    if !bits.contains(&args.bits) || !groups.contains(&args.group_size) {
        bail!(
            "--bits {} --group-size {}: the {} products checked here take {bits:?}-bit weights in groups of {groups:?}",
            args.bits,
            args.group_size,
            if gpu { "GPU" } else { "CPU" }
        );
    }
    if !gpu && dtype != Dtype::Float32 {
        bail!(
            "--dtype {:?}: the CPU products take float32 activations",
            args.dtype.as_deref().unwrap_or_default()
        );
    }
    let stream = Stream::new_with_device(&if gpu { Device::gpu() } else { Device::cpu() });
    let quant = Quantization {
        bits: args.bits,
        group_size: args.group_size,
    };
    let reports = check_gemv(&shapes, args.rows, dtype, quant, &stream)
        .map_err(|e| anyhow::anyhow!("kernels: {}", e.what()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", render(&reports));
        if gpu {
            let cheap = vlm_models::kernels::qgemv::launches_are_cheap()
                .map_err(|e| anyhow::anyhow!("kernels: {}", e.what()))?;
            println!(
                "GEMV module: {}",
                if cheap {
                    "precompiled PTX, loaded from MLX's PTX cache"
                } else {
                    "precompiled PTX passed as text (MLX's PTX cache is not writable: slower launches)"
                }
            );
        }
    }
    if let Some(bad) = reports.iter().find(|r| !r.passed) {
        bail!(
            "kernels: vlmbench's product is outside the tolerance at M={} K={} N={} (relative error {:.2e})",
            bad.m,
            bad.k,
            bad.n,
            bad.vlmbench_relative_error
        );
    }
    Ok(())
}

fn parse_shape(s: &str) -> Result<(i32, i32)> {
    let (k, n) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("--shapes {s:?}: write KxN, e.g. 5376x8192"))?;
    let num = |v: &str| v.trim().parse::<i32>().ok().filter(|v| *v > 0);
    match (num(k), num(n)) {
        (Some(k), Some(n)) => Ok((k, n)),
        _ => bail!("--shapes {s:?}: K and N must be positive integers, e.g. 5376x8192"),
    }
}

fn render(reports: &[GemvShapeReport]) -> String {
    let mut s = String::from(
        "| M x K x N | MB read | MLX us | MLX GB/s | vlmbench us | vlmbench GB/s | speedup | rel. error MLX | rel. error vlmbench | ok |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        let _ = writeln!(
            s,
            "| {}x{}x{} | {:.1} | {:.1} | {:.0} | {:.1} | {:.0} | {:.2} | {:.1e} | {:.1e} | {} |",
            r.m,
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
