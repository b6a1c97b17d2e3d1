//! A dataset split's parquet shards from the Hugging Face hub (`--hub`), through hf-hub and the same
//! cache and environment (`HF_HUB_OFFLINE`, `HF_HUB_CACHE`, `HF_ENDPOINT`, `HF_TOKEN`) as models.
//! Shards are downloaded one at a time as the stream reaches them: the notebook's samples sit in the
//! first shard, so the rest are never fetched.

use std::path::PathBuf;

use anyhow::{Context, Result};
use hf_hub::api::sync::{ApiBuilder, ApiRepo};
use hf_hub::{Repo, RepoType};
use vlm_models::hub::{ResolveOptions, DEFAULT_ENDPOINT};

/// The shard files of `split` in dataset `repo`, in order, fetched lazily.
pub fn hub_shards(repo: &str, split: &str) -> Result<Box<dyn Iterator<Item = Result<PathBuf>>>> {
    let opts = ResolveOptions::from_env();
    let cache_dir = opts
        .cache_dir
        .clone()
        .context("cannot place the hub cache: set HF_HUB_CACHE or HOME")?;
    let dataset = Repo::new(repo.to_string(), RepoType::Dataset);
    if opts.offline {
        // The cached snapshot of `main`, read like a local directory.
        let folder = cache_dir.join(dataset.folder_name());
        let commit =
            std::fs::read_to_string(folder.join("refs").join("main")).with_context(|| {
                format!(
                    "dataset {repo} is not in the hub cache {} (offline)",
                    cache_dir.display()
                )
            })?;
        let snapshot = folder.join("snapshots").join(commit.trim());
        let files = super::parquet_rows::shard_files(&snapshot, split)?;
        return Ok(Box::new(files.into_iter().map(Ok)));
    }
    let endpoint = opts
        .endpoint
        .clone()
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let api = ApiBuilder::from_cache(hf_hub::Cache::new(cache_dir))
        .with_endpoint(endpoint.trim_end_matches('/').to_string())
        .with_token(opts.token.clone())
        .with_progress(true)
        .with_retries(3)
        .build()
        .with_context(|| format!("cannot set up the hub client for dataset {repo}"))?;
    let api_repo: ApiRepo = api.repo(dataset);
    let info = api_repo
        .info()
        .with_context(|| format!("cannot list dataset {repo} on {endpoint}"))?;
    let prefix = format!("data/{split}-");
    let mut names: Vec<String> = info
        .siblings
        .iter()
        .map(|s| s.rfilename.clone())
        .filter(|n| n.starts_with(&prefix) && n.ends_with(".parquet"))
        .collect();
    names.sort();
    anyhow::ensure!(
        !names.is_empty(),
        "dataset {repo} has no {prefix}*.parquet files"
    );
    let repo_name = repo.to_string();
    Ok(Box::new(names.into_iter().map(move |name| {
        api_repo
            .get(&name)
            .with_context(|| format!("cannot download {name} of dataset {repo_name}"))
    })))
}
