//! Evaluations from the Gemma 4 notebook: VQAv2 exact match and class-aware COCO localization,
//! reproduced so that a run with the real model and the real datasets gives numbers comparable
//! with the study's.
//!
//! - Data: [`parquet_rows`] streams a split's HF parquet shards in file order, [`hub_source`] gets
//!   them through hf-hub, [`datasets`] reads the two datasets' columns and selects the notebook's
//!   samples ([`numpy_rng`] reproduces `np.random.seed(42)` / `np.random.random()` bit for bit).
//! - Metrics: [`detection`] (ground truth and the notebook-exact answer parse), [`matching`]
//!   (`evaluate_detections`; ties ordered by [`argsort`], numpy's portable argsort), [`summary`]
//!   (run means with numpy's pairwise sum, per-class recall, best/worst, VQA exact match).
//! - Runs: [`run_log`] (per-sample JSON lines, fsynced, resumable), [`vqa_run`], [`coco_run`],
//!   [`progress`], and [`session`], which ties one `vlmbench eval` invocation together.
//!
//! Where we knowingly differ from the notebook (see each item's docs): generation is greedy; images
//! are decoded once from the dataset's bytes (the notebook re-saved VQA images as PNG and COCO
//! images as quality-75 JPEG before the model read them); a NaN coordinate drops one box (the
//! notebook's supervision call would raise).

pub mod argsort;
pub mod coco_run;
pub mod datasets;
pub mod detection;
pub mod hub_source;
pub mod matching;
pub mod numpy_rng;
pub mod numpy_stats;
pub mod parquet_rows;
pub mod progress;
pub mod run_log;
pub mod session;
pub mod summary;
pub mod vqa_run;
