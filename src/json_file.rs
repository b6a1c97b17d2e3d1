//! Reading and writing the JSON files runs leave behind (results, notebook records): read with the
//! file named in errors, written whole to a file beside the target and renamed, so that a crash or
//! Ctrl-C never leaves half a file.

use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Reads `path` as JSON; `what` names the expected kind of file in the error ("a vlmbench results file").
pub fn load<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not {what}", path.display()))
}

/// Writes `value` as pretty JSON to `path` atomically.
pub fn save_atomic<T: Serialize>(value: &T, path: &Path) -> Result<()> {
    let tmp = path.with_extension("json.partial");
    std::fs::write(&tmp, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
