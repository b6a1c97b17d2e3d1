//! Evaluations from the Gemma 4 notebook: VQAv2 exact match and class-aware COCO localization.

pub mod numpy_rng;
