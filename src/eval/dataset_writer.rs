//! Writes parquet shards in the published layouts of the notebook's two datasets (what
//! [`super::datasets`] reads): `merve/vqav2-small` (`multiple_choice_answer`, `question`, `image`)
//! and `detection-datasets/coco` (`image_id`, `image`, `width`, `height`, `objects` with
//! `bbox_id`, `category` as a ClassLabel whose names travel in the `huggingface` metadata, `bbox`
//! `[x, y, w, h]` and `area`). Snappy-compressed, as the hub's shards are.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::builder::{
    BinaryBuilder, FixedSizeListBuilder, Float32Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde_json::{json, Value};

/// An encoded image (PNG, JPEG) and the path the dataset records for it.
pub struct ImageCell<'a> {
    pub bytes: &'a [u8],
    pub path: &'a str,
}

/// One row of the VQA layout.
pub struct VqaRow<'a> {
    pub question: &'a str,
    pub answer: &'a str,
    pub image: ImageCell<'a>,
}

/// One object of a COCO row: `[x, y, w, h]` in pixels and its index into the class names.
pub struct CocoObject {
    pub bbox_id: i64,
    pub category: i64,
    pub bbox: [f32; 4],
}

/// One row of the COCO layout.
pub struct CocoRow<'a> {
    pub image_id: i64,
    pub image: ImageCell<'a>,
    pub width: i64,
    pub height: i64,
    pub objects: Vec<CocoObject>,
}

/// Rows per row group (`None`: the writer's default). Small groups make a reader cross them.
pub type RowsPerGroup = Option<usize>;

fn image_field() -> Field {
    Field::new(
        "image",
        DataType::Struct(Fields::from(vec![
            Field::new("bytes", DataType::Binary, true),
            Field::new("path", DataType::Utf8, true),
        ])),
        true,
    )
}

fn image_column<'a>(images: impl Iterator<Item = &'a ImageCell<'a>>) -> ArrayRef {
    let mut bytes = BinaryBuilder::new();
    let mut paths = StringBuilder::new();
    for image in images {
        bytes.append_value(image.bytes);
        paths.append_value(image.path);
    }
    let DataType::Struct(fields) = image_field().data_type().clone() else {
        unreachable!("the image field is a struct")
    };
    Arc::new(StructArray::new(
        fields,
        vec![
            Arc::new(bytes.finish()) as ArrayRef,
            Arc::new(paths.finish()),
        ],
        None,
    ))
}

/// Writes `batch` with the dataset's `features` in the `huggingface` metadata.
fn write_shard(path: &Path, batch: RecordBatch, features: Value, rows: RowsPerGroup) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let meta = json!({"info": {"features": features}}).to_string();
    let mut props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![KeyValue::new("huggingface".to_string(), meta)]));
    if let Some(rows) = rows {
        props = props.set_max_row_group_row_count(Some(rows));
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let write = || -> parquet::errors::Result<()> {
        let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props.build()))?;
        w.write(&batch)?;
        w.close().map(|_| ())
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// A shard of `merve/vqav2-small`'s layout at `path`.
pub fn write_vqa_shard(path: &Path, rows: &[VqaRow], per_group: RowsPerGroup) -> Result<()> {
    let features = json!({
        "multiple_choice_answer": {"dtype": "string", "_type": "Value"},
        "question": {"dtype": "string", "_type": "Value"},
        "image": {"_type": "Image"},
    });
    let schema = Arc::new(Schema::new(vec![
        Field::new("multiple_choice_answer", DataType::Utf8, true),
        Field::new("question", DataType::Utf8, true),
        image_field(),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.answer))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.question),
            )),
            image_column(rows.iter().map(|r| &r.image)),
        ],
    )?;
    write_shard(path, batch, features, per_group)
}

/// A shard of `detection-datasets/coco`'s layout at `path`, its categories named `names`.
pub fn write_coco_shard(
    path: &Path,
    names: &[&str],
    rows: &[CocoRow],
    per_group: RowsPerGroup,
) -> Result<()> {
    let features = json!({
        "image_id": {"dtype": "int64", "_type": "Value"},
        "image": {"_type": "Image"},
        "width": {"dtype": "int64", "_type": "Value"},
        "height": {"dtype": "int64", "_type": "Value"},
        "objects": {"feature": {
            "bbox_id": {"dtype": "int64", "_type": "Value"},
            "category": {"names": names, "_type": "ClassLabel"},
            "bbox": {"feature": {"dtype": "float32", "_type": "Value"}, "length": 4, "_type": "Sequence"},
            "area": {"dtype": "float32", "_type": "Value"},
        }, "_type": "Sequence"},
    });
    let list = |name: &str, item: DataType| {
        Field::new(
            name,
            DataType::List(Arc::new(Field::new("item", item, true))),
            true,
        )
    };
    let bbox_item =
        DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), 4);
    let object_fields = Fields::from(vec![
        list("bbox_id", DataType::Int64),
        list("category", DataType::Int64),
        list("bbox", bbox_item),
        list("area", DataType::Float32),
    ]);
    let schema = Arc::new(Schema::new(vec![
        Field::new("image_id", DataType::Int64, true),
        image_field(),
        Field::new("width", DataType::Int64, true),
        Field::new("height", DataType::Int64, true),
        Field::new("objects", DataType::Struct(object_fields.clone()), true),
    ]));
    let mut bbox_ids = ListBuilder::new(Int64Builder::new());
    let mut categories = ListBuilder::new(Int64Builder::new());
    let mut boxes = ListBuilder::new(FixedSizeListBuilder::new(Float32Builder::new(), 4));
    let mut areas = ListBuilder::new(Float32Builder::new());
    for row in rows {
        for o in &row.objects {
            bbox_ids.values().append_value(o.bbox_id);
            categories.values().append_value(o.category);
            boxes.values().values().append_slice(&o.bbox);
            boxes.values().append(true);
            areas.values().append_value(o.bbox[2] * o.bbox[3]);
        }
        bbox_ids.append(true);
        categories.append(true);
        boxes.append(true);
        areas.append(true);
    }
    let objects = StructArray::new(
        object_fields,
        vec![
            Arc::new(bbox_ids.finish()) as ArrayRef,
            Arc::new(categories.finish()),
            Arc::new(boxes.finish()),
            Arc::new(areas.finish()),
        ],
        None,
    );
    let ints = |f: fn(&CocoRow) -> i64| Arc::new(Int64Array::from_iter_values(rows.iter().map(f)));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            ints(|r| r.image_id),
            image_column(rows.iter().map(|r| &r.image)),
            ints(|r| r.width),
            ints(|r| r.height),
            Arc::new(objects),
        ],
    )?;
    write_shard(path, batch, features, per_group)
}
