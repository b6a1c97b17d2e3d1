//! The sampling flags every generating command shares, and the sampler they build.

use anyhow::{bail, Result};
use clap::Args;
use vlm_models::generation_config::SamplingOverrides;
use vlm_models::model::LoadedModel;
use vlm_models::moondream2::sampling::TextSettings;
use vlm_models::sampling::Sampler;

#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 is greedy. Default: the checkpoint's generation_config, like mlx-vlm.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass. Default: the checkpoint's.
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Keep only the k most likely tokens. Default: the checkpoint's.
    #[arg(long)]
    pub top_k: Option<u32>,
    /// Seed for sampling (reproducible draws).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    /// The sampler for `model`: its generation_config with these flags on top.
    pub fn sampler(&self, model: &LoadedModel) -> Result<Sampler> {
        let overrides = SamplingOverrides {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
        };
        let sampler = Sampler::new(model.generation.sampling(overrides), self.seed)?;
        sampler.check_vocab(model.vocab_size())?;
        Ok(sampler)
    }
}

impl SamplingArgs {
    /// Moondream2's caption/query settings: the reference's sampling (temperature 0.5, top-p
    /// 0.3) unless the flags say otherwise (`--temperature 0`: greedy), at most `max_tokens`.
    pub fn moondream_settings(&self, max_tokens: usize) -> Result<TextSettings> {
        if self.top_k.is_some() {
            bail!("--top-k: Moondream2's sampler has no top-k (use --temperature and --top-p)");
        }
        let reference = TextSettings::default();
        Ok(TextSettings {
            temperature: self.temperature.map_or(reference.temperature, |t| t as f32),
            top_p: self.top_p.map_or(reference.top_p, |p| p as f32),
            max_tokens,
            seed: self.seed,
        })
    }
}
