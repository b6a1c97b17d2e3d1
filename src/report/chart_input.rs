//! What `vlmbench chart` reads: a results file (sweep, moondream-bench: a JSON object) or the
//! output of `vlmbench bench -o json` (a JSON list of rows), told apart by the JSON's shape so
//! users need no flag. JSON lines (`-o jsonl`) are not read: their rows stream out before the
//! ranks' figures are gathered, so a tensor-parallel run would pass for a single process.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use crate::bench::results::ResultsFile;
use crate::bench::scaling::{BenchFile, SavedBenchRow};

#[derive(Clone, Debug, PartialEq)]
pub enum ChartInput {
    Results(ResultsFile),
    Bench(BenchFile),
}

const EXPECTED: &str =
    "a vlmbench results file (sweep, moondream-bench) or bench JSON (`vlmbench bench -o json`)";

impl ChartInput {
    pub fn load(path: &Path) -> Result<ChartInput> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let not_ours = |why: String| anyhow!("{} is not {EXPECTED}: {why}", path.display());
        let value: Value = serde_json::from_str(&text).map_err(|e| not_ours(e.to_string()))?;
        match value {
            Value::Array(_) => {
                let rows: Vec<SavedBenchRow> = serde_json::from_value(value)
                    .map_err(|e| not_ours(format!("a JSON list, but not of bench rows ({e})")))?;
                anyhow::ensure!(!rows.is_empty(), "{} holds no bench rows", path.display());
                Ok(ChartInput::Bench(BenchFile {
                    path: path.to_path_buf(),
                    rows,
                }))
            }
            Value::Object(_) => serde_json::from_value(value)
                .map(ChartInput::Results)
                .map_err(|e| not_ours(format!("a JSON object, but not a results file ({e})"))),
            other => Err(not_ours(format!("the JSON is a {}", kind(&other)))),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_list_of_bench_rows_is_a_bench_file_with_its_ranks() {
        let dir = tempfile::tempdir().unwrap();
        let rows = r#"[{"model": "tiny", "device": "cpu:0", "dtype": "float32", "test": "pp16", "n_prompt": 16, "n_gen": 0,
            "tps_mean": 120.5, "tps_sd": 0.0, "peak_memory_bytes": 4096,
            "ranks": [{"rank": 0, "tps_mean": 120.5, "peak_memory_bytes": 4096}, {"rank": 1, "tps_mean": 119.0, "peak_memory_bytes": 2048}]}]"#;
        let path = write(dir.path(), "tp.json", rows);
        let ChartInput::Bench(file) = ChartInput::load(&path).unwrap() else {
            panic!("not read as bench rows")
        };
        assert_eq!(file.path, path);
        assert_eq!(file.rows[0].test, "pp16");
        assert_eq!(file.rows[0].processes(), 2);
        assert_eq!(file.rows[0].peak_memory_per_process(), [4096, 2048]);
    }

    #[test]
    fn a_results_object_is_a_results_file() {
        let dir = tempfile::tempdir().unwrap();
        let results = r#"{"kind": "prompt_length_sweep", "run": {"label": "l", "model": "m", "backend": "cpu", "device": "cpu:0",
            "dtype": "float32", "mlx_version": "0.32.2", "vlmbench_version": "0.1.0"}, "measurements": []}"#;
        let path = write(dir.path(), "sweep.json", results);
        assert!(
            matches!(ChartInput::load(&path).unwrap(), ChartInput::Results(r) if r.run.label == "l")
        );
    }

    #[test]
    fn anything_else_is_one_error_naming_the_file_and_what_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text, why) in [
            (
                "numbers.json",
                "[1, 2]",
                "a JSON list, but not of bench rows",
            ),
            (
                "object.json",
                r#"{"hello": 1}"#,
                "a JSON object, but not a results file",
            ),
            ("number.json", "42", "the JSON is a number"),
            ("text.json", "not json", "expected ident"),
        ] {
            let err = format!(
                "{:#}",
                ChartInput::load(&write(dir.path(), name, text)).unwrap_err()
            );
            assert!(
                err.contains(&format!("{name} is not a vlmbench results file")),
                "{err}"
            );
            assert!(
                err.contains("`vlmbench bench -o json`") && err.contains(why),
                "{err}"
            );
        }
        let empty = format!(
            "{:#}",
            ChartInput::load(&write(dir.path(), "empty.json", "[]")).unwrap_err()
        );
        assert!(empty.contains("empty.json holds no bench rows"), "{empty}");
        let missing = format!(
            "{:#}",
            ChartInput::load(&dir.path().join("nope.json")).unwrap_err()
        );
        assert!(
            missing.contains("cannot read") && missing.contains("nope.json"),
            "{missing}"
        );
    }
}
