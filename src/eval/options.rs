//! What one evaluation is asked to do ([`EvalOptions`]) and where it runs ([`Host`]): the
//! settings the single-process run ([`super::session`]) and the sharded one share.

use std::path::PathBuf;

use anyhow::Result;
use vlm_models::distributed::Backend;
use vlm_models::dtype::DtypeChoice;
use vlm_models::model::LoadedModel;
use vlm_models::sampling::Sampler;

use super::progress::Progress;
use super::run_log::RunLog;
use crate::engine::GenerateOptions;
use crate::model_source;

/// Where the dataset comes from.
#[derive(Clone, Debug)]
pub enum DataSource {
    /// A directory of parquet shards (HF layout or flat).
    Dir(PathBuf),
    /// The notebook's dataset repo on the hub, through hf-hub and its cache.
    Hub,
}

#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub model: Option<String>,
    pub dtype: DtypeChoice,
    pub data: DataSource,
    pub n: usize,
    pub out: PathBuf,
    pub resume: bool,
    pub max_tokens: usize,
    /// Run as one rank of an MLX distributed group, on its share of the samples (rank 0 merges).
    pub distributed: Option<Backend>,
}

/// The notebook's generation: greedy (mlx-vlm 0.4.4's default temperature 0), stopping at the
/// model's stop tokens.
pub(super) fn load_model(o: &EvalOptions, announce: bool) -> Result<LoadedModel> {
    Ok(model_source::load_as(o.model.as_deref(), o.dtype, announce)?.model)
}

/// Where an evaluation runs when it is part of something bigger (the notebook): on a model that is
/// already loaded (possibly one rank's share of a tensor-parallel model), and without a word on
/// the non-zero ranks of such a group (they compute in step with rank 0, into a scratch --out).
#[derive(Clone, Copy, Default)]
pub struct Host<'a> {
    pub model: Option<&'a LoadedModel>,
    pub quiet: bool,
}

/// Runs `samples` at `positions` on the host's model or on `o.model`, loaded now.
#[allow(clippy::too_many_arguments)]
pub(super) fn with_model<E, S>(
    host: Host,
    o: &EvalOptions,
    announce: bool,
    samples: &[E],
    positions: &[usize],
    done: Vec<S>,
    log: &mut RunLog,
    progress: Progress,
    run_shard: impl FnOnce(
        &LoadedModel,
        &[E],
        &[usize],
        Vec<S>,
        &mut RunLog,
        &mut Sampler,
        &GenerateOptions,
        Progress,
    ) -> Result<Vec<S>>,
) -> Result<Vec<S>> {
    let owned;
    let model = match host.model {
        Some(m) => m,
        None => {
            owned = load_model(o, announce)?;
            &owned
        }
    };
    let options = GenerateOptions::until_stop(model, o.max_tokens);
    run_shard(
        model,
        samples,
        positions,
        done,
        log,
        &mut Sampler::greedy(),
        &options,
        progress,
    )
}
