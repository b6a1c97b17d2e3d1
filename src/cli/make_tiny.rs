use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use vlm_models::tiny_checkpoint::{
    write_preset_checkpoint, write_tiny_checkpoint, Preset, TinyReport, TinyVariant,
};

/// Write a tiny Gemma 4 checkpoint with RANDOM weights, for tests and offline demos.
///
/// The checkpoint has the exact layout of an mlx-community 4-bit Gemma 4 repo (config.json with its
/// quantization block, model.safetensors, tokenizer, chat template, processor and generation
/// configs), so every loader and the whole pipeline run on it without a download. Its weights
/// are random: the text it generates is meaningless. The same seed writes the same bytes.
#[derive(Debug, Args)]
pub struct MakeTinyArgs {
    /// Folder to write the checkpoint into (created if missing).
    pub out_dir: PathBuf,
    /// Which architecture: Gemma 4 (the default) or Moondream2 (its published safetensors
    /// layout, bf16, no tokenizer: tests pass token ids).
    #[arg(long, value_enum, default_value_t = ArchArg::Gemma4)]
    pub arch: ArchArg,
    /// Which Gemma 4 family to mirror.
    #[arg(long, value_enum, default_value_t = VariantArg::Dense, conflicts_with = "preset")]
    pub variant: VariantArg,
    /// Write a FULL-SIZE model instead: the published shapes with random 4-bit weights, in 5 GB
    /// shards (gemma-4-31b: about 18 GB, drawn on the GPU when there is one), for speed and
    /// memory benchmarks. gemma-4-31b-mini has the same structure at toy widths (dry runs);
    /// gemma-4-e2b is the small model for CPU runs.
    #[arg(long, value_enum)]
    pub preset: Option<PresetArg>,
    /// With --preset: write the shapes ONE of N tensor-parallel ranks computes with (query and
    /// KV heads and MLP units divided by N, embeddings and LM head whole, as `--tensor-parallel`
    /// splits them). Benched on one GPU, it times a rank's compute without the all-reduces: the
    /// ceiling of N-way tensor-parallel decode on that GPU.
    #[arg(long, value_name = "N", requires = "preset", value_parser = clap::value_parser!(u32).range(2..))]
    pub one_rank_of: Option<u32>,
    /// Seed of MLX's random generator for the weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write into a non-empty folder, replacing files of the same names (others are kept).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
    Gemma4,
    Moondream2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VariantArg {
    /// 31B flavour: sliding/full attention, k_eq_v, bidirectional image attention
    Dense,
    /// 26B-A4B flavour: mixture of experts (4 experts, top 2), 8-bit router
    Moe,
    /// E2B flavour: per-layer embeddings, KV sharing, clipped vision linears
    Ple,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    /// Gemma 4 31B dense: 60 layers of 5376, vision tower 1152 x 27
    #[value(name = "gemma-4-31b")]
    Gemma4_31b,
    /// The 31B structure at toy widths, in several small shards
    #[value(name = "gemma-4-31b-mini")]
    Gemma4_31bMini,
    /// Gemma 4 E2B (no audio): 35 layers of 1536, per-layer embeddings, KV sharing, about 3 GB
    #[value(name = "gemma-4-e2b")]
    Gemma4E2b,
}

impl From<PresetArg> for Preset {
    fn from(p: PresetArg) -> Self {
        match p {
            PresetArg::Gemma4_31b => Preset::Gemma4_31b,
            PresetArg::Gemma4_31bMini => Preset::Gemma4_31bMini,
            PresetArg::Gemma4E2b => Preset::Gemma4E2b,
        }
    }
}

impl From<VariantArg> for TinyVariant {
    fn from(v: VariantArg) -> Self {
        match v {
            VariantArg::Dense => TinyVariant::Dense,
            VariantArg::Moe => TinyVariant::Moe,
            VariantArg::Ple => TinyVariant::Ple,
        }
    }
}

pub fn run(args: &MakeTinyArgs) -> Result<()> {
    if !args.force && is_non_empty_dir(&args.out_dir)? {
        bail!(
            "{} is not empty; pass --force to write into it anyway",
            args.out_dir.display()
        );
    }
    if args.arch == ArchArg::Moondream2 {
        let s = vlm_models::moondream2::tiny::write_tiny(&args.out_dir, args.seed)?;
        println!(
            "wrote a tiny Moondream2 checkpoint with random weights (seed {}) to {}\n  {} tensors in model.safetensors ({}), bf16; tokenizer.json: a byte-level stand-in for starmie-v1",
            args.seed,
            args.out_dir.display(),
            s.tensors,
            human(s.weight_bytes)
        );
        return Ok(());
    }
    // TinyError messages already name the file or folder they are about.
    let report = match args.preset {
        None => write_tiny_checkpoint(&args.out_dir, args.variant.into(), args.seed)?,
        Some(preset) => {
            let start = std::time::Instant::now();
            let one_rank_of = args.one_rank_of.map(|n| n as usize);
            write_preset_checkpoint(
                &args.out_dir,
                preset.into(),
                one_rank_of,
                args.seed,
                |file, i, n| {
                    eprintln!(
                        "  shard {}/{n}: {} ({}) after {:.1} s",
                        i + 1,
                        file.name,
                        human(file.bytes),
                        start.elapsed().as_secs_f64()
                    );
                },
            )?
        }
    };
    print!("{}", render(&report));
    let others = other_files(&report);
    if !others.is_empty() {
        println!(
            "  note: kept {} other file(s) in the folder: {}",
            others.len(),
            others.join(", ")
        );
    }
    Ok(())
}

/// True for an existing folder with at least one entry; false for a missing path. A path that
/// exists but is not a folder is left for the writer to report.
fn is_non_empty_dir(path: &Path) -> Result<bool> {
    if !path.is_dir() {
        return Ok(false);
    }
    let mut entries =
        std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(entries.next().is_some())
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

pub fn render(r: &TinyReport) -> String {
    let mut s = String::new();
    let _ = match r.preset {
        None => writeln!(
            s,
            "wrote a tiny Gemma 4 checkpoint with random weights (variant {}, seed {}) to {}",
            r.variant,
            r.seed,
            r.dir.display()
        ),
        Some(preset) => {
            let shapes = match r.one_rank_of {
                None => preset.to_string(),
                Some(n) => format!("one of {n} tensor-parallel ranks of {preset}"),
            };
            writeln!(
                s,
                "wrote a Gemma 4 checkpoint with the shapes of {shapes} and random weights (seed {}) to {}",
                r.seed,
                r.dir.display()
            )
        }
    };
    let _ = writeln!(
        s,
        "  {} tensors, {} files, {} in all",
        r.tensor_count,
        r.files.len(),
        human(r.total_bytes())
    );
    let q = &r.quantization;
    let mut quant = format!(
        "  {} quantized modules: {} {}-bit, group size {}",
        r.quantized_modules, q.mode, q.bits, q.group_size
    );
    if !q.overrides.is_empty() {
        // Today only MoE routers, all at the same bits.
        let bits: Vec<String> = q.overrides.values().map(|o| o.bits.to_string()).collect();
        let _ = write!(quant, " ({} at {} bits)", q.overrides.len(), bits[0]);
    }
    let _ = writeln!(s, "{quant}; vision tower and projector in bf16");
    for f in &r.files {
        let _ = writeln!(s, "  {:<30} {:>10}", f.name, human(f.bytes));
    }
    s
}

/// Files in the folder that make-tiny did not write (kept under --force). A leftover
/// `*.safetensors` would be loaded along with ours, so the user should hear about them.
fn other_files(r: &TinyReport) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(&r.dir) else {
        return Vec::new();
    };
    let mut others: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !r.files.iter().any(|f| &f.name == name))
        .collect();
    others.sort();
    others
}
