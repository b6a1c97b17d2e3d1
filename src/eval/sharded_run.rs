//! The sharded path of `vlmbench eval --distributed` (see [`super::shard`] for the layout and the
//! exchanges): one rank's run from opening its directory to rank 0's merge.

use anyhow::Result;
use serde::Serialize;
use vlm_models::model::LoadedModel;
use vlm_models::sampling::Sampler;

use super::options::{with_model, EvalOptions, Host};
use super::progress::Progress;
use super::run_log::RunLog;
use super::shard::{
    fingerprint, merge, Report, SampleRecord, SelectionKey, Shard, ShardId, ShardSettings,
};
use crate::engine::GenerateOptions;
use crate::model_source;

/// What a sharded run's every rank must have been given the same (the run's settings plus what
/// run.json leaves out).
fn argument_fingerprint<R: Serialize>(run: &R, o: &EvalOptions) -> Result<u64> {
    let all = serde_json::json!({
        "run": run,
        "dtype": format!("{:?}", o.dtype),
        "out": o.out.display().to_string(),
        "resume": o.resume,
    });
    Ok(fingerprint(serde_json::to_string(&all)?.as_bytes()))
}

/// One rank's part of a sharded run (see [`super::shard`]): open its own resumable directory,
/// agree with the others on arguments and selection, run its share, wait for every rank, and on
/// rank 0 merge the ranks' files into `o.out` as a single-process run writes them. Returns the
/// merged run on rank 0, None on the others.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub(super) fn run_sharded<E: SelectionKey, S, R>(
    shard: &Shard,
    o: &EvalOptions,
    run: &R,
    selected: Result<Vec<E>>,
    announce: impl FnOnce(&[E]),
    what: &str,
    run_shard: impl FnOnce(
        &LoadedModel,
        &[E],
        &[usize],
        Vec<S>,
        &mut RunLog,
        &mut Sampler,
        &GenerateOptions,
        Progress,
    ) -> Result<Vec<S>>,
) -> Result<Option<(RunLog, Vec<S>, Vec<E>)>>
where
    R: Serialize,
    S: Serialize + serde::de::DeserializeOwned + SampleRecord,
{
    let id = ShardId {
        rank: shard.rank(),
        ranks: shard.ranks(),
    };
    let arguments = argument_fingerprint(run, o)?;
    let opened = selected.and_then(|samples| open_shard::<E, S, R>(shard, o, run, id, samples));
    let ((samples, positions, mut log, done), reports) = shard.agree(
        "preparing its shard",
        opened,
        |(samples, positions, _, done)| {
            let keys: Vec<String> = samples.iter().map(SelectionKey::selection_key).collect();
            Report {
                ok: true,
                arguments,
                selection: fingerprint(keys.join("\n").as_bytes()),
                remaining: positions.len().saturating_sub(done.len()) as u32,
            }
        },
    )?;
    let remaining: u64 = reports.iter().map(|r| u64::from(r.remaining)).sum();
    if shard.is_leader() {
        announce(&samples);
        eprintln!(
            "distributed: rank 0 of {} ({} backend); {remaining} of {} samples left to run over all ranks, {} on this one",
            shard.ranks(),
            shard.backend(),
            samples.len(),
            positions.len().saturating_sub(done.len())
        );
    }
    if remaining > 0 {
        // Rank 0 alone writes the built-in checkpoint or downloads a repo; the others wait for it.
        let prepared = if shard.is_leader() {
            model_source::checkpoint_dir(o.model.as_deref()).map(|_| ())
        } else {
            Ok(())
        };
        shard.agree("preparing the model", prepared, |_| {
            Report::stage(arguments)
        })?;
        let ran = if done.len() < positions.len() {
            let progress = if shard.is_leader() {
                Progress::new(
                    positions.len(),
                    done.len(),
                    &format!("{what} rank 0/{}", shard.ranks()),
                )
            } else {
                Progress::silent()
            };
            with_model(
                Host::default(),
                o,
                shard.is_leader(),
                &samples,
                &positions,
                done,
                &mut log,
                progress,
                run_shard,
            )
            .map(|_| ())
        } else {
            Ok(())
        };
        // Closed before the others read it (close-to-open consistency on network filesystems).
        drop(log);
        shard.agree("running its shard", ran, |_| Report::stage(arguments))?;
    } else {
        drop(log);
    }
    if !shard.is_leader() {
        return Ok(None);
    }
    merge::<R, S>(&o.out, run, shard.ranks(), samples.len())?;
    let (log, records) = RunLog::open::<_, S>(&o.out, run, true)?;
    Ok(Some((log, records, samples)))
}

/// This rank's positions of `samples` and its run log, with the lines it resumes checked against
/// the samples they claim to be (a rank with nothing left runs nothing, so the check is here).
#[allow(clippy::type_complexity)]
fn open_shard<E: SelectionKey, S, R>(
    shard: &Shard,
    o: &EvalOptions,
    run: &R,
    id: ShardId,
    samples: Vec<E>,
) -> Result<(Vec<E>, Vec<usize>, RunLog, Vec<S>)>
where
    R: Serialize,
    S: Serialize + serde::de::DeserializeOwned + SampleRecord,
{
    let positions = shard.positions(samples.len());
    let dir = shard.dir(&o.out);
    let (log, done) = RunLog::open::<_, S>(&dir, &ShardSettings { run, shard: id }, o.resume)?;
    for (k, r) in done.iter().enumerate() {
        let i = positions.get(k).copied().unwrap_or(usize::MAX);
        let ok = r.sample() == i
            && samples
                .get(i)
                .is_some_and(|e| e.selection_key() == r.selection_key());
        anyhow::ensure!(
            ok,
            "cannot resume: line {} of {} does not match sample {i} of this dataset",
            k + 1,
            dir.join(super::run_log::SAMPLES_FILE).display()
        );
    }
    Ok((samples, positions, log, done))
}
