//! How to run the notebook ([`NotebookOptions`]) and what each section is handed ([`Context`]).

use std::path::{Path, PathBuf};

use vlm_models::distributed::Backend;
use vlm_models::dtype::DtypeChoice;

use crate::model_source::Resolved;

/// How to run the notebook.
#[derive(Clone, Debug)]
pub struct NotebookOptions {
    pub model: Option<String>,
    pub dtype: DtypeChoice,
    pub out: PathBuf,
    /// Small token limits and sample counts: checks the whole pipeline in a minute.
    pub quick: bool,
    pub resume: bool,
    pub scene_image: Option<PathBuf>,
    pub segment_image: Option<PathBuf>,
    pub eval: super::EvalSources,
    /// Run as one rank of a tensor-parallel group (docs/distributed.md): every rank computes every
    /// section on its share of the decoder; rank 0 alone writes OUT and reports progress.
    pub tensor_parallel: Option<Backend>,
}

/// Token limit for generations in `--quick` mode.
const QUICK_MAX_TOKENS: usize = 24;

pub(super) fn limit(options: &NotebookOptions, notebook_limit: usize) -> usize {
    if options.quick {
        notebook_limit.min(QUICK_MAX_TOKENS)
    } else {
        notebook_limit
    }
}

/// What each section is handed: the options, the model as resolved, and where to write.
pub(super) struct Context<'a> {
    pub options: &'a NotebookOptions,
    pub resolved: &'a Resolved,
    pub out: &'a Path,
    /// A non-zero tensor-parallel rank: computes, writes only into its scratch `out`, prints nothing.
    pub quiet: bool,
}
