//! Parquet fixtures in the published schemas of merve/vqav2-small (question, multiple_choice_answer,
//! image) and detection-datasets/coco (image_id, image, width, height, objects {bbox_id, category,
//! bbox, area}, ClassLabel names in the `huggingface` metadata), sharded as
//! `data/<split>-0000K-of-00002.parquet`, from the CC0/public-domain photos in assets/images with
//! hand-made annotations. Shared by the eval and notebook tests.

use std::path::Path;

use vlmbench::eval::dataset_writer::{
    write_coco_shard, write_vqa_shard, CocoObject, CocoRow, ImageCell, VqaRow,
};

/// Rows per row group: several groups per shard, so streaming crosses them.
const ROWS_PER_GROUP: Option<usize> = Some(7);

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
    for (shard, rows) in [(0usize, 0..50usize), (1, 50..100)] {
        let rows: Vec<_> = rows.map(|i| (i, vqa_row(i))).collect();
        // Row numbers in the questions let the test see which rows were drawn.
        let questions: Vec<String> = rows
            .iter()
            .map(|(i, r)| format!("{} (row {i})", r.0))
            .collect();
        let cells: Vec<VqaRow> = rows
            .iter()
            .zip(&questions)
            .map(|((_, r), q)| VqaRow {
                question: q,
                answer: &r.1,
                image: ImageCell {
                    bytes: &r.2 .1,
                    path: r.2 .0,
                },
            })
            .collect();
        let path = dir.join(format!("data/validation-0000{shard}-of-00002.parquet"));
        write_vqa_shard(&path, &cells, ROWS_PER_GROUP).unwrap();
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
        let bytes: Vec<Vec<u8>> = photos.iter().map(|p| asset(p)).collect();
        let rows: Vec<CocoRow> = photos
            .iter()
            .zip(&bytes)
            .map(|(p, b)| {
                let objects: Vec<CocoObject> = coco_objects(p)
                    .into_iter()
                    .map(|(bbox, category)| {
                        next_id += 1;
                        CocoObject {
                            bbox_id: next_id,
                            category,
                            bbox,
                        }
                    })
                    .collect();
                CocoRow {
                    image_id: next_id,
                    image: ImageCell { bytes: b, path: p },
                    width: sizes(p).0,
                    height: sizes(p).1,
                    objects,
                }
            })
            .collect();
        let path = dir.join(format!("data/val-0000{shard}-of-00002.parquet"));
        write_coco_shard(&path, &COCO_NAMES, &rows, ROWS_PER_GROUP).unwrap();
    }
}
