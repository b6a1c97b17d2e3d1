//! Reading a Hugging Face dataset split stored as parquet shards (`data/<split>-00000-of-0000N.parquet`
//! or any `*.parquet` files in a directory), streamed in file order one record batch at a time, and
//! the column shapes the `datasets` library writes: images as `struct {bytes, path}`, sequences as
//! lists, ClassLabel names in the schema's `huggingface` metadata.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use serde_json::Value;

/// Rows per record batch: small, so that images (hundreds of kB each) are held a few at a time.
const BATCH_ROWS: usize = 16;

/// The shards of `split` under `dir`, in the order `datasets` streams them (file name order):
/// `dir/data/<split>-*.parquet`, else `dir/<split>-*.parquet`, else `dir/<split>/*.parquet`,
/// else every `*.parquet` directly in `dir`.
pub fn shard_files(dir: &Path, split: &str) -> Result<Vec<PathBuf>> {
    anyhow::ensure!(
        dir.is_dir(),
        "dataset directory {} does not exist",
        dir.display()
    );
    let prefix = format!("{split}-");
    let candidates: [(PathBuf, Option<&str>); 4] = [
        (dir.join("data"), Some(prefix.as_str())),
        (dir.to_path_buf(), Some(prefix.as_str())),
        (dir.join(split), None),
        (dir.to_path_buf(), None),
    ];
    for (folder, name_prefix) in candidates {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name_prefix.is_none_or(|pre| name.starts_with(pre))
            })
            .collect();
        if !files.is_empty() {
            files.sort();
            return Ok(files);
        }
    }
    bail!("dataset directory {} holds no parquet files for split {split:?} (looked for data/{split}-*.parquet, {split}-*.parquet, {split}/*.parquet, *.parquet)", dir.display())
}

/// Record batches of `columns` from every shard in order, read lazily.
pub struct BatchStream {
    /// Shards in order; produced lazily so a hub download happens only when the stream gets there.
    files: Box<dyn Iterator<Item = Result<PathBuf>>>,
    columns: Vec<&'static str>,
    current: Option<(PathBuf, ParquetRecordBatchReader)>,
}

impl BatchStream {
    pub fn new(files: Vec<PathBuf>, columns: &[&'static str]) -> Self {
        Self::lazy(Box::new(files.into_iter().map(Ok)), columns)
    }

    pub fn lazy(
        files: Box<dyn Iterator<Item = Result<PathBuf>>>,
        columns: &[&'static str],
    ) -> Self {
        Self {
            files,
            columns: columns.to_vec(),
            current: None,
        }
    }

    fn open(&self, path: &Path) -> Result<ParquetRecordBatchReader> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .with_context(|| format!("{} is not a readable parquet file", path.display()))?;
        let schema = builder.schema().clone();
        let mut roots = Vec::new();
        for name in &self.columns {
            let index = schema.index_of(name).map_err(|_| {
                anyhow::anyhow!(
                    "{} has no column {name:?} (columns: {})",
                    path.display(),
                    column_names(&schema)
                )
            })?;
            roots.push(index);
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .with_context(|| format!("cannot read {}", path.display()))
    }
}

fn column_names(schema: &arrow_schema::Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Iterator for BatchStream {
    /// A batch and the shard it came from.
    type Item = Result<(PathBuf, RecordBatch)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let path = match self.files.next()? {
                    Ok(path) => path,
                    Err(e) => return Some(Err(e)),
                };
                match self.open(&path) {
                    Ok(reader) => self.current = Some((path, reader)),
                    Err(e) => return Some(Err(e)),
                }
            }
            let (path, reader) = self.current.as_mut()?;
            match reader.next() {
                Some(Ok(batch)) => return Some(Ok((path.clone(), batch))),
                Some(Err(e)) => {
                    let path = path.clone();
                    self.current = None;
                    return Some(Err(
                        anyhow::Error::new(e).context(format!("cannot decode {}", path.display()))
                    ));
                }
                None => self.current = None,
            }
        }
    }
}

/// The `huggingface` key-value metadata of a shard (the `datasets` features, JSON).
pub fn huggingface_metadata(path: &Path) -> Result<Option<Value>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a readable parquet file", path.display()))?;
    let Some(kv) = builder.metadata().file_metadata().key_value_metadata() else {
        return Ok(None);
    };
    let Some(text) = kv
        .iter()
        .find(|e| e.key == "huggingface")
        .and_then(|e| e.value.clone())
    else {
        return Ok(None);
    };
    let value = serde_json::from_str(&text)
        .with_context(|| format!("{}: the huggingface metadata is not JSON", path.display()))?;
    Ok(Some(value))
}

/// A named column of a batch.
pub fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .with_context(|| format!("no column {name:?}"))
}

/// A struct field by name.
pub fn field<'a>(s: &'a StructArray, name: &str) -> Result<&'a ArrayRef> {
    s.column_by_name(name)
        .with_context(|| format!("the struct has no field {name:?}"))
}

/// A string cell (null reads as an error: the notebook's columns are never null).
pub fn string_at(array: &ArrayRef, row: usize, what: &str) -> Result<String> {
    anyhow::ensure!(!array.is_null(row), "{what} is null in row {row}");
    match array.data_type() {
        DataType::Utf8 => Ok(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Ok(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Ok(array.as_string_view().value(row).to_string()),
        other => bail!("{what} is {other}, not a string"),
    }
}

/// An integer cell of any integer type.
pub fn int_at(array: &ArrayRef, row: usize, what: &str) -> Result<i64> {
    anyhow::ensure!(!array.is_null(row), "{what} is null in row {row}");
    Ok(match array.data_type() {
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).into(),
        DataType::UInt64 => i64::try_from(array.as_primitive::<UInt64Type>().value(row))?,
        other => bail!("{what} is {other}, not an integer"),
    })
}

/// Every value of a numeric array as f64 (integers and floats alike; nulls are an error).
pub fn numbers(array: &ArrayRef, what: &str) -> Result<Vec<f64>> {
    anyhow::ensure!(array.null_count() == 0, "{what} holds nulls");
    Ok(match array.data_type() {
        DataType::Float32 => array
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .map(|&v| f64::from(v))
            .collect(),
        DataType::Float64 => array.as_primitive::<Float64Type>().values().to_vec(),
        _ => (0..array.len())
            .map(|i| int_at(array, i, what).map(|v| v as f64))
            .collect::<Result<_>>()?,
    })
}

/// The elements of list cell `row` (List, LargeList or FixedSizeList).
pub fn list_at(array: &ArrayRef, row: usize, what: &str) -> Result<ArrayRef> {
    anyhow::ensure!(!array.is_null(row), "{what} is null in row {row}");
    Ok(match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().value(row),
        DataType::LargeList(_) => array.as_list::<i64>().value(row),
        DataType::FixedSizeList(..) => array.as_fixed_size_list().value(row),
        other => bail!("{what} is {other}, not a list"),
    })
}

/// Each element of a list array (itself a list per element) as its own array.
pub fn list_elements(array: &ArrayRef, what: &str) -> Result<Vec<ArrayRef>> {
    (0..array.len()).map(|i| list_at(array, i, what)).collect()
}

/// The encoded bytes of an image cell (`struct {bytes, path}` as `datasets` stores `Image()`).
pub fn image_bytes_at(array: &ArrayRef, row: usize) -> Result<(Vec<u8>, Option<String>)> {
    anyhow::ensure!(!array.is_null(row), "the image is null in row {row}");
    let DataType::Struct(_) = array.data_type() else {
        bail!(
            "the image column is {}, not struct {{bytes, path}}",
            array.data_type()
        )
    };
    let s = array.as_struct();
    let bytes = field(s, "bytes")?;
    anyhow::ensure!(
        !bytes.is_null(row),
        "the image in row {row} has no bytes (only a path): such datasets need their image files, which this reader does not fetch"
    );
    let data = match bytes.data_type() {
        DataType::Binary => bytes.as_binary::<i32>().value(row).to_vec(),
        DataType::LargeBinary => bytes.as_binary::<i64>().value(row).to_vec(),
        DataType::BinaryView => bytes.as_binary_view().value(row).to_vec(),
        other => bail!("image bytes are {other}, not binary"),
    };
    let path = s
        .column_by_name("path")
        .filter(|p| !p.is_null(row))
        .and_then(|p| string_at(p, row, "image path").ok());
    Ok((data, path))
}
