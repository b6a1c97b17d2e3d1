//! Resolving a `--model` argument to a local checkpoint directory: an existing directory, or a
//! Hugging Face repo id (`org/name` or `org/name@revision`) looked up in the HF cache and, unless
//! offline, completed through hf-hub's blocking client.
//!
//! The cache layout is the one Python's `huggingface_hub` writes, so checkpoints fetched by mlx-vlm
//! or `hf download` are found here and ours are found there:
//! `<cache>/models--org--name/refs/<revision>` holds a commit hash, and
//! `snapshots/<commit>/<file>` links to `blobs/<etag>`.
//!
//! Everything the environment decides is read once, by [`ResolveOptions::from_env`]; resolution
//! itself reads no variables, so callers (and tests) can drive it entirely through the options.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

/// Files every checkpoint needs besides its weights.
pub const REQUIRED_FILES: &[&str] = &["config.json", "tokenizer.json", "tokenizer_config.json"];
/// Files fetched when the repo has them; a cached snapshot lacking them still counts as complete,
/// since without the network we cannot tell "absent from the repo" from "not downloaded".
pub const OPTIONAL_FILES: &[&str] = &[
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "special_tokens_map.json",
];
pub const WEIGHTS: &str = "model.safetensors";
pub const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How to resolve a repo id. [`ResolveOptions::from_env`] fills it the way `huggingface_hub` does.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Use the cache only, never the network (`HF_HUB_OFFLINE`, or a CLI `--offline`).
    pub offline: bool,
    /// The hub cache holding the `models--org--name` folders. `None`: `~/.cache/huggingface/hub`.
    pub cache_dir: Option<PathBuf>,
    /// Hub base URL (`HF_ENDPOINT`); `None`: [`DEFAULT_ENDPOINT`].
    pub endpoint: Option<String>,
    /// Bearer token for gated or private repos (`HF_TOKEN`, else the token file `hf auth login` writes).
    pub token: Option<String>,
    /// Draw download progress bars on stderr. Off by default: a library should not write to the terminal.
    pub progress: bool,
}

impl ResolveOptions {
    /// Options from `HF_HUB_OFFLINE`, `HF_HUB_CACHE`, `HF_HOME`, `XDG_CACHE_HOME`, `HF_ENDPOINT`,
    /// `HF_TOKEN` and `HF_TOKEN_PATH`; the CLI may then override fields (e.g. set `offline`).
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok(), dirs::home_dir())
    }

    /// [`from_env`](Self::from_env) over any variable lookup; empty values count as unset.
    fn from_vars(var: impl Fn(&str) -> Option<String>, home: Option<PathBuf>) -> Self {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        let path = |v: String| expand_tilde(&v, home.as_deref()).unwrap_or_else(|| v.into());
        // huggingface_hub's constants: HF_HOME defaults to $XDG_CACHE_HOME/huggingface or
        // ~/.cache/huggingface, and the hub cache to $HF_HOME/hub unless HF_HUB_CACHE says otherwise.
        let hf_home = var("HF_HOME").map(path).or_else(|| {
            let xdg = var("XDG_CACHE_HOME")
                .map(path)
                .or_else(|| home.as_ref().map(|h| h.join(".cache")));
            xdg.map(|c| c.join("huggingface"))
        });
        let cache_dir = var("HF_HUB_CACHE")
            .map(path)
            .or_else(|| hf_home.as_ref().map(|h| h.join("hub")));
        let token_file = var("HF_TOKEN_PATH")
            .map(path)
            .or_else(|| hf_home.as_ref().map(|h| h.join("token")));
        let token = var("HF_TOKEN").or_else(|| {
            let t = std::fs::read_to_string(token_file?).ok()?;
            Some(t.trim().to_string()).filter(|t| !t.is_empty())
        });
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            ["1", "on", "yes", "true"].contains(&v.trim().to_ascii_lowercase().as_str())
        });
        ResolveOptions {
            offline,
            cache_dir,
            endpoint: var("HF_ENDPOINT"),
            token,
            progress: false,
        }
    }
}

/// A checkpoint directory and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    pub dir: PathBuf,
    pub source: ModelSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The spec was a directory.
    Local,
    /// Found complete in the HF cache; nothing was fetched.
    Cache {
        repo: String,
        revision: String,
        commit: String,
    },
    /// Completed from the hub; `files` are the ones fetched this time.
    Downloaded {
        repo: String,
        revision: String,
        commit: String,
        files: Vec<String>,
    },
}

/// Why a model spec could not be resolved. Every message is one line that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("'{spec}' is neither an existing directory nor a Hugging Face repo id (expected org/name or org/name@revision)")]
    InvalidSpec { spec: String },
    #[error("no such directory: {}{}", path.display(), existing.as_ref().map(|e| format!(" (the deepest part that exists is {})", e.display())).unwrap_or_default())]
    NoSuchDirectory {
        path: PathBuf,
        existing: Option<PathBuf>,
    },
    #[error("{} is not a directory: pass a checkpoint directory or an org/name repo id", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{} is not a model checkpoint: it has no {}", dir.display(), missing.join(", "))]
    NotACheckpoint { dir: PathBuf, missing: Vec<String> },
    #[error(
        "cannot find the home directory for {what}; pass an absolute path or set HF_HUB_CACHE"
    )]
    NoHome { what: String },
    #[error("{repo}@{revision} is {cached}; offline mode (HF_HUB_OFFLINE or --offline) allows no download: run once with network access to fetch it, or pass a local checkpoint directory")]
    NotCached {
        repo: String,
        revision: String,
        cached: Box<CacheState>,
    },
    #[error("cannot reach {endpoint} for {repo}@{revision} ({detail}), and it is {cached}; fetch it once with network access, or pass a local checkpoint directory (HF_HUB_OFFLINE=1 then uses the cache only)")]
    Network {
        repo: String,
        revision: String,
        endpoint: String,
        detail: String,
        cached: Box<CacheState>,
    },
    #[error("{endpoint} answered HTTP {status} for {repo}@{revision} ({what}): {}", http_hint(*status))]
    Http {
        repo: String,
        revision: String,
        endpoint: String,
        status: u16,
        what: String,
    },
    #[error("{repo}@{commit} on the hub lacks {}: not a loadable checkpoint", missing.join(", "))]
    RepoIncomplete {
        repo: String,
        commit: String,
        missing: Vec<String>,
    },
    #[error("bad weight index {}: {detail}", path.display())]
    BadIndex { path: PathBuf, detail: String },
    #[error("downloading {file} of {repo} failed: {detail}")]
    Download {
        repo: String,
        file: String,
        detail: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the cache held for a repo revision that could not be completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheState {
    /// `<cache>/models--org--name`, where the revision was looked up.
    pub repo_dir: PathBuf,
    /// The revision's snapshot directory, when the cache has one.
    pub snapshot: Option<PathBuf>,
    /// Files the snapshot lacks (empty without a snapshot).
    pub missing: Vec<String>,
}

impl std::fmt::Display for CacheState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.snapshot {
            None => write!(
                f,
                "not in the HF cache (no snapshot for this revision under {})",
                self.repo_dir.display()
            ),
            Some(s) => write!(
                f,
                "incomplete in the HF cache ({} lacks {})",
                s.display(),
                self.missing.join(", ")
            ),
        }
    }
}

fn http_hint(status: u16) -> &'static str {
    match status {
        401 => {
            "the repo does not exist, or it is private or gated and needs a token (set HF_TOKEN)"
        }
        403 => {
            "the token may not access this repo (accept its license on the hub, or check HF_TOKEN)"
        }
        404 => "no such repo, revision or file",
        _ => "the hub refused the request",
    }
}

/// Resolves `spec` to a checkpoint directory:
/// - an existing directory (`~` expanded) is used as it is, if it has a `config.json`;
/// - a spec that only a path could be (`.`, `/`, `~` or `\` first, or more than one `/` before
///   any `@`) and does not exist is [`HubError::NoSuchDirectory`];
/// - `org/name[@revision]` (revision `main` by default) is looked up in the cache; when the
///   snapshot lacks required files, they are downloaded unless `opts.offline`.
pub fn resolve_model(spec: &str, opts: &ResolveOptions) -> Result<ResolvedModel, HubError> {
    let home = dirs::home_dir();
    let path = if spec.starts_with('~') {
        expand_tilde(spec, home.as_deref()).ok_or_else(|| HubError::NoHome {
            what: spec.to_string(),
        })?
    } else {
        PathBuf::from(spec)
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => return local(path),
        Ok(_) => return Err(HubError::NotADirectory { path }),
        Err(_) => {}
    }
    if looks_like_path(spec) {
        let existing = path
            .ancestors()
            .skip(1)
            .find(|a| !a.as_os_str().is_empty() && a.is_dir())
            .map(Path::to_path_buf);
        return Err(HubError::NoSuchDirectory { path, existing });
    }
    let (repo, revision) = parse_repo_id(spec).ok_or_else(|| HubError::InvalidSpec {
        spec: spec.to_string(),
    })?;
    let cache_dir = match &opts.cache_dir {
        Some(c) => c.clone(),
        None => home
            .ok_or_else(|| HubError::NoHome {
                what: "the default HF cache".into(),
            })?
            .join(".cache/huggingface/hub"),
    };
    from_hub(repo, revision, &cache_dir, opts)
}

fn local(dir: PathBuf) -> Result<ResolvedModel, HubError> {
    if !dir.join("config.json").is_file() {
        return Err(HubError::NotACheckpoint {
            dir,
            missing: vec!["config.json".into()],
        });
    }
    Ok(ResolvedModel {
        dir,
        source: ModelSource::Local,
    })
}

fn expand_tilde(s: &str, home: Option<&Path>) -> Option<PathBuf> {
    match s.strip_prefix('~') {
        Some("") => home.map(Path::to_path_buf),
        Some(rest) if rest.starts_with(['/', std::path::MAIN_SEPARATOR]) => {
            Some(home?.join(&rest[1..]))
        }
        _ => Some(PathBuf::from(s)), // `~user` is left alone, as a plain name
    }
}

/// A spec no repo id could take: relative or absolute path syntax, or more than the one `org/name` slash.
fn looks_like_path(spec: &str) -> bool {
    let id = spec.split('@').next().unwrap_or(spec);
    spec.starts_with(['.', '/', '~', '\\'])
        || Path::new(spec).is_absolute()
        || spec.contains('\\') // Windows separators; never part of a repo id
        || id.matches('/').count() > 1
}

/// `org/name[@revision]` with the hub's name rules (which also keep the `--` cache folder names unambiguous).
fn parse_repo_id(spec: &str) -> Option<(&str, &str)> {
    let (id, revision) = spec.split_once('@').unwrap_or((spec, "main"));
    let (org, name) = id.split_once('/')?;
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !p.contains("--")
            && !p.contains("..")
            && !p.starts_with(['-', '.'])
            && !p.ends_with(['-', '.'])
    };
    // Revisions may hold slashes (`refs/pr/1`) but must stay inside refs/ when used as a path.
    let rev_ok = !revision.is_empty()
        && !revision.starts_with('/')
        && revision
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && !revision.chars().any(|c| c.is_whitespace() || c == '\\');
    (part_ok(org) && part_ok(name) && rev_ok).then_some((id, revision))
}

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit a cached revision points at: `refs/<revision>`, or the revision itself when it is a
/// commit hash with a snapshot (Python's `huggingface_hub` writes no ref for those).
fn cached_commit(repo_dir: &Path, revision: &str) -> Option<String> {
    if let Ok(s) = std::fs::read_to_string(repo_dir.join("refs").join(revision)) {
        let commit = s.trim();
        // Used as a path component below, so it must be a bare hash.
        return commit
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| commit.to_string())
            .filter(|c| !c.is_empty());
    }
    (is_commit_hash(revision) && repo_dir.join("snapshots").join(revision).is_dir())
        .then(|| revision.to_string())
}

/// The shard files a `model.safetensors.index.json` names, deduplicated and sorted.
fn index_shards(index: &Path) -> Result<Vec<String>, HubError> {
    let bad = |detail: String| HubError::BadIndex {
        path: index.to_path_buf(),
        detail,
    };
    let text = std::fs::read_to_string(index).map_err(|e| bad(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no weight_map object".into()))?;
    let mut shards = BTreeSet::new();
    for v in map.values() {
        let s = v
            .as_str()
            .ok_or_else(|| bad(format!("non-string shard name {v}")))?;
        // Shard names become paths in the snapshot and URLs on the hub: keep them inside the repo.
        if s.is_empty()
            || s.starts_with('/')
            || s.contains('\\')
            || s.split('/').any(|c| c == ".." || c.is_empty())
        {
            return Err(bad(format!(
                "shard name '{s}' leaves the checkpoint directory"
            )));
        }
        shards.insert(s.to_string());
    }
    if shards.is_empty() {
        return Err(bad("weight_map is empty".into()));
    }
    Ok(shards.into_iter().collect())
}

/// What `dir` lacks to be a complete checkpoint (optional files aside).
fn missing_files(dir: &Path) -> Result<Vec<String>, HubError> {
    let mut missing: Vec<String> = REQUIRED_FILES
        .iter()
        .filter(|f| !dir.join(f).exists())
        .map(|f| f.to_string())
        .collect();
    if dir.join(WEIGHTS_INDEX).exists() {
        missing.extend(
            index_shards(&dir.join(WEIGHTS_INDEX))?
                .into_iter()
                .filter(|s| !dir.join(s).exists()),
        );
    } else if !dir.join(WEIGHTS).exists() {
        missing.push(format!("{WEIGHTS} (or {WEIGHTS_INDEX})"));
    }
    Ok(missing)
}

fn from_hub(
    repo: &str,
    revision: &str,
    cache_dir: &Path,
    opts: &ResolveOptions,
) -> Result<ResolvedModel, HubError> {
    let cache = Cache::new(cache_dir.to_path_buf());
    let model = |rev: &str| Repo::with_revision(repo.to_string(), RepoType::Model, rev.to_string());
    // The cache first, online or not: a complete snapshot needs no network round trip.
    let cached = match cached_snapshot(&cache, repo, revision)? {
        Ok(resolved) => return Ok(resolved),
        Err(state) => state,
    };
    if opts.offline {
        return Err(HubError::NotCached {
            repo: repo.into(),
            revision: revision.into(),
            cached: Box::new(cached),
        });
    }
    let endpoint = opts
        .endpoint
        .as_deref()
        .unwrap_or(DEFAULT_ENDPOINT)
        .trim_end_matches('/')
        .to_string();
    let fail = |file: &str, e: ApiError| classify(e, file, repo, revision, &endpoint, &cached);
    let api = ApiBuilder::from_cache(cache.clone())
        .with_endpoint(endpoint.clone())
        .with_token(opts.token.clone())
        .with_progress(opts.progress)
        .with_retries(3) // resumes an interrupted shard from its .part file
        .build()
        .map_err(|e| fail("client setup", e))?;

    // One listing call: the commit the revision points at now, and which files the repo has.
    let info = api
        .repo(model(revision))
        .info()
        .map_err(|e| fail("repo listing", e))?;
    let commit = info.sha;
    if !is_commit_hash(&commit) {
        return Err(HubError::Download {
            repo: repo.into(),
            file: "repo listing".into(),
            detail: format!("unexpected commit '{commit}'"),
        });
    }
    let listed: BTreeSet<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    let (weights, wanted) = wanted_files(&listed, repo, &commit)?;

    // Pinned to the listed commit so every file lands in the same snapshot even if the branch moves meanwhile.
    let pinned = api.repo(model(&commit));
    let dir = cache.repo(model(&commit)).pointer_path(&commit);
    let commit_ref = cached.repo_dir.join("refs").join(&commit);
    let had_commit_ref = commit_ref.exists();
    let mut fetched = Vec::new();
    let mut fetch = |f: &str| -> Result<(), HubError> {
        if !dir.join(f).exists() {
            pinned.download(f).map_err(|e| fail(f, e))?;
            fetched.push(f.to_string());
        }
        Ok(())
    };
    for f in &wanted {
        fetch(f)?;
    }
    if weights == WEIGHTS_INDEX {
        let shards = index_shards(&dir.join(WEIGHTS_INDEX))?;
        require_listed(&listed, &shards, repo, &commit)?;
        for s in &shards {
            fetch(s)?;
        }
    }
    finish_refs(
        &cache,
        model(revision),
        &commit,
        &commit_ref,
        had_commit_ref,
    )?;
    let (repo, revision) = (repo.into(), revision.into());
    let source = if fetched.is_empty() {
        ModelSource::Cache {
            repo,
            revision,
            commit,
        }
    } else {
        ModelSource::Downloaded {
            repo,
            revision,
            commit,
            files: fetched,
        }
    };
    Ok(ResolvedModel { dir, source })
}

/// The revision's snapshot from the cache when it is complete (`Ok`), else what the cache holds.
fn cached_snapshot(
    cache: &Cache,
    repo: &str,
    revision: &str,
) -> Result<Result<ResolvedModel, CacheState>, HubError> {
    let model = |rev: &str| Repo::with_revision(repo.to_string(), RepoType::Model, rev.to_string());
    let repo_dir = cache.path().join(model(revision).folder_name());
    let Some(commit) = cached_commit(&repo_dir, revision) else {
        return Ok(Err(CacheState {
            repo_dir,
            snapshot: None,
            missing: Vec::new(),
        }));
    };
    let dir = cache.repo(model(&commit)).pointer_path(&commit);
    let missing = missing_files(&dir)?;
    if missing.is_empty() {
        let source = ModelSource::Cache {
            repo: repo.into(),
            revision: revision.into(),
            commit,
        };
        return Ok(Ok(ResolvedModel { dir, source }));
    }
    Ok(Err(CacheState {
        repo_dir,
        snapshot: Some(dir),
        missing,
    }))
}

/// hf-hub's error for `file`, classified: transport failures, the hub's answers, local trouble.
fn classify(
    e: ApiError,
    file: &str,
    repo: &str,
    revision: &str,
    endpoint: &str,
    cached: &CacheState,
) -> HubError {
    let e = match e {
        ApiError::TooManyRetries(inner) => *inner,
        e => e,
    };
    match e {
        ApiError::RequestError(err) => match *err {
            ureq::Error::StatusCode(status) => HubError::Http {
                repo: repo.into(),
                revision: revision.into(),
                endpoint: endpoint.into(),
                status,
                what: file.into(),
            },
            err => HubError::Network {
                repo: repo.into(),
                revision: revision.into(),
                endpoint: endpoint.into(),
                detail: err.to_string(),
                cached: Box::new(cached.clone()),
            },
        },
        e => HubError::Download {
            repo: repo.into(),
            file: file.into(),
            detail: e.to_string(),
        },
    }
}

/// The weights file the listing has (the sharded index, else one file) and every file to
/// fetch: the required ones (an error naming those the listing lacks) and the optional ones
/// it has.
fn wanted_files(
    listed: &BTreeSet<&str>,
    repo: &str,
    commit: &str,
) -> Result<(&'static str, Vec<String>), HubError> {
    let weights = if listed.contains(WEIGHTS_INDEX) {
        WEIGHTS_INDEX
    } else {
        WEIGHTS
    };
    let mut wanted: Vec<String> = REQUIRED_FILES
        .iter()
        .chain([&weights])
        .map(|f| f.to_string())
        .collect();
    require_listed(listed, &wanted, repo, commit)?;
    wanted.extend(
        OPTIONAL_FILES
            .iter()
            .filter(|f| listed.contains(*f))
            .map(|f| f.to_string()),
    );
    Ok((weights, wanted))
}

/// An error naming the `files` the repo listing lacks, if any.
fn require_listed(
    listed: &BTreeSet<&str>,
    files: &[String],
    repo: &str,
    commit: &str,
) -> Result<(), HubError> {
    let absent: Vec<String> = files
        .iter()
        .filter(|f| !listed.contains(f.as_str()))
        .cloned()
        .collect();
    if absent.is_empty() {
        return Ok(());
    }
    Err(HubError::RepoIncomplete {
        repo: repo.into(),
        commit: commit.into(),
        missing: absent,
    })
}

/// Points `refs/<revision>` at the commit, so later offline runs find this snapshot, and drops the
/// `refs/<commit>` file hf-hub's pinned downloads write (Python's `huggingface_hub` keeps none).
fn finish_refs(
    cache: &Cache,
    repo: Repo,
    commit: &str,
    commit_ref: &Path,
    had: bool,
) -> Result<(), HubError> {
    if repo.revision() == commit {
        return Ok(());
    }
    let ref_path = cache
        .path()
        .join(repo.folder_name())
        .join("refs")
        .join(repo.revision());
    cache
        .repo(repo)
        .create_ref(commit)
        .map_err(|source| HubError::Io {
            path: ref_path,
            source,
        })?;
    if !had {
        let _ = std::fs::remove_file(commit_ref); // only tidiness: a leftover ref is harmless
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn opts(vars: &[(&str, &str)], home: &str) -> ResolveOptions {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ResolveOptions::from_vars(|k| vars.get(k).cloned(), Some(PathBuf::from(home)))
    }

    #[test]
    fn env_precedence_follows_huggingface_hub() {
        let o = opts(&[], "/h");
        assert_eq!(
            o.cache_dir,
            Some(PathBuf::from("/h/.cache/huggingface/hub"))
        );
        assert!(!o.offline && o.endpoint.is_none() && o.token.is_none() && !o.progress);
        assert_eq!(
            opts(&[("XDG_CACHE_HOME", "/x")], "/h").cache_dir,
            Some(PathBuf::from("/x/huggingface/hub"))
        );
        assert_eq!(
            opts(&[("HF_HOME", "~/hf"), ("XDG_CACHE_HOME", "/x")], "/h").cache_dir,
            Some(PathBuf::from("/h/hf/hub"))
        );
        let o = opts(
            &[
                ("HF_HUB_CACHE", "/c"),
                ("HF_HOME", "/hf"),
                ("HF_TOKEN", "t"),
                ("HF_ENDPOINT", "http://e"),
            ],
            "/h",
        );
        assert_eq!(
            (o.cache_dir, o.token, o.endpoint),
            (Some("/c".into()), Some("t".into()), Some("http://e".into()))
        );
        assert_eq!(
            opts(&[("HF_HUB_CACHE", "")], "/h").cache_dir,
            Some(PathBuf::from("/h/.cache/huggingface/hub"))
        );
        for (v, want) in [
            ("1", true),
            ("TRUE", true),
            ("yes", true),
            ("0", false),
            ("false", false),
            ("", false),
        ] {
            assert_eq!(
                opts(&[("HF_HUB_OFFLINE", v)], "/h").offline,
                want,
                "HF_HUB_OFFLINE={v}"
            );
        }
    }

    #[test]
    fn token_file_is_read_when_hf_token_is_unset() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("token"), "hf_abc\n").unwrap();
        let home = tmp.path().to_str().unwrap();
        assert_eq!(
            opts(&[("HF_HOME", home)], "/h").token.as_deref(),
            Some("hf_abc")
        );
        assert_eq!(
            opts(&[("HF_HOME", home), ("HF_TOKEN", "env")], "/h")
                .token
                .as_deref(),
            Some("env")
        );
    }

    #[test]
    fn repo_id_and_path_syntax() {
        assert_eq!(
            parse_repo_id("mlx-community/gemma-4-31b-it-4bit"),
            Some(("mlx-community/gemma-4-31b-it-4bit", "main"))
        );
        assert_eq!(parse_repo_id("a/b@refs/pr/1"), Some(("a/b", "refs/pr/1")));
        for bad in [
            "gemma",
            "a/",
            "/b",
            "a--x/b",
            "a/b.",
            "a/b@",
            "a/b@../x",
            "a b/c",
            "a/b@x/../../y",
        ] {
            assert_eq!(parse_repo_id(bad), None, "{bad}");
        }
        for p in ["./m", "../m", "/abs/m", "~/m", "a/b/c", "a/b/c@v"] {
            assert!(looks_like_path(p), "{p}");
        }
        for r in ["a/b", "a/b@refs/pr/1", "gemma"] {
            assert!(!looks_like_path(r), "{r}");
        }
    }
}
