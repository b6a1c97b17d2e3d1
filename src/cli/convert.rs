use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::builder::TypedValueParser;
use clap::Args;
use vlm_models::checkpoint::QuantParams;
use vlm_models::convert::{convert_gguf, ConvertOptions, QuantMode, FORMAT_VERSION};
use vlm_models::dtype::dtype_name;
use vlm_models::gguf::export::{export_gemma4, ExportOptions, GgufType};
use vlm_models::hub::{resolve_model, ResolveOptions};

/// Convert a llama.cpp GGUF (Gemma 3 text) into an MLX checkpoint directory, or (--to-gguf) an
/// MLX Gemma 4 checkpoint into a GGUF that llama.cpp's gemma4 architecture runs.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The GGUF file.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["print_format_version", "to_gguf"],
        conflicts_with = "to_gguf"
    )]
    pub from_gguf: Option<PathBuf>,
    /// Output directory (created; must be empty unless --force).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present_any = ["print_format_version", "to_gguf"],
        conflicts_with = "to_gguf"
    )]
    pub out: Option<PathBuf>,
    /// Write the language model of the MLX Gemma 4 checkpoint --model as this GGUF file, for
    /// llama.cpp's gemma4 architecture (the vision and audio towers are left out).
    #[arg(long, value_name = "FILE", requires = "model")]
    pub to_gguf: Option<PathBuf>,
    /// With --to-gguf: the MLX checkpoint (a directory, or a Hugging Face repo id in the cache).
    #[arg(long, value_name = "DIR|REPO", requires = "to_gguf")]
    pub model: Option<String>,
    /// With --to-gguf: q4_1 keeps MLX's 4-bit groups exactly (one Q4_1 block per 32 weights: fp16
    /// scale and minimum, same codes; 5-bit groups as Q5_1); q4_k_m re-quantizes the dequantized
    /// weights to llama.cpp's Q4_K_M mix (Q4_K, Q6_K where that mix uses it) with a simple
    /// min/max quantizer, not llama.cpp's importance-weighted one; f32 writes every weight
    /// dequantized (to check llama.cpp against vlmbench in float32).
    #[arg(long, default_value = "q4_1", value_parser = clap::builder::PossibleValuesParser::new(["q4_1", "q4_k_m", "f32"]), requires = "to_gguf")]
    pub gguf_type: String,
    /// With --to-gguf q4_1: round scales and biases that fp16 cannot hold exactly to the nearest
    /// fp16 (counted in the report) instead of failing. Out-of-range ones always fail.
    #[arg(long, requires = "to_gguf")]
    pub allow_rounding: bool,
    /// Directory holding the model's tokenizer.json and tokenizer_config.json (default: the GGUF's directory).
    #[arg(long, value_name = "DIR", conflicts_with = "to_gguf")]
    pub tokenizer: Option<PathBuf>,
    /// Bits of MLX affine re-quantization for Linear and Embedding weights.
    #[arg(long, default_value_t = 4, conflicts_with = "to_gguf", value_parser = clap::builder::PossibleValuesParser::new(["2", "3", "4", "5", "6", "8"]).map(|s| s.parse::<i32>().unwrap()))]
    pub bits: i32,
    /// Group size of MLX affine re-quantization.
    #[arg(long, default_value_t = 64, conflicts_with = "to_gguf", value_parser = clap::builder::PossibleValuesParser::new(["32", "64", "128"]).map(|s| s.parse::<i32>().unwrap()))]
    pub group_size: i32,
    /// Keep the GGUF's own quantization, losslessly: Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K blocks become MLX affine
    /// 4/5/8-bit tensors with group size 32; other types (Q6_K, floats) stay dense. Ignores --bits/--group-size.
    /// Best for an already quantized GGUF: re-quantizing Gemma 3 270M Q4_K_M to 4-bit g64 costs 1.76 nats/token
    /// on a test sentence, 8-bit g64 0.003.
    #[arg(long, conflicts_with_all = ["dense", "to_gguf"])]
    pub keep_gguf_quantization: bool,
    /// Write every weight dequantized (no quantization).
    #[arg(long, conflicts_with = "to_gguf")]
    pub dense: bool,
    /// dtype of dense tensors and quantization scales/biases: float32, bfloat16 or float16.
    #[arg(long, default_value = "float32", conflicts_with = "to_gguf")]
    pub dtype: String,
    /// Write into a non-empty output directory (with --to-gguf: replace the file).
    #[arg(long)]
    pub force: bool,
    /// Print the converter's output-format version and exit (for caches of converted checkpoints).
    #[arg(long, hide = true)]
    pub print_format_version: bool,
}

pub fn run(args: &ConvertArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if args.print_format_version {
        writeln!(out, "{FORMAT_VERSION}")?;
        return Ok(());
    }
    if let Some(out_file) = &args.to_gguf {
        return to_gguf(args, out_file, &mut out);
    }
    let (Some(src), Some(dest)) = (&args.from_gguf, &args.out) else {
        bail!("--from-gguf and --out are required");
    };
    let dtype = match args.dtype.as_str() {
        "float32" => mlx_rs::Dtype::Float32,
        "bfloat16" => mlx_rs::Dtype::Bfloat16,
        "float16" => mlx_rs::Dtype::Float16,
        other => bail!("--dtype {other}: expected float32, bfloat16 or float16"),
    };
    let quant = if args.keep_gguf_quantization {
        QuantMode::KeepGguf
    } else if args.dense {
        QuantMode::Dense
    } else {
        QuantMode::Affine(QuantParams {
            bits: args.bits,
            group_size: args.group_size,
        })
    };
    let opts = ConvertOptions {
        quant,
        dtype,
        tokenizer_dir: args.tokenizer.clone(),
        overwrite: args.force,
    };
    let started = Instant::now();
    let s = convert_gguf(src, dest, &opts)
        .with_context(|| format!("cannot convert {}", src.display()))?;
    let p = &s.params;
    writeln!(
        out,
        "converted {} -> {} in {:.1} s: gemma3_text, {} layers, hidden {}, {} heads / {} KV heads, head dim {}, vocab {}, dtype {}",
        src.display(),
        s.out.display(),
        started.elapsed().as_secs_f64(),
        p.num_hidden_layers,
        p.hidden_size,
        p.num_attention_heads,
        p.num_key_value_heads,
        p.head_dim,
        p.vocab_size,
        dtype_name(dtype),
    )?;
    for (how, n) in &s.kinds {
        writeln!(out, "  {n:4} x {how}")?;
    }
    writeln!(
        out,
        "  tokenizer: {} ids match the GGUF vocabulary ({} extra in tokenizer.json)",
        s.vocab.compared, s.vocab.extra_in_tokenizer
    )?;
    for note in &s.notes {
        writeln!(out, "  note: {note}")?;
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// `--to-gguf`: export, then print what each kind of tensor became and how exact it is.
fn to_gguf(args: &ConvertArgs, out_file: &Path, out: &mut impl Write) -> Result<()> {
    let spec = args.model.as_deref().expect("clap requires --model");
    let model = resolve_model(spec, &ResolveOptions::from_env())
        .with_context(|| format!("cannot find model {spec}"))?;
    let ty: GgufType = args.gguf_type.parse().map_err(anyhow::Error::msg)?;
    let opts = ExportOptions {
        ty,
        allow_rounding: args.allow_rounding,
        overwrite: args.force,
    };
    let started = Instant::now();
    let r = export_gemma4(&model.dir, out_file, &opts)
        .with_context(|| format!("cannot export {} to GGUF", model.dir.display()))?;
    writeln!(
        out,
        "exported {} -> {} in {:.1} s: gemma4 ({}), {} layers, hidden {}, vocab {}, {} tensors, {}",
        model.dir.display(),
        r.out.display(),
        started.elapsed().as_secs_f64(),
        ty.name(),
        r.layers,
        r.hidden,
        r.vocab,
        r.tensors.len(),
        human(r.bytes),
    )?;
    let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
    for t in &r.tensors {
        *kinds.entry(t.how.as_str()).or_default() += 1;
    }
    for (how, n) in kinds {
        writeln!(out, "  {n:4} x {how}")?;
    }
    let (checked, inexact, out_of_range) = r.exactness();
    if checked > 0 {
        writeln!(
            out,
            "  fp16 scales/biases: {inexact} of {checked} not exact ({out_of_range} out of range){}",
            if inexact == 0 {
                ": the Q4_1 blocks hold MLX's values exactly"
            } else {
                ""
            }
        )?;
        for t in r.tensors.iter().filter(|t| t.inexact > 0) {
            writeln!(
                out,
                "    {}: {} of {} not exact ({} out of range)",
                t.name, t.inexact, t.checked, t.out_of_range
            )?;
        }
    }
    for note in &r.notes {
        writeln!(out, "  note: {note}")?;
    }
    Ok(())
}
