//! `vlmbench eval --distributed`: one process of an MLX distributed group running its share of an
//! evaluation. Every rank selects the same samples (the notebook's seeded selection, on its own
//! copy of the data), takes sample `i` when `i % ranks == rank`, logs it into its own resumable
//! directory `OUT/shards/rank-R-of-N/`, and rank 0 merges the rank files into exactly the files a
//! single-process run writes in `OUT`.
//!
//! Data moves through the shared filesystem (`--out` must be the same directory on every rank);
//! MLX's collectives only carry small integer vectors: each rank's status, fingerprints of its
//! arguments and of its selection, and its number of samples left. Those exchanges double as the
//! barriers: a rank that failed still joins them with a failure flag, so every rank learns of it
//! and stops with one line instead of waiting for a peer that will never come.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mlx_rs::Array;
use serde::de::DeserializeOwned;
use serde::Serialize;
use vlm_models::distributed::{Backend, Group};

use super::run_log::{RunLog, SampleTiming};

/// A record that knows its position in the selection (the `sample` field of samples.jsonl).
pub trait SampleRecord {
    fn sample(&self) -> usize;
    /// What identifies the sample in the dataset (stream row and question or image id), as
    /// [`SelectionKey::selection_key`] of the selected example.
    fn selection_key(&self) -> String;
}

/// A selected example's identity in the dataset, compared across ranks and against resumed records.
pub trait SelectionKey {
    fn selection_key(&self) -> String;
}

/// This process's place in the group.
pub struct Shard {
    group: Group,
}

/// What every rank tells the others after a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub ok: bool,
    /// Fingerprint of the arguments that must be equal on every rank.
    pub arguments: u64,
    /// Fingerprint of the selected samples (which rows of the dataset).
    pub selection: u64,
    /// Samples this rank still has to run.
    pub remaining: u32,
}

const REPORT_LEN: usize = 6;

impl Report {
    /// A stage passed, with nothing to count but the arguments.
    pub fn stage(arguments: u64) -> Report {
        Report {
            ok: true,
            arguments,
            selection: 0,
            remaining: 0,
        }
    }

    pub fn failed() -> Report {
        Report {
            ok: false,
            arguments: 0,
            selection: 0,
            remaining: 0,
        }
    }

    fn encode(&self) -> [i32; REPORT_LEN] {
        let split = |v: u64| [(v & 0xffff_ffff) as u32 as i32, (v >> 32) as u32 as i32];
        let [a0, a1] = split(self.arguments);
        let [s0, s1] = split(self.selection);
        [i32::from(self.ok), a0, a1, s0, s1, self.remaining as i32]
    }

    fn decode(v: &[i32]) -> Report {
        let join = |lo: i32, hi: i32| u64::from(lo as u32) | (u64::from(hi as u32) << 32);
        Report {
            ok: v[0] == 1,
            arguments: join(v[1], v[2]),
            selection: join(v[3], v[4]),
            remaining: v[5] as u32,
        }
    }
}

/// FNV-1a, 64 bits: a fingerprint every rank computes the same way whatever its platform or build.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Shard {
    /// Joins the group of `backend` (MLX's launch conventions, docs/distributed.md).
    pub fn join(backend: Backend) -> Result<Shard> {
        let group = Group::init(backend).context(
            "--distributed: this process cannot join its group (see docs/distributed.md)",
        )?;
        Ok(Shard { group })
    }

    pub fn rank(&self) -> usize {
        self.group.rank() as usize
    }

    pub fn ranks(&self) -> usize {
        self.group.size() as usize
    }

    pub fn is_leader(&self) -> bool {
        self.rank() == 0
    }

    pub fn backend(&self) -> Backend {
        self.group.backend()
    }

    /// The positions in the selection this rank runs, in order.
    pub fn positions(&self, total: usize) -> Vec<usize> {
        positions(self.rank(), self.ranks(), total)
    }

    /// This rank's resumable directory inside `out`.
    pub fn dir(&self, out: &Path) -> PathBuf {
        rank_dir(out, self.rank(), self.ranks())
    }

    /// Every rank's report of a stage, in rank order (an all_gather; every rank must call it at the
    /// same point).
    pub fn exchange(&self, mine: Report) -> Result<Vec<Report>> {
        let local = Array::from_slice(&mine.encode(), &[1, REPORT_LEN as i32]);
        let all = self.group.all_gather(&local)?;
        mlx_rs::transforms::eval([&all]).context(
            "--distributed: lost contact with the other ranks (did one die?): rerun every rank with --resume to continue",
        )?;
        Ok(all
            .as_slice::<i32>()
            .chunks(REPORT_LEN)
            .map(Report::decode)
            .collect())
    }

    /// Ends a stage on every rank together: a rank whose `local` failed returns its own error,
    /// the others one line naming the rank that failed. Also checks that every rank was started
    /// with the same arguments and selected the same samples as rank 0. Returns every rank's report.
    pub fn agree<T>(
        &self,
        stage: &str,
        local: Result<T>,
        report: impl FnOnce(&T) -> Report,
    ) -> Result<(T, Vec<Report>)> {
        let mine = match &local {
            Ok(v) => report(v),
            Err(_) => Report::failed(),
        };
        let all = self.exchange(mine)?;
        let value = local?;
        let n = all.len();
        if let Some(r) = all.iter().position(|r| !r.ok) {
            bail!("--distributed: rank {r} of {n} failed {stage} (its own error is on its stderr); nothing was merged, rerun every rank with --resume to continue");
        }
        if let Some(r) = all.iter().position(|r| r.arguments != all[0].arguments) {
            bail!(
                "--distributed: rank {r} of {n} was started with other arguments than rank 0: every rank needs the same task, --model, --data/--hub, -n, --max-tokens, --dtype, --out and --resume"
            );
        }
        if let Some(r) = all.iter().position(|r| r.selection != all[0].selection) {
            bail!("--distributed: rank {r} of {n} selected other samples than rank 0: its copy of the dataset differs");
        }
        Ok((value, all))
    }
}

pub fn positions(rank: usize, ranks: usize, total: usize) -> Vec<usize> {
    (rank..total).step_by(ranks).collect()
}

pub fn rank_dir(out: &Path, rank: usize, ranks: usize) -> PathBuf {
    out.join("shards").join(format!("rank-{rank}-of-{ranks}"))
}

/// A rank directory's run.json: the run's settings and which shard it holds (so that a rerun with
/// another number of ranks does not continue it by mistake).
#[derive(Serialize)]
pub struct ShardSettings<'a, R: Serialize> {
    #[serde(flatten)]
    pub run: &'a R,
    pub shard: ShardId,
}

#[derive(Serialize, Clone, Copy)]
pub struct ShardId {
    pub rank: usize,
    pub ranks: usize,
}

/// Rank 0, once every rank has finished: reads the ranks' records and timings, checks that together
/// they hold each of the `total` samples exactly once, and writes `out`'s run.json, samples.jsonl
/// (in sample order) and timings.jsonl (each sample's last timing, in sample order), as a
/// single-process run leaves them. Returns the records in sample order.
pub fn merge<R, S>(out: &Path, run: &R, ranks: usize, total: usize) -> Result<Vec<S>>
where
    R: Serialize,
    S: DeserializeOwned + Serialize + SampleRecord,
{
    let mut slots: Vec<Option<S>> = (0..total).map(|_| None).collect();
    let mut timings: Vec<Option<SampleTiming>> = vec![None; total];
    for rank in 0..ranks {
        let dir = rank_dir(out, rank, ranks);
        let (records, rank_timings) = RunLog::read_finished::<S>(&dir)?;
        let expected = positions(rank, ranks, total);
        anyhow::ensure!(
            records
                .iter()
                .map(SampleRecord::sample)
                .eq(expected.iter().copied()),
            "--distributed: {} does not hold exactly rank {rank}'s {} samples",
            dir.display(),
            expected.len()
        );
        for r in records {
            let i = r.sample();
            slots[i] = Some(r);
        }
        for t in rank_timings {
            if t.sample < total {
                let i = t.sample;
                timings[i] = Some(t);
            }
        }
    }
    let records: Vec<S> = slots
        .into_iter()
        .map(|s| s.expect("every position belongs to one rank"))
        .collect();
    let timings: Vec<SampleTiming> = timings.into_iter().flatten().collect();
    RunLog::write_finished(out, run, &records, &timings)?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_i_goes_to_rank_i_mod_n_and_every_sample_to_exactly_one_rank() {
        assert_eq!(positions(0, 2, 5), vec![0, 2, 4]);
        assert_eq!(positions(1, 2, 5), vec![1, 3]);
        assert_eq!(positions(2, 3, 2), Vec::<usize>::new());
        let mut all: Vec<usize> = (0..4).flat_map(|r| positions(r, 4, 11)).collect();
        all.sort();
        assert_eq!(all, (0..11).collect::<Vec<_>>());
    }

    #[test]
    fn reports_survive_the_int32_encoding() {
        let r = Report {
            ok: true,
            arguments: 0xdead_beef_8000_0001,
            selection: u64::MAX,
            remaining: 123_456,
        };
        assert_eq!(Report::decode(&r.encode()), r);
        assert_eq!(Report::decode(&Report::failed().encode()), Report::failed());
    }

    #[test]
    fn the_fingerprint_is_fnv1a() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fingerprint(b""), 0xcbf29ce484222325);
        assert_eq!(fingerprint(b"a"), 0xaf63dc4c8601ec8c);
        assert_ne!(fingerprint(b"n=4"), fingerprint(b"n=5"));
    }
}
