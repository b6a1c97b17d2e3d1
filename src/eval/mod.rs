//! Evaluations from the Gemma 4 notebook: VQAv2 exact match and class-aware COCO localization,
//! reproduced so that a run with the real model and the real datasets gives numbers comparable
//! with the study's.
//!
//! - Data: [`parquet_rows`] streams a split's HF parquet shards in file order, [`hub_source`] gets
//!   them through hf-hub, [`datasets`] reads the two datasets' columns and selects the notebook's
//!   samples ([`numpy_rng`] reproduces `np.random.seed(42)` / `np.random.random()` bit for bit);
//!   [`scenes`] draws synthetic scenes with ground truth and [`dataset_writer`] writes them in the
//!   two datasets' layouts (`vlmbench make-scenes`).
//! - Metrics: [`detection`] (ground truth and the notebook-exact answer parse), [`matching`]
//!   (`evaluate_detections`; ties ordered by [`argsort`], numpy's portable argsort), [`summary`]
//!   (run means with numpy's pairwise sum, per-class recall, best/worst, VQA exact match).
//! - Runs: `options` (what a run is asked, where it runs), [`run_log`] (per-sample JSON lines, fsynced, resumable), [`vqa_run`], [`coco_run`],
//!   [`progress`], and [`session`], which ties one `vlmbench eval` invocation together;
//!   [`shard`] and `sharded_run` split one over the ranks of an MLX group (`--distributed`).
//!
//! Model inputs follow the notebook's path: images decoded as `datasets` does (EXIF orientation
//! applied, RGB), VQA images as they are (the notebook's PNG re-save is lossless), COCO images
//! through its quality-75 JPEG re-save ([`pillow_jpeg`], checked against Pillow).
//!
//! Generation is greedy, as in the notebook: mlx-vlm 0.4.4's `generate` defaults to temperature 0
//! and takes only the stop ids from generation_config.json.
//!
//! Where we knowingly differ: a NaN coordinate drops one box
//! (the notebook's supervision call would raise); on ties between equal IoUs we follow numpy's
//! portable argsort, while numpy on AVX2/AVX-512 machines orders ties its own way.

pub mod argsort;
pub mod coco_run;
pub mod dataset_writer;
pub mod datasets;
pub mod detection;
pub mod hub_source;
pub mod matching;
pub mod numpy_rng;
pub mod numpy_stats;
mod options;
pub mod parquet_rows;
pub mod pillow_jpeg;
pub mod progress;
pub mod run_log;
pub mod scene_tasks;
pub mod scenes;
pub mod session;
pub mod shard;
mod sharded_run;
pub mod summary;
pub mod vqa_run;
