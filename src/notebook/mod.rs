//! The seed studies as runnable notebooks: `vlmbench notebook gemma4` (every section of the Gemma 4
//! notebook into a report) and `vlmbench notebook moondream` (the Moondream benchmark script).
//! notebooks-port/ maps each seed cell to the code here.

mod eval_run;
mod eval_sections;
pub mod gemma4;
mod options;
pub mod record;
pub mod report;
pub mod research_data;

use std::path::PathBuf;

/// Where the evaluation sections find their datasets.
#[derive(Clone, Debug, Default)]
pub struct EvalSources {
    /// A local copy of merve/vqav2-small (parquet shards).
    pub vqa_data: Option<PathBuf>,
    /// A local copy of detection-datasets/coco (parquet shards).
    pub coco_data: Option<PathBuf>,
    /// Stream the datasets from the Hugging Face hub when no local copy is given.
    pub hub: bool,
}
