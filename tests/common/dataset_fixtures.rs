//! Parquet fixtures in the published schemas of merve/vqav2-small (question, multiple_choice_answer,
//! image) and detection-datasets/coco (image_id, image, width, height, objects {bbox_id, category,
//! bbox, area}, ClassLabel names in the `huggingface` metadata), sharded as
//! `data/<split>-0000K-of-00002.parquet`, from the CC0/public-domain photos in assets/images with
//! hand-made annotations. Shared by the eval and notebook tests.

use std::path::Path;
use std::sync::Arc;

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

pub const COCO_NAMES: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

fn asset(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/images")
            .join(name),
    )
    .unwrap()
}

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

fn image_column(images: &[(&str, Vec<u8>)]) -> ArrayRef {
    let mut bytes = BinaryBuilder::new();
    let mut paths = StringBuilder::new();
    for (name, b) in images {
        bytes.append_value(b);
        paths.append_value(name);
    }
    let DataType::Struct(fields) = image_field().data_type().clone() else {
        unreachable!()
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

/// Writes `batch` as an HF-style shard (snappy, `huggingface` metadata) at `path`.
fn write_shard(path: &Path, batch: RecordBatch, features: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let meta = json!({"info": {"features": features}}).to_string();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![KeyValue::new("huggingface".to_string(), meta)]))
        .set_max_row_group_row_count(Some(7)) // several row groups per shard, so streaming crosses them
        .build();
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        Some(props),
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// The photos with a hand-written question each (what the image really shows).
pub fn vqa_row(i: usize) -> (String, String, (&'static str, Vec<u8>)) {
    match i % 3 {
        0 => (
            "What animal is this?".into(),
            "cat".into(),
            ("chelsea.png", asset("chelsea.png")),
        ),
        1 => (
            "What is in the cup?".into(),
            "coffee".into(),
            ("coffee.jpg", asset("coffee.jpg")),
        ),
        _ => (
            "What is the person wearing?".into(),
            "spacesuit".into(),
            ("astronaut.jpg", asset("astronaut.jpg")),
        ),
    }
}

/// merve/vqav2-small's layout: 100 rows in two shards (the notebook's seed picks rows 10, 29, 42, 58, 72, 98).
pub fn vqa_fixture(dir: &Path) {
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
    for (shard, rows) in [(0usize, 0..50usize), (1, 50..100)] {
        let rows: Vec<_> = rows.map(|i| (i, vqa_row(i))).collect();
        // Row numbers in the questions let the test see which rows were drawn.
        let questions: Vec<String> = rows
            .iter()
            .map(|(i, r)| format!("{} (row {i})", r.0))
            .collect();
        let answers: Vec<String> = rows.iter().map(|(_, r)| r.1.clone()).collect();
        let images: Vec<(&str, Vec<u8>)> =
            rows.iter().map(|(_, r)| (r.2 .0, r.2 .1.clone())).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(answers)),
                Arc::new(StringArray::from(questions)),
                image_column(&images),
            ],
        )
        .unwrap();
        write_shard(
            &dir.join(format!("data/validation-0000{shard}-of-00002.parquet")),
            batch,
            &features,
        );
    }
}

/// Hand-made COCO annotations ([x, y, w, h], category id) of the three photos.
fn coco_objects(photo: &str) -> Vec<([f32; 4], i64)> {
    match photo {
        // One cat only: not selected (the notebook wants two known objects).
        "chelsea.png" => vec![([0.0, 0.0, 410.0, 300.0], 15)],
        // Cup, spoon, the table it stands on.
        "coffee.jpg" => vec![
            ([172.0, 18.0, 238.0, 290.0], 41),
            ([325.0, 66.0, 100.0, 260.0], 44),
            ([0.0, 0.0, 600.0, 400.0], 60),
        ],
        // The astronaut, the shuttle model (an airplane in COCO's terms), and an id outside the 80 classes.
        "astronaut.jpg" => vec![
            ([18.0, 14.0, 345.0, 498.0], 0),
            ([352.0, 0.0, 112.0, 290.0], 4),
            ([278.0, 340.0, 50.0, 30.0], 80),
        ],
        _ => unreachable!(),
    }
}

/// detection-datasets/coco's layout: stream order chelsea, coffee, astronaut | chelsea, coffee.
pub fn coco_fixture(dir: &Path) {
    let features = json!({
        "image_id": {"dtype": "int64", "_type": "Value"},
        "image": {"_type": "Image"},
        "width": {"dtype": "int64", "_type": "Value"},
        "height": {"dtype": "int64", "_type": "Value"},
        "objects": {"feature": {
            "bbox_id": {"dtype": "int64", "_type": "Value"},
            "category": {"names": COCO_NAMES.to_vec(), "_type": "ClassLabel"},
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
    let sizes = |p: &str| match p {
        "chelsea.png" => (451, 300),
        "coffee.jpg" => (600, 400),
        _ => (512, 512),
    };
    let mut next_id = 1000i64;
    for (shard, photos) in [
        (0, vec!["chelsea.png", "coffee.jpg", "astronaut.jpg"]),
        (1, vec!["chelsea.png", "coffee.jpg"]),
    ] {
        let mut bbox_ids = ListBuilder::new(Int64Builder::new());
        let mut categories = ListBuilder::new(Int64Builder::new());
        let mut boxes = ListBuilder::new(FixedSizeListBuilder::new(Float32Builder::new(), 4));
        let mut areas = ListBuilder::new(Float32Builder::new());
        let mut ids = Vec::new();
        for p in &photos {
            for (b, c) in coco_objects(p) {
                next_id += 1;
                bbox_ids.values().append_value(next_id);
                categories.values().append_value(c);
                boxes.values().values().append_slice(&b);
                boxes.values().append(true);
                areas.values().append_value(b[2] * b[3]);
            }
            bbox_ids.append(true);
            categories.append(true);
            boxes.append(true);
            areas.append(true);
            ids.push(next_id);
        }
        let objects = StructArray::new(
            object_fields.clone(),
            vec![
                Arc::new(bbox_ids.finish()) as ArrayRef,
                Arc::new(categories.finish()),
                Arc::new(boxes.finish()),
                Arc::new(areas.finish()),
            ],
            None,
        );
        let images: Vec<(&str, Vec<u8>)> = photos.iter().map(|p| (*p, asset(p))).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                image_column(&images),
                Arc::new(Int64Array::from(
                    photos.iter().map(|p| sizes(p).0).collect::<Vec<i64>>(),
                )),
                Arc::new(Int64Array::from(
                    photos.iter().map(|p| sizes(p).1).collect::<Vec<i64>>(),
                )),
                Arc::new(objects),
            ],
        )
        .unwrap();
        write_shard(
            &dir.join(format!("data/val-0000{shard}-of-00002.parquet")),
            batch,
            &features,
        );
    }
}
