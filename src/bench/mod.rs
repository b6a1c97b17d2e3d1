//! `vlmbench bench`: llama-bench-style measurements of prompt processing and generation at fixed
//! lengths, repeated, with mean ± sd and peak memory. Prompts are random token ids (special tokens
//! excluded) from a seeded generator, EOS is ignored so lengths are exact, and a warm-up run of
//! each test comes first (kernel compilation and allocator growth stay out of the figures).

pub mod compare;
pub mod moondream;
mod output;
pub mod results;
pub mod scaling;
pub mod sweep;
mod tests_spec;

use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use vlm_models::dtype::dtype_name;
use vlm_models::image_io::RgbImage;
use vlm_models::model::{default_prefill_step_size, LoadedModel, Prompt};
use vlm_models::runtime;
use vlm_models::sampling::Sampler;

use crate::engine::{self, GenerateOptions, HostMs};

pub use output::{write_jsonl_row, write_rows, OutputFormat};
pub use tests_spec::{parse_lengths, BenchTest};

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub tests: Vec<BenchTest>,
    pub repetitions: usize,
    pub warmup: bool,
    pub seed: u64,
    /// The image of `img+tgN` tests.
    pub image: Option<RgbImage>,
}

/// The question asked with the image in `img+tgN` tests.
pub const IMAGE_QUESTION: &str = "Describe this image.";

/// One test's figures over its repetitions.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    pub model: String,
    pub model_size_bytes: u64,
    pub backend: &'static str,
    pub device: String,
    pub dtype: &'static str,
    pub test: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    /// Tokens per second of each repetition (see [`BenchTest`] for what each test counts).
    pub tps_samples: Vec<f64>,
    pub tps_mean: f64,
    pub tps_sd: f64,
    /// Mean time to first token (tests that generate); seconds.
    pub ttft_s_mean: Option<f64>,
    /// Highest MLX peak memory over the repetitions, bytes (weights included).
    pub peak_memory_bytes: u64,
    /// Mean host time per decode step (tests that decode): building its graph and submitting
    /// it (see [`engine::GenerationStats::decode_host_ms`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_host_ms: Option<HostMs>,
    pub mlx_version: String,
    pub vlmbench_version: &'static str,
    /// `VLMBENCH_KERNELS` and `VLMBENCH_PREFILL` in effect.
    pub kernels: String,
    pub prefill: &'static str,
    /// Tensor-parallel runs: every rank's figures (rank order), gathered by rank 0 over MLX.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranks: Option<Vec<RankFigures>>,
}

/// One rank's share of a tensor-parallel test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankFigures {
    pub rank: usize,
    pub tps_mean: f64,
    /// This rank's MLX peak memory, bytes (whole MiB: gathered as float32 MiB).
    pub peak_memory_bytes: u64,
}

/// Attaches every rank's tok/s and peak memory to `rows` (a collective: every rank of `group`
/// calls it once, after the same tests). The group's aggregate memory is their sum.
pub fn gather_rank_figures(
    group: &vlm_models::distributed::Group,
    rows: &mut [BenchRow],
) -> Result<()> {
    const MIB: f64 = (1u64 << 20) as f64;
    let mine: Vec<f32> = rows
        .iter()
        .flat_map(|r| [r.tps_mean as f32, (r.peak_memory_bytes as f64 / MIB) as f32])
        .collect();
    let all = group
        .all_gather(&mlx_rs::Array::from_slice(&mine, &[1, mine.len() as i32]))
        .context("gathering every rank's bench figures")?;
    mlx_rs::transforms::eval([&all]).context("gathering every rank's bench figures")?;
    let all: Vec<f32> = all.as_slice::<f32>().to_vec();
    let per_rank = mine.len();
    for (i, row) in rows.iter_mut().enumerate() {
        row.ranks = Some(
            all.chunks(per_rank)
                .enumerate()
                .map(|(rank, figures)| RankFigures {
                    rank,
                    tps_mean: figures[2 * i] as f64,
                    peak_memory_bytes: (figures[2 * i + 1] as f64 * MIB).round() as u64,
                })
                .collect(),
        );
    }
    Ok(())
}

struct Sample {
    tps: f64,
    ttft_s: Option<f64>,
    peak_memory_bytes: u64,
    decode_host_ms: Option<HostMs>,
}

/// The default device as results record it: "gpu:0 NVIDIA H100 80GB HBM3", "cpu:0".
pub fn device_description() -> String {
    runtime::default_device()
        .map(|d| {
            format!(
                "{}:{} {}",
                d.kind,
                d.index,
                d.property("device_name").unwrap_or("")
            )
            .trim()
            .to_owned()
        })
        .unwrap_or_default()
}

/// The names of the `VLMBENCH_KERNELS` and `VLMBENCH_PREFILL` choices in effect; the first
/// ends in `+int8` where `VLMBENCH_CPU_ACTIVATIONS=int8` changes the CPU's products.
pub fn kernel_choices() -> Result<(String, &'static str)> {
    use vlm_models::kernels::{cpu_activations_choice, kernels_choice, prefill_choice};
    let mut kernels = kernels_choice()?.name().to_owned();
    let activations = cpu_activations_choice()?;
    if activations != vlm_models::kernels::CpuActivations::Float32 {
        kernels = format!("{kernels}+{}", activations.name());
    }
    Ok((kernels, prefill_choice()?.name()))
}

/// Runs every test, calling `on_row` as each finishes (so long runs can write results as they go).
pub fn run(
    model: &LoadedModel,
    options: &BenchOptions,
    mut on_row: impl FnMut(&BenchRow) -> Result<()>,
) -> Result<Vec<BenchRow>> {
    anyhow::ensure!(options.repetitions > 0, "repetitions must be at least 1");
    anyhow::ensure!(
        !options.tests.is_empty(),
        "no tests to run: give -p/-n lengths or --test"
    );
    let device = device_description();
    let (kernels, prefill) = kernel_choices()?;
    let mut prompts = PromptIds::new(model, options.seed);
    let mut rows = Vec::new();
    for test in &options.tests {
        let image_prompt = match test {
            BenchTest::Image { .. } => {
                let image = options
                    .image
                    .as_ref()
                    .context("img+tgN tests need an image (--image)")?;
                Some(model.build_prompt(IMAGE_QUESTION, std::slice::from_ref(image))?)
            }
            _ => None,
        };
        if options.warmup {
            measure(model, test, &mut prompts, image_prompt.as_ref())?;
        }
        let samples: Vec<Sample> = (0..options.repetitions)
            .map(|_| measure(model, test, &mut prompts, image_prompt.as_ref()))
            .collect::<Result<_>>()?;
        let tps: Vec<f64> = samples.iter().map(|s| s.tps).collect();
        let (mean, sd) = mean_sd(&tps);
        let ttfts: Vec<f64> = samples.iter().filter_map(|s| s.ttft_s).collect();
        let host: Vec<HostMs> = samples.iter().filter_map(|s| s.decode_host_ms).collect();
        let (n_prompt, n_gen) = match *test {
            BenchTest::Prompt { n } => (n, 0),
            BenchTest::Generate { n } => (1, n),
            BenchTest::PromptGenerate { prompt, gen } => (prompt, gen),
            BenchTest::Image { gen } => (image_prompt.as_ref().map_or(0, |p| p.ids.len()), gen),
        };
        let row = BenchRow {
            ranks: None,
            model: model
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            model_size_bytes: weights_size(model),
            backend: runtime::backend(),
            device: device.clone(),
            dtype: dtype_name(model.dtype),
            test: test.name(),
            n_prompt,
            n_gen,
            tps_mean: mean,
            tps_sd: sd,
            tps_samples: tps,
            ttft_s_mean: (!ttfts.is_empty()).then(|| mean_sd(&ttfts).0),
            peak_memory_bytes: samples
                .iter()
                .map(|s| s.peak_memory_bytes)
                .max()
                .unwrap_or(0),
            decode_host_ms: (!host.is_empty()).then(|| HostMs {
                build: host.iter().map(|h| h.build).sum::<f64>() / host.len() as f64,
                submit: host.iter().map(|h| h.submit).sum::<f64>() / host.len() as f64,
            }),
            mlx_version: runtime::mlx_version(),
            vlmbench_version: env!("CARGO_PKG_VERSION"),
            kernels: kernels.clone(),
            prefill,
        };
        on_row(&row)?;
        rows.push(row);
    }
    Ok(rows)
}

fn measure(
    model: &LoadedModel,
    test: &BenchTest,
    prompts: &mut PromptIds,
    image_prompt: Option<&Prompt>,
) -> Result<Sample> {
    let _ = mlx_rs::memory::reset_peak_memory();
    let peak = || mlx_rs::memory::peak_memory().unwrap_or(0) as u64;
    match *test {
        BenchTest::Prompt { n } => {
            let ids = prompts.next(n);
            let mut decoder = model.decoder(default_prefill_step_size());
            let start = Instant::now();
            let logits = decoder.prefill(&ids)?;
            logits.eval()?;
            let seconds = start.elapsed().as_secs_f64();
            Ok(Sample {
                tps: n as f64 / seconds,
                ttft_s: None,
                peak_memory_bytes: peak(),
                decode_host_ms: None,
            })
        }
        BenchTest::Generate { n } => {
            let g = generate_exactly(model, &ids_prompt(prompts.next(1)), n)?;
            Ok(Sample {
                tps: g.decode_tps,
                ttft_s: Some(g.time_to_first_token_s),
                peak_memory_bytes: peak(),
                decode_host_ms: g.decode_host_ms,
            })
        }
        BenchTest::PromptGenerate { prompt, gen } => {
            let g = generate_exactly(model, &ids_prompt(prompts.next(prompt)), gen)?;
            Ok(Sample {
                tps: (prompt + gen) as f64 / g.total_s,
                ttft_s: Some(g.time_to_first_token_s),
                peak_memory_bytes: peak(),
                decode_host_ms: g.decode_host_ms,
            })
        }
        BenchTest::Image { gen } => {
            let prompt = image_prompt.context("img+tgN tests need an image")?;
            let g = generate_exactly(model, prompt, gen)?;
            Ok(Sample {
                tps: prompt.ids.len() as f64 / g.time_to_first_token_s,
                ttft_s: Some(g.time_to_first_token_s),
                peak_memory_bytes: peak(),
                decode_host_ms: g.decode_host_ms,
            })
        }
    }
}

fn ids_prompt(ids: Vec<u32>) -> Prompt {
    Prompt {
        ids,
        ..Default::default()
    }
}

fn generate_exactly(
    model: &LoadedModel,
    prompt: &Prompt,
    n: usize,
) -> Result<engine::GenerationStats> {
    let mut sampler = Sampler::greedy();
    let options = GenerateOptions::exactly(n);
    let mut decoder = model.decoder(default_prefill_step_size());
    Ok(
        engine::generate_prompt(decoder.as_mut(), prompt, &mut sampler, &options, |_| Ok(()))?
            .stats,
    )
}

/// Mean and sample standard deviation (0 for one sample).
pub fn mean_sd(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
    (mean, var.sqrt())
}

/// Total bytes of the checkpoint's safetensors files.
fn weights_size(model: &LoadedModel) -> u64 {
    std::fs::read_dir(&model.dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Seeded random prompts of ordinary (non-special) token ids.
pub(crate) struct PromptIds {
    state: u64,
    vocab: u32,
    special: std::collections::HashSet<u32>,
}

impl PromptIds {
    pub(crate) fn new(model: &LoadedModel, seed: u64) -> Self {
        let special = model
            .tokenizer
            .inner()
            .get_added_tokens_decoder()
            .keys()
            .copied()
            .collect();
        PromptIds {
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
            vocab: model.vocab_size() as u32,
            special,
        }
    }

    /// SplitMix64: small, seedable, good enough to pick token ids.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn next(&mut self, n: usize) -> Vec<u32> {
        let mut ids = Vec::with_capacity(n);
        while ids.len() < n {
            let id = (self.next_u64() % self.vocab as u64) as u32;
            if !self.special.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }
}

/// Lets tests build rows without a model.
#[cfg(test)]
pub(crate) fn row_for_tests(test: &str, samples: Vec<f64>) -> BenchRow {
    let (tps_mean, tps_sd) = mean_sd(&samples);
    BenchRow {
        ranks: None,
        model: "tiny".into(),
        model_size_bytes: 1 << 20,
        backend: "cpu",
        device: "cpu:0".into(),
        dtype: "float32",
        test: test.into(),
        n_prompt: 512,
        n_gen: 0,
        tps_samples: samples,
        tps_mean,
        tps_sd,
        ttft_s_mean: None,
        peak_memory_bytes: 3 << 20,
        decode_host_ms: None,
        mlx_version: "0.32.2".into(),
        vlmbench_version: "0.1.0",
        kernels: "gemv".into(),
        prefill: "mlx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_sd() {
        let (m, sd) = mean_sd(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(m, 5.0);
        assert!((sd - 2.138_089_935).abs() < 1e-6);
        assert_eq!(mean_sd(&[3.0]), (3.0, 0.0));
    }
}
