//! The sampling flags every generating command shares, and the sampler they build.

use anyhow::Result;
use clap::Args;
use vlm_models::generation_config::SamplingOverrides;
use vlm_models::model::LoadedModel;
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
        let overrides = SamplingOverrides { temperature: self.temperature, top_p: self.top_p, top_k: self.top_k };
        let sampler = Sampler::new(model.generation.sampling(overrides), self.seed)?;
        sampler.check_vocab(model.vocab_size())?;
        Ok(sampler)
    }
}

