//! Turning a `--model` argument into a loaded model: a local checkpoint directory, a Hugging Face
//! repo id (cache, offline mode, download through hf-hub), or, with no `--model`, the built-in
//! tiny checkpoint (random weights, written once into the cache by `make-tiny`'s code) so that
//! everything runs offline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use mlx_rs::Dtype;
use vlm_models::distributed::{Backend, Group};
use vlm_models::dtype::DtypeChoice;
use vlm_models::hub::{resolve_model, ModelSource, ResolveOptions};
use vlm_models::model::LoadedModel;
use vlm_models::tiny_checkpoint::{write_tiny_checkpoint, TinyVariant};

/// The `--model` value that names the built-in checkpoint explicitly.
pub const BUILT_IN: &str = "builtin:tiny";

pub struct Resolved {
    pub model: LoadedModel,
    /// What the user asked for, for reports.
    pub spec: String,
    /// True for the built-in tiny checkpoint: outputs come from random weights.
    pub random_weights: bool,
    pub load_s: f64,
}

/// Where the built-in checkpoint lives: `$VLMBENCH_CACHE_DIR/tiny/gemma4-dense-seed0` (same cache as the MLX wheel).
pub fn built_in_dir() -> Result<PathBuf> {
    let cache = std::env::var_os("VLMBENCH_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("vlmbench")))
        .or_else(|| dirs_home().map(|h| h.join(".cache").join("vlmbench")))
        .context("cannot place the built-in model: set VLMBENCH_CACHE_DIR")?;
    Ok(cache.join("tiny").join("gemma4-dense-seed0"))
}

fn dirs_home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// What `make-tiny` writes at the top of its README.md (models/src/tiny_checkpoint/side_files.rs).
const MAKE_TINY_MARK: &str = "Written by `vlmbench make-tiny`. The weights are random";

/// Whether `dir` holds a checkpoint `make-tiny` wrote (random weights).
pub fn written_by_make_tiny(dir: &std::path::Path) -> bool {
    std::fs::read_to_string(dir.join("README.md"))
        .is_ok_and(|readme| readme.contains(MAKE_TINY_MARK))
}

/// The checkpoint directory for `spec` (None: the built-in one, written if missing), and whether
/// its weights are random.
pub fn checkpoint_dir(spec: Option<&str>) -> Result<(PathBuf, bool)> {
    match spec {
        None | Some(BUILT_IN) => {
            let dir = built_in_dir()?;
            if !dir.join("model.safetensors").exists() {
                write_tiny_checkpoint(&dir, TinyVariant::Dense, 0).with_context(|| {
                    format!(
                        "cannot write the built-in tiny model into {}",
                        dir.display()
                    )
                })?;
            }
            Ok((dir, true))
        }
        Some(spec) => {
            let resolved = resolve_model(spec, &ResolveOptions::from_env())?;
            if let ModelSource::Downloaded { files, .. } = &resolved.source {
                eprintln!(
                    "downloaded {} files of {spec} into {}",
                    files.len(),
                    resolved.dir.display()
                );
            }
            let random = written_by_make_tiny(&resolved.dir);
            Ok((resolved.dir, random))
        }
    }
}

/// Resolves and loads `spec` in the dtype `choice` resolves to on the default device; prints a
/// banner to stderr when the outputs will come from random weights.
pub fn load(spec: Option<&str>, choice: DtypeChoice) -> Result<Resolved> {
    load_as(spec, choice, true)
}

/// [`load`], with the random-weights banner only when `announce` (a sharded evaluation's
/// non-zero ranks load silently: rank 0 speaks for the group).
pub fn load_as(spec: Option<&str>, choice: DtypeChoice, announce: bool) -> Result<Resolved> {
    let dtype: Dtype = choice.resolve(&mlx_rs::Device::try_default()?);
    let (dir, random_weights) = checkpoint_dir(spec)?;
    let shown = spec.unwrap_or(BUILT_IN).to_owned();
    if !announce {
    } else if random_weights && matches!(spec, None | Some(BUILT_IN)) {
        eprintln!(
            "note: no --model given: using the built-in tiny Gemma 4 checkpoint ({}). Its weights are RANDOM: \
             outputs are gibberish and timings say nothing about real models. Pass --model mlx-community/... or a directory.",
            dir.display()
        );
    } else if random_weights {
        eprintln!("note: {shown} was written by make-tiny: its weights are RANDOM, its outputs gibberish.");
    }
    let started = Instant::now();
    let model =
        LoadedModel::load(&dir, dtype).with_context(|| format!("cannot load model {shown}"))?;
    Ok(Resolved {
        model,
        spec: shown,
        random_weights,
        load_s: started.elapsed().as_secs_f64(),
    })
}

/// `--tensor-parallel`: joins the MLX distributed group of `backend` (MLX's environment
/// conventions, docs/distributed.md), then loads this rank's shard of `spec`. Rank 0 alone writes
/// the built-in checkpoint or downloads a repo, the others wait for it at a barrier; only rank 0
/// prints notes. Every rank must be started with the same arguments.
pub fn load_tensor_parallel(
    spec: Option<&str>,
    choice: DtypeChoice,
    backend: Backend,
) -> Result<(Resolved, Arc<Group>)> {
    let group = Group::init(backend).context(
        "--tensor-parallel: this process cannot join its group (see docs/distributed.md)",
    )?;
    let group = Arc::new(group);
    let dtype: Dtype = choice.resolve(&mlx_rs::Device::try_default()?);
    let leader = group.rank() == 0;
    let found = if leader {
        Some(checkpoint_dir(spec))
    } else {
        None
    };
    // Whatever rank 0 found, the others must not race it to write or download the same files.
    group
        .barrier()
        .context("--tensor-parallel: waiting for rank 0 to prepare the checkpoint")?;
    let (dir, random_weights) = match found {
        Some(found) => found?,
        None => checkpoint_dir(spec)?,
    };
    let shown = spec.unwrap_or(BUILT_IN).to_owned();
    if leader && random_weights {
        eprintln!(
            "note: {} has RANDOM weights (make-tiny): outputs are gibberish.",
            dir.display()
        );
    }
    let started = Instant::now();
    let model =
        LoadedModel::load_tensor_parallel(&dir, dtype, group.clone()).with_context(|| {
            format!(
                "cannot load rank {} of {} of model {shown}",
                group.rank(),
                group.size()
            )
        })?;
    let resolved = Resolved {
        model,
        spec: shown,
        random_weights,
        load_s: started.elapsed().as_secs_f64(),
    };
    Ok((resolved, group))
}
