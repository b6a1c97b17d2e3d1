//! The bridge from the notebook's evaluation sections to `src/eval`.

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::gemma4::Context;
use super::record::Section;
use super::EvalSources;

/// The VQAv2 data to read: a local directory, or None when the section must be skipped.
pub(super) fn vqa_source(sources: &EvalSources) -> Result<Option<PathBuf>> {
    Ok(sources.vqa_data.clone())
}

pub(super) fn coco_source(sources: &EvalSources) -> Result<Option<PathBuf>> {
    Ok(sources.coco_data.clone())
}

pub(super) fn vqa(_ctx: &Context, _data: PathBuf, _n: usize) -> Result<Section> {
    bail!("the VQAv2 evaluation is not in this build yet (issue #7)")
}

pub(super) fn coco(_ctx: &Context, _data: PathBuf, _n: usize) -> Result<Section> {
    bail!("the COCO evaluation is not in this build yet (issue #7)")
}
