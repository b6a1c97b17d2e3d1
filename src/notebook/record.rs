//! The notebook run's record: every section's figures as JSON, saved after each section so that a
//! crash or Ctrl-C loses nothing and `--resume` skips what is done. report.md is rendered from it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bench::results::RunInfo;

/// The file name of the record inside the output directory.
pub const RECORD_FILE: &str = "notebook.json";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum SectionStatus {
    Done,
    /// Not run, and why (a dataset that is not there, a flag that turned it off).
    Skipped {
        reason: String,
    },
}

/// One section's outcome: its figures, and the files it wrote (relative to the output directory).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Section {
    #[serde(flatten)]
    pub status: SectionStatus,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub files: Vec<String>,
}

impl Section {
    pub fn done(data: Value, files: Vec<String>) -> Self {
        Self {
            status: SectionStatus::Done,
            data,
            files,
        }
    }

    pub fn skipped(reason: impl Into<String>) -> Self {
        Self {
            status: SectionStatus::Skipped {
                reason: reason.into(),
            },
            data: Value::Null,
            files: vec![],
        }
    }

    pub fn is_done(&self) -> bool {
        self.status == SectionStatus::Done
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NotebookRecord {
    pub notebook: String,
    pub model: String,
    /// Outputs come from random weights (the built-in tiny checkpoint).
    pub random_weights: bool,
    pub quick: bool,
    pub run: RunInfo,
    pub sections: BTreeMap<String, Section>,
}

impl NotebookRecord {
    pub fn load(path: &Path) -> Result<Self> {
        crate::json_file::load(path, "a vlmbench notebook record")
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        crate::json_file::save_atomic(self, path)
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.get(name).filter(|s| s.is_done())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_with_done_and_skipped_sections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECORD_FILE);
        let mut sections = BTreeMap::new();
        sections.insert(
            "scene".to_string(),
            Section::done(serde_json::json!({"answer": "x"}), vec!["a.png".into()]),
        );
        sections.insert("vqa".to_string(), Section::skipped("no dataset"));
        let record = NotebookRecord {
            notebook: "gemma4".into(),
            model: "m".into(),
            random_weights: true,
            quick: true,
            run: RunInfo {
                label: "l".into(),
                model: "m".into(),
                backend: "cpu".into(),
                device: "cpu:0".into(),
                dtype: "float32".into(),
                mlx_version: "0.32.2".into(),
                vlmbench_version: "0.1.0".into(),
                kernels: "gemv".into(),
                prefill: "mlx".into(),
            },
            sections,
        };
        record.save(&path).unwrap();
        let back = NotebookRecord::load(&path).unwrap();
        assert_eq!(back, record);
        assert!(back.section("scene").is_some());
        assert!(
            back.section("vqa").is_none(),
            "skipped sections are redone on resume"
        );
        let raw: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(raw["sections"]["vqa"]["status"], "skipped");
        assert_eq!(raw["sections"]["vqa"]["reason"], "no dataset");
    }
}
