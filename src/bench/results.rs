//! Sweep result files: written as each point finishes (rewritten whole, atomically), read back by
//! `--resume`, `vlmbench chart` and `vlmbench compare`.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::engine::GenerationStats;

/// Where and how a result was measured.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    /// Series name in charts and comparisons (default: model name and backend).
    pub label: String,
    pub model: String,
    pub backend: String,
    pub device: String,
    pub dtype: String,
    pub mlx_version: String,
    pub vlmbench_version: String,
    /// `VLMBENCH_KERNELS` and `VLMBENCH_PREFILL` in effect (empty in files written before they
    /// were recorded).
    #[serde(default)]
    pub kernels: String,
    #[serde(default)]
    pub prefill: String,
}

impl RunInfo {
    /// One line naming where and how the run was measured, for comparison headers.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{}: {}, {} on {} ({}), MLX {}",
            self.label, self.model, self.dtype, self.device, self.backend, self.mlx_version
        );
        if !self.kernels.is_empty() {
            s += &format!(", kernels {}, prefill {}", self.kernels, self.prefill);
        }
        s
    }
}

/// One generation's figures (one prompt of a sweep or of the notebook table).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Measurement {
    /// Test name ("Short text", "pp512+tg32", ...).
    pub label: String,
    pub has_image: bool,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub prefill_tps: f64,
    pub decode_tps: f64,
    pub time_to_first_token_s: f64,
    pub vision_encode_s: f64,
    pub total_s: f64,
    pub peak_memory_bytes: u64,
    /// mlx-vlm's definitions of the same run.
    pub reference_prompt_tps: f64,
    pub reference_generation_tps: f64,
    /// Streamed tasks: seconds from the call to the first token, and the mean gap between tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_first_token_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_avg_token_s: Option<f64>,
    /// Task benchmarks: what the task returned, as printed ("Found 2 face(s)", the caption...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

impl Measurement {
    pub fn from_stats(label: &str, has_image: bool, s: &GenerationStats) -> Measurement {
        Measurement {
            label: label.to_owned(),
            has_image,
            prompt_tokens: s.prompt_tokens,
            gen_tokens: s.generation_tokens,
            prefill_tps: s.prefill_tps,
            decode_tps: s.decode_tps,
            time_to_first_token_s: s.time_to_first_token_s,
            vision_encode_s: s.vision_encode_s,
            total_s: s.total_s,
            peak_memory_bytes: s.peak_memory_bytes,
            reference_prompt_tps: s.reference.prompt_tps,
            reference_generation_tps: s.reference.generation_tps,
            stream_first_token_s: None,
            stream_avg_token_s: None,
            answer: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResultKind {
    /// Random prompts of given lengths, a fixed number of generated tokens each.
    PromptLengthSweep,
    /// Named prompts, like the seed notebook's throughput table.
    PromptTable,
    /// Timed tasks on one image, like the Moondream seed script (`total_s` is each task's runtime).
    TaskBench,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ResultsFile {
    pub kind: ResultKind,
    pub run: RunInfo,
    pub measurements: Vec<Measurement>,
}

impl ResultsFile {
    pub fn load(path: &Path) -> Result<ResultsFile> {
        crate::json_file::load(path, "a vlmbench results file")
    }

    /// Written whole after every point: a crash never leaves half a file.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::json_file::save_atomic(self, path)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> ResultsFile {
        ResultsFile {
            kind: ResultKind::PromptLengthSweep,
            run: RunInfo {
                label: "tiny cpu".into(),
                model: "tiny".into(),
                backend: "cpu".into(),
                device: "cpu:0".into(),
                dtype: "float32".into(),
                mlx_version: "0.32.2".into(),
                vlmbench_version: "0.1.0".into(),
                kernels: "gemv".into(),
                prefill: "mlx".into(),
            },
            measurements: vec![],
        }
    }

    #[test]
    fn a_run_describes_itself_with_its_kernel_choices_when_recorded() {
        let mut run = sample().run;
        assert_eq!(
            run.describe(),
            "tiny cpu: tiny, float32 on cpu:0 (cpu), MLX 0.32.2, kernels gemv, prefill mlx"
        );
        // Files from mlx-vlm's side and from before the choices were recorded have none.
        run.kernels.clear();
        run.prefill.clear();
        assert_eq!(
            run.describe(),
            "tiny cpu: tiny, float32 on cpu:0 (cpu), MLX 0.32.2"
        );
    }

    #[test]
    fn saves_and_loads_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let r = sample();
        r.save(&path).unwrap();
        assert_eq!(ResultsFile::load(&path).unwrap(), r);
        assert!(!path.with_extension("json.partial").exists());
    }

    #[test]
    fn a_foreign_json_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.json");
        std::fs::write(&path, "{\"hello\": 1}").unwrap();
        let err = format!("{:#}", ResultsFile::load(&path).unwrap_err());
        assert!(
            err.contains("other.json is not a vlmbench results file"),
            "{err}"
        );
        let missing = format!(
            "{:#}",
            ResultsFile::load(&dir.path().join("nope.json")).unwrap_err()
        );
        assert!(
            missing.contains("cannot read a vlmbench results file"),
            "{missing}"
        );
    }
}
