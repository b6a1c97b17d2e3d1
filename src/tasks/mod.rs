//! The seed studies' tasks: prompts (verbatim), answer parsing into typed results, and the one
//! place coordinates are converted.

pub mod answer;
pub mod coords;
pub mod json_fragment;
pub mod labels;
// caption/query/detect/point on the native Moondream2 model.
pub mod moondream_native;
pub mod prompts;
pub mod run;
