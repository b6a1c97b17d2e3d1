//! Reads back the header of a safetensors file (names, dtypes, shapes, metadata) without MLX, to
//! check what was written against what the converter writes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One tensor entry of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TensorInfo {
    /// safetensors dtype name: `U32`, `BF16`, `F32`, ...
    pub dtype: String,
    pub shape: Vec<usize>,
    pub data_offsets: [usize; 2],
}

/// The parsed header: tensors by name and the `__metadata__` map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsHeader {
    pub tensors: BTreeMap<String, TensorInfo>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a safetensors file: {reason}")]
    Format { path: PathBuf, reason: String },
}

/// Headers larger than this are not ours (the tiny ones are ~40 KB).
const MAX_HEADER: u64 = 100 << 20;

pub fn read_safetensors_header(path: &Path) -> Result<SafetensorsHeader, InspectError> {
    let read = |source| InspectError::Read {
        path: path.to_path_buf(),
        source,
    };
    let format = |reason: String| InspectError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(read)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(read)?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER {
        return Err(format(format!("header length {len} is implausible")));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(read)?;
    let mut raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| format(e.to_string()))?;
    let metadata = match raw.remove("__metadata__") {
        Some(m) => serde_json::from_value(m).map_err(|e| format(format!("__metadata__: {e}")))?,
        None => BTreeMap::new(),
    };
    let tensors = raw
        .into_iter()
        .map(|(name, v)| {
            let info = serde_json::from_value(v).map_err(|e| format(format!("{name}: {e}")))?;
            Ok((name, info))
        })
        .collect::<Result<_, InspectError>>()?;
    Ok(SafetensorsHeader { tensors, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_a_file_that_is_not_safetensors_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let mut bytes = 5u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"nope!");
        std::fs::write(&path, bytes).unwrap();
        let err = read_safetensors_header(&path).unwrap_err();
        assert!(matches!(err, InspectError::Format { .. }));
        assert!(err.to_string().contains("x.safetensors"), "{err}");
        let err = read_safetensors_header(&dir.path().join("missing.safetensors")).unwrap_err();
        assert!(matches!(err, InspectError::Read { .. }), "{err}");
    }
}
