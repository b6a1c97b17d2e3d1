//! Evaluations from the Gemma 4 notebook: VQAv2 exact match and class-aware COCO localization.
//! Datasets (HF parquet shards), the notebook's sample selection, its metrics, and per-sample logs.

pub mod argsort;
pub mod datasets;
pub mod detection;
pub mod hub_source;
pub mod matching;
pub mod numpy_rng;
pub mod numpy_stats;
pub mod parquet_rows;
pub mod summary;
pub mod coco_run;
pub mod progress;
pub mod run_log;
pub mod vqa_run;
pub mod session;
