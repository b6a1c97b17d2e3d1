//! An evaluation run's files in `--out`: `run.json` (what was asked: a resumed run must ask the same),
//! `samples.jsonl` (one JSON line per finished sample, appended and fsynced as soon as it is done;
//! deterministic: no timings, so an interrupted-and-resumed run ends with the same bytes as an
//! uninterrupted one), `timings.jsonl` (the clock numbers of each sample, written just before its
//! line) and `summary.json` (atomic).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub const RUN_FILE: &str = "run.json";
pub const SAMPLES_FILE: &str = "samples.jsonl";
pub const TIMINGS_FILE: &str = "timings.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";

/// One sample's clock numbers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SampleTiming {
    pub sample: usize,
    /// Wall time of the generation (the notebook's `time_s`).
    pub time_s: f64,
    pub prompt_tokens: usize,
    pub generation_tokens: usize,
    /// mlx-vlm's `generation_tps` (the notebook's `gen_tps`).
    pub gen_tps: f64,
    pub prompt_tps: f64,
}

/// The open run directory: appends lines durably.
pub struct RunLog {
    dir: PathBuf,
    samples: File,
    timings: File,
}

/// Reads the JSON lines of `path`, dropping (and truncating away) a last line cut short by a crash.
fn read_lines<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(Vec::new());
    };
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < bytes.len() {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot repair {}", path.display()))?;
        f.set_len(complete as u64)
            .with_context(|| format!("cannot repair {}", path.display()))?;
        f.sync_all()?;
    }
    let text = std::str::from_utf8(&bytes[..complete])
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).with_context(|| {
                format!("{} line {} is not a sample record", path.display(), i + 1)
            })
        })
        .collect()
}

/// The complete lines of `path` (none when it does not exist), ignoring a torn last line.
fn read_complete_lines<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(Vec::new());
    };
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = std::str::from_utf8(&bytes[..complete])
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).with_context(|| {
                format!("{} line {} is not a sample record", path.display(), i + 1)
            })
        })
        .collect()
}

impl RunLog {
    /// Fails early (before any sampling or model loading) when `dir` holds a run that this one may
    /// not continue: any run without `resume`, or one started with other settings.
    pub fn preflight<R: Serialize>(dir: &Path, run: &R, resume: bool) -> Result<()> {
        let run_path = dir.join(RUN_FILE);
        if !run_path.exists() {
            return Ok(());
        }
        if !resume {
            bail!(
                "{} already holds a run: pass --resume to continue it, or choose another --out",
                dir.display()
            );
        }
        let text = std::fs::read_to_string(&run_path)
            .with_context(|| format!("cannot read {}", run_path.display()))?;
        let existing: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", run_path.display()))?;
        let wanted = serde_json::to_value(run)?;
        if existing != wanted {
            bail!(
                "cannot resume {}: it was started with different settings ({} vs now {})",
                dir.display(),
                existing,
                wanted
            );
        }
        Ok(())
    }

    /// Opens `dir` for the run described by `run`. A fresh run needs an empty (or new) directory;
    /// `resume` needs the same `run.json` and returns the samples already finished.
    pub fn open<R, S>(dir: &Path, run: &R, resume: bool) -> Result<(RunLog, Vec<S>)>
    where
        R: Serialize,
        S: DeserializeOwned,
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
        let run_path = dir.join(RUN_FILE);
        let wanted = serde_json::to_value(run)?;
        let done: Vec<S> = if run_path.exists() {
            Self::preflight(dir, run, resume)?;
            read_lines(&dir.join(SAMPLES_FILE))?
        } else {
            let tmp = run_path.with_extension("json.partial");
            std::fs::write(&tmp, serde_json::to_string_pretty(&wanted)? + "\n")
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, &run_path)
                .with_context(|| format!("cannot write {}", run_path.display()))?;
            // A fresh run starts fresh files (a run.json written by a crashed start may have left none).
            for f in [SAMPLES_FILE, TIMINGS_FILE] {
                let _ = std::fs::remove_file(dir.join(f));
            }
            Vec::new()
        };
        // Repair a torn timings line too, before appending.
        let _ = read_lines::<serde_json::Value>(&dir.join(TIMINGS_FILE))?;
        let append = |name: &str| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
                .with_context(|| format!("cannot open {}", dir.join(name).display()))
        };
        Ok((
            RunLog {
                dir: dir.to_path_buf(),
                samples: append(SAMPLES_FILE)?,
                timings: append(TIMINGS_FILE)?,
            },
            done,
        ))
    }

    /// Records one finished sample: its timing, then its line (the line marks it done), each synced.
    pub fn append<S: Serialize>(&mut self, record: &S, timing: &SampleTiming) -> Result<()> {
        for (file, line, name) in [
            (
                &mut self.timings,
                serde_json::to_string(timing)?,
                TIMINGS_FILE,
            ),
            (
                &mut self.samples,
                serde_json::to_string(record)?,
                SAMPLES_FILE,
            ),
        ] {
            // One write per line, so a crash leaves at most one torn last line.
            file.write_all(format!("{line}\n").as_bytes())
                .with_context(|| format!("cannot append to {name}"))?;
            file.sync_data()
                .with_context(|| format!("cannot sync {name}"))?;
        }
        Ok(())
    }

    /// The timing of every finished sample (the last record of each, in sample order).
    pub fn timings(&self) -> Result<Vec<SampleTiming>> {
        let mut all: Vec<SampleTiming> = read_lines(&self.dir.join(TIMINGS_FILE))?;
        all.reverse();
        let mut seen = std::collections::BTreeMap::new();
        for t in all {
            seen.entry(t.sample).or_insert(t);
        }
        Ok(seen.into_values().collect())
    }

    /// The finished records and the last timing of each sample in a run directory (read only:
    /// a torn last line is skipped, not repaired). For merging the ranks of a sharded run.
    pub fn read_finished<S: DeserializeOwned>(dir: &Path) -> Result<(Vec<S>, Vec<SampleTiming>)> {
        let records = read_complete_lines(&dir.join(SAMPLES_FILE))?;
        let mut all: Vec<SampleTiming> = read_complete_lines(&dir.join(TIMINGS_FILE))?;
        all.reverse();
        let mut seen = std::collections::BTreeMap::new();
        for t in all {
            seen.entry(t.sample).or_insert(t);
        }
        Ok((records, seen.into_values().collect()))
    }

    /// Writes a whole finished run into `dir` at once (run.json, samples.jsonl, timings.jsonl,
    /// each atomically), byte for byte as appending the records one by one would: the merge of a
    /// sharded run. `dir` can then be opened with `resume` like any run.
    pub fn write_finished<R: Serialize, S: Serialize>(
        dir: &Path,
        run: &R,
        records: &[S],
        timings: &[SampleTiming],
    ) -> Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
        let lines = |items: Vec<String>| items.into_iter().map(|l| l + "\n").collect::<String>();
        let samples = lines(
            records
                .iter()
                .map(serde_json::to_string)
                .collect::<serde_json::Result<_>>()?,
        );
        let timing_lines = lines(
            timings
                .iter()
                .map(serde_json::to_string)
                .collect::<serde_json::Result<_>>()?,
        );
        // run.json last: a directory with a run.json holds a complete run (or one being appended to).
        for (name, text) in [
            (SAMPLES_FILE, samples),
            (TIMINGS_FILE, timing_lines),
            (
                RUN_FILE,
                serde_json::to_string_pretty(&serde_json::to_value(run)?)? + "\n",
            ),
        ] {
            let path = dir.join(name);
            let tmp = dir.join(format!("{name}.partial"));
            let mut f =
                File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
            f.write_all(text.as_bytes())
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            f.sync_all()
                .with_context(|| format!("cannot sync {}", tmp.display()))?;
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    /// Writes `summary.json` atomically.
    pub fn save_summary<T: Serialize>(&self, summary: &T) -> Result<PathBuf> {
        let path = self.dir.join(SUMMARY_FILE);
        let tmp = path.with_extension("json.partial");
        std::fs::write(&tmp, serde_json::to_string_pretty(summary)? + "\n")
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Rec {
        sample: usize,
    }

    fn timing(sample: usize) -> SampleTiming {
        SampleTiming {
            sample,
            time_s: 1.0,
            prompt_tokens: 3,
            generation_tokens: 2,
            gen_tps: 2.0,
            prompt_tps: 3.0,
        }
    }

    #[test]
    fn resume_returns_finished_samples_and_drops_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let run = serde_json::json!({"task": "vqa", "n": 3});
        let (mut log, done) = RunLog::open::<_, Rec>(dir.path(), &run, false).unwrap();
        assert!(done.is_empty());
        log.append(&Rec { sample: 0 }, &timing(0)).unwrap();
        drop(log);
        // A crash in the middle of the second line.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(SAMPLES_FILE))
            .unwrap();
        f.write_all(b"{\"sample\": 1").unwrap();
        drop(f);
        let (log, done) = RunLog::open::<_, Rec>(dir.path(), &run, true).unwrap();
        assert_eq!(done, vec![Rec { sample: 0 }]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(SAMPLES_FILE)).unwrap(),
            "{\"sample\":0}\n"
        );
        assert_eq!(log.timings().unwrap(), vec![timing(0)]);
    }

    #[test]
    fn an_existing_run_needs_resume_and_the_same_settings() {
        let dir = tempfile::tempdir().unwrap();
        let run = serde_json::json!({"n": 3});
        RunLog::open::<_, Rec>(dir.path(), &run, false).unwrap();
        let again = RunLog::open::<_, Rec>(dir.path(), &run, false)
            .err()
            .unwrap()
            .to_string();
        assert!(again.contains("--resume"), "{again}");
        let other = RunLog::open::<_, Rec>(dir.path(), &serde_json::json!({"n": 4}), true)
            .err()
            .unwrap()
            .to_string();
        assert!(other.contains("different settings"), "{other}");
    }

    #[test]
    fn a_run_written_at_once_has_the_bytes_of_one_appended_line_by_line() {
        let run = serde_json::json!({"task": "vqa", "n": 2});
        let (appended, whole) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut log, _) = RunLog::open::<_, Rec>(appended.path(), &run, false).unwrap();
        for i in 0..2 {
            log.append(&Rec { sample: i }, &timing(i)).unwrap();
        }
        RunLog::write_finished(
            whole.path(),
            &run,
            &[Rec { sample: 0 }, Rec { sample: 1 }],
            &[timing(0), timing(1)],
        )
        .unwrap();
        for f in [RUN_FILE, SAMPLES_FILE, TIMINGS_FILE] {
            assert_eq!(
                std::fs::read(appended.path().join(f)).unwrap(),
                std::fs::read(whole.path().join(f)).unwrap(),
                "{f}"
            );
        }
        let (records, timings) = RunLog::read_finished::<Rec>(whole.path()).unwrap();
        assert_eq!(records, vec![Rec { sample: 0 }, Rec { sample: 1 }]);
        assert_eq!(timings, vec![timing(0), timing(1)]);
        // And it opens as a finished run.
        let (_, done) = RunLog::open::<_, Rec>(whole.path(), &run, true).unwrap();
        assert_eq!(done.len(), 2);
    }
}
