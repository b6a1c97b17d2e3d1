//! Support shared by the integration tests (not a test crate: `tests/common/` is a module).

pub mod cli;
pub mod dataset_fixtures;
