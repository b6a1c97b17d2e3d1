"""Writes the eval test fixtures with the Hugging Face `datasets` library itself, so that vlmbench's
parquet reader is checked against files laid out exactly as the hub's (tests/eval_cli.rs).

    write_eval_fixtures.py OUT_DIR PHOTOS_DIR

OUT_DIR/vqav2-small: merve/vqav2-small's features (multiple_choice_answer, question, image), 100 rows,
  data/validation-0000K-of-00002.parquet.
OUT_DIR/coco: detection-datasets/coco's features (image_id, image, width, height,
  objects = Sequence({bbox_id, category: ClassLabel(80 COCO names), bbox: Sequence(float32, 4), area})),
  5 rows, data/val-0000K-of-00002.parquet.
The rows are the same as the Rust-written fixtures in tests/eval_cli.rs (same photos, questions,
hand-made annotations), so both must evaluate to the same samples.
"""
import os
import sys

import pyarrow as pa
from datasets import ClassLabel, Dataset, DatasetInfo, Features, Image, Sequence, Value
from datasets.table import InMemoryTable

COCO_NAMES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
]

VQA = [
    ("What animal is this?", "cat", "chelsea.png"),
    ("What is in the cup?", "coffee", "coffee.jpg"),
    ("What is the person wearing?", "spacesuit", "astronaut.jpg"),
]

OBJECTS = {
    "chelsea.png": [([0.0, 0.0, 410.0, 300.0], 15)],
    "coffee.jpg": [([172.0, 18.0, 238.0, 290.0], 41), ([325.0, 66.0, 100.0, 260.0], 44), ([0.0, 0.0, 600.0, 400.0], 60)],
    "astronaut.jpg": [([18.0, 14.0, 345.0, 498.0], 0), ([352.0, 0.0, 112.0, 290.0], 4), ([278.0, 340.0, 50.0, 30.0], 80)],
}
SIZES = {"chelsea.png": (451, 300), "coffee.jpg": (600, 400), "astronaut.jpg": (512, 512)}


def write(rows, features, path, name):
    """Rows already in storage form, through `datasets`' own schema (with its huggingface metadata)
    and its to_parquet. A fixed fingerprint skips `datasets`' content hashing (irrelevant here)."""
    table = InMemoryTable(pa.Table.from_pydict(rows, schema=features.arrow_schema))
    ds = Dataset(table, info=DatasetInfo(features=features), fingerprint=name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds.to_parquet(path)


def main():
    out, photos = sys.argv[1], sys.argv[2]
    data = {name: open(os.path.join(photos, name), "rb").read() for name in SIZES}

    vqa_features = Features({"multiple_choice_answer": Value("string"), "question": Value("string"), "image": Image()})
    for shard, rows in [(0, range(0, 50)), (1, range(50, 100))]:
        q, a, im = [], [], []
        for i in rows:
            question, answer, photo = VQA[i % 3]
            q.append(f"{question} (row {i})")
            a.append(answer)
            im.append({"bytes": data[photo], "path": photo})
        path = os.path.join(out, "vqav2-small", "data", f"validation-0000{shard}-of-00002.parquet")
        write({"multiple_choice_answer": a, "question": q, "image": im}, vqa_features, path, f"vqa-{shard}")

    # Rows go in as storage (ClassLabel ids are int64 there), so the out-of-range id 80 is kept, as
    # in a dump whose annotations name a class the label list lacks.
    coco_features = Features({
        "image_id": Value("int64"),
        "image": Image(),
        "width": Value("int64"),
        "height": Value("int64"),
        "objects": Sequence({
            "bbox_id": Value("int64"),
            "category": ClassLabel(names=COCO_NAMES),
            "bbox": Sequence(Value("float32"), length=4),
            "area": Value("float32"),
        }),
    })
    next_id = 1000
    for shard, photos_in in [(0, ["chelsea.png", "coffee.jpg", "astronaut.jpg"]), (1, ["chelsea.png", "coffee.jpg"])]:
        rows = {"image_id": [], "image": [], "width": [], "height": [], "objects": []}
        for p in photos_in:
            ids, cats, boxes, areas = [], [], [], []
            for box, cat in OBJECTS[p]:
                next_id += 1
                ids.append(next_id)
                cats.append(cat)
                boxes.append(box)
                areas.append(box[2] * box[3])
            rows["image_id"].append(next_id)
            rows["image"].append({"bytes": data[p], "path": p})
            rows["width"].append(SIZES[p][0])
            rows["height"].append(SIZES[p][1])
            rows["objects"].append({"bbox_id": ids, "category": cats, "bbox": boxes, "area": areas})
        path = os.path.join(out, "coco", "data", f"val-0000{shard}-of-00002.parquet")
        write(rows, coco_features, path, f"coco-{shard}")


if __name__ == "__main__":
    main()
