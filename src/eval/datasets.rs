//! The notebook's two datasets and its sample selection.
//!
//! - `merve/vqav2-small`, split `validation`: columns `question`, `multiple_choice_answer`, `image`
//!   (its published card lists exactly these three). Selection: stream order, `np.random.seed(42)`,
//!   keep an example when `np.random.random() < 0.05`, stop at N (50).
//! - `detection-datasets/coco`, split `val`: `image_id`, `image`, `width`, `height`, `objects`
//!   (`Sequence({bbox_id, category: ClassLabel(80 names), bbox: [x, y, w, h], area})`). Selection:
//!   the first N (20) images with at least two objects whose category is a known class (the
//!   notebook's `len(cats) >= 2` counts objects, not distinct classes).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use serde_json::Value;

use super::detection::{Categories, GtObject};
use super::numpy_rng::RandomState;
use super::parquet_rows::{
    column, field, image_bytes_at, int_at, list_at, list_elements, numbers, string_at, BatchStream,
};

pub const VQA_REPO: &str = "merve/vqav2-small";
pub const VQA_SPLIT: &str = "validation";
pub const VQA_SEED: u32 = 42;
pub const VQA_RATE: f64 = 0.05;
pub const VQA_DEFAULT_N: usize = 50;
pub const COCO_REPO: &str = "detection-datasets/coco";
pub const COCO_SPLIT: &str = "val";
pub const COCO_DEFAULT_N: usize = 20;

/// An encoded image as the dataset stores it.
#[derive(Clone, Debug)]
pub struct EncodedImage {
    pub bytes: Vec<u8>,
    /// A name for messages: the stored path, else `<shard>#<row>`.
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct VqaExample {
    /// Position in the split's stream (0-based): the sample's stable id.
    pub stream_index: usize,
    pub question: String,
    pub answer: String,
    pub image: EncodedImage,
}

#[derive(Clone, Debug)]
pub struct CocoExample {
    pub stream_index: usize,
    pub image_id: i64,
    pub width: i64,
    pub height: i64,
    pub objects: Vec<GtObject>,
    pub image: EncodedImage,
}

fn image_at(
    batch: &RecordBatch,
    row: usize,
    shard: &std::path::Path,
    stream_index: usize,
) -> Result<EncodedImage> {
    let (bytes, path) = image_bytes_at(column(batch, "image")?, row)?;
    let name = path.unwrap_or_else(|| format!("{}#{stream_index}", shard.display()));
    Ok(EncodedImage { bytes, name })
}

/// The notebook's VQA sample: `n` examples drawn in stream order at rate 0.05 with numpy's seed 42.
/// Fewer when the split runs out (the caller reports it).
pub fn sample_vqa(stream: BatchStream, n: usize) -> Result<Vec<VqaExample>> {
    let mut rng = RandomState::seed(VQA_SEED);
    let mut samples = Vec::new();
    let mut stream_index = 0usize;
    'shards: for item in stream {
        let (shard, batch) = item?;
        for row in 0..batch.num_rows() {
            if samples.len() >= n {
                break 'shards;
            }
            if rng.random() < VQA_RATE {
                let at =
                    |e: anyhow::Error| e.context(format!("{} row {stream_index}", shard.display()));
                let question =
                    string_at(column(&batch, "question")?, row, "question").map_err(at)?;
                let answer = string_at(
                    column(&batch, "multiple_choice_answer")?,
                    row,
                    "multiple_choice_answer",
                )
                .map_err(at)?;
                let image = image_at(&batch, row, &shard, stream_index).map_err(at)?;
                samples.push(VqaExample {
                    stream_index,
                    question,
                    answer,
                    image,
                });
            }
            stream_index += 1;
        }
    }
    Ok(samples)
}

pub const VQA_COLUMNS: &[&str] = &["question", "multiple_choice_answer", "image"];
pub const COCO_COLUMNS: &[&str] = &["image_id", "image", "width", "height", "objects"];

/// The objects of row `row`: `struct {bbox: list<[4]>, category: list<int>, ...}` (a `Sequence` of a
/// dict, as `datasets` stores it) or `list<struct {bbox, category, ...}>`.
fn objects_at(objects: &ArrayRef, row: usize) -> Result<Vec<GtObject>> {
    let (boxes, categories): (Vec<ArrayRef>, Vec<f64>) = match objects.data_type() {
        DataType::Struct(_) => {
            anyhow::ensure!(!objects.is_null(row), "objects is null");
            let s = objects.as_struct();
            let bbox = list_at(field(s, "bbox")?, row, "objects.bbox")?;
            let category = list_at(field(s, "category")?, row, "objects.category")?;
            (
                list_elements(&bbox, "objects.bbox")?,
                numbers(&category, "objects.category")?,
            )
        }
        DataType::List(_) | DataType::LargeList(_) => {
            let items = list_at(objects, row, "objects")?;
            let s = items
                .as_struct_opt()
                .context("objects is a list of something other than structs")?;
            (
                list_elements(field(s, "bbox")?, "objects.bbox")?,
                numbers(field(s, "category")?, "objects.category")?,
            )
        }
        other => bail!("objects is {other}, not a struct of lists or a list of structs"),
    };
    anyhow::ensure!(
        boxes.len() == categories.len(),
        "objects has {} boxes but {} categories",
        boxes.len(),
        categories.len()
    );
    boxes
        .iter()
        .zip(categories)
        .map(|(b, category)| {
            let v = numbers(b, "objects.bbox")?;
            let bbox: [f64; 4] = v
                .as_slice()
                .try_into()
                .map_err(|_| anyhow::anyhow!("a bbox has {} numbers, not 4", v.len()))?;
            Ok(GtObject {
                bbox,
                category: category as i64,
            })
        })
        .collect()
}

/// The notebook's COCO sample: the first `n` images with at least two objects of known categories.
pub fn sample_coco(
    stream: BatchStream,
    categories: &Categories,
    n: usize,
) -> Result<Vec<CocoExample>> {
    let mut samples = Vec::new();
    let mut stream_index = 0usize;
    'shards: for item in stream {
        let (shard, batch) = item?;
        for row in 0..batch.num_rows() {
            if samples.len() >= n {
                break 'shards;
            }
            let at =
                |e: anyhow::Error| e.context(format!("{} row {stream_index}", shard.display()));
            let objects = objects_at(column(&batch, "objects")?, row).map_err(at)?;
            let known = objects
                .iter()
                .filter(|o| categories.name(o.category).is_some())
                .count();
            if known >= 2 {
                samples.push(CocoExample {
                    stream_index,
                    image_id: int_at(column(&batch, "image_id")?, row, "image_id").map_err(at)?,
                    width: int_at(column(&batch, "width")?, row, "width").map_err(at)?,
                    height: int_at(column(&batch, "height")?, row, "height").map_err(at)?,
                    objects,
                    image: image_at(&batch, row, &shard, stream_index).map_err(at)?,
                });
            }
            stream_index += 1;
        }
    }
    Ok(samples)
}

/// The ClassLabel names of `objects.category` from the `datasets` features in a shard's
/// `huggingface` metadata (`{"info": {"features": {...}}}`), whatever nesting the writer's version
/// used (`Sequence`/`List` with `feature`, or a plain dict).
pub fn category_names(metadata: &Value) -> Option<Vec<String>> {
    let features = metadata
        .get("info")
        .and_then(|i| i.get("features"))
        .unwrap_or(metadata);
    let objects = features.get("objects")?;
    let category = find_key(objects, "category")?;
    let names = find_key(category, "names")?.as_array()?;
    names.iter().map(|n| n.as_str().map(String::from)).collect()
}

/// The value under `key` in `v` or, breadth first, in the objects and lists nested in it.
fn find_key<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let mut queue = std::collections::VecDeque::from([v]);
    while let Some(node) = queue.pop_front() {
        match node {
            Value::Object(map) => {
                if let Some(found) = map.get(key) {
                    return Some(found);
                }
                queue.extend(map.values());
            }
            Value::Array(items) => queue.extend(items.iter()),
            _ => {}
        }
    }
    None
}

/// The shards of a dataset's split, from a local directory.
pub fn local_shards(dir: &std::path::Path, split: &str) -> Result<Vec<PathBuf>> {
    super::parquet_rows::shard_files(dir, split)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_names_are_found_in_the_sequence_layout_datasets_writes() {
        let meta = serde_json::json!({"info": {"features": {
            "image_id": {"dtype": "int64", "_type": "Value"},
            "objects": {"feature": {
                "bbox_id": {"dtype": "int64", "_type": "Value"},
                "category": {"names": ["person", "bicycle"], "_type": "ClassLabel"},
                "bbox": {"feature": {"dtype": "float64", "_type": "Value"}, "length": 4, "_type": "Sequence"}
            }, "_type": "Sequence"}
        }}});
        assert_eq!(
            category_names(&meta),
            Some(vec!["person".to_string(), "bicycle".to_string()])
        );
        let list_layout = serde_json::json!({"info": {"features": {"objects": {"_type": "List",
            "feature": {"category": {"_type": "List", "feature": {"_type": "ClassLabel", "names": ["cat"]}}}}}}});
        assert_eq!(category_names(&list_layout), Some(vec!["cat".to_string()]));
        assert_eq!(
            category_names(&serde_json::json!({"info": {"features": {}}})),
            None
        );
    }
}
