//! The notebook's detections: COCO ground truth (`coco_gt_detections`) and the model's boxes
//! (`parse_gemma_detections`), as supervision holds them: float32 corners, int32 class ids and the
//! class name of each box.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::tasks::coords::{GemmaBox, ImageSize, PixelBox};
use crate::tasks::json_fragment::{notebook_parse, JsonKind};
use crate::tasks::labels::normalize_label;

/// The notebook's `MIN_GT_AREA`: ground-truth boxes smaller than 32x32 pixels are not scored.
pub const MIN_GT_AREA: f64 = 32.0 * 32.0;

/// The dataset's categories: contiguous ids 0.. with their ClassLabel names (`COCO_CATS`), and the
/// lookup of a model's label after `normalize_label` (`COCO_NAME_TO_ID`).
#[derive(Clone, Debug)]
pub struct Categories {
    names: Vec<String>,
    by_label: HashMap<String, i32>,
}

impl Categories {
    pub fn new(names: Vec<String>) -> Self {
        // A dict comprehension: a later name that normalizes to the same label wins.
        let by_label = names
            .iter()
            .enumerate()
            .map(|(id, name)| (normalize_label(name), id as i32))
            .collect();
        Self { names, by_label }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// `COCO_CATS.get(id)`.
    pub fn name(&self, id: i64) -> Option<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.names.get(i))
            .map(String::as_str)
    }

    /// `COCO_NAME_TO_ID.get(label)` for an already normalized label.
    pub fn id_of(&self, normalized_label: &str) -> Option<i32> {
        self.by_label.get(normalized_label).copied()
    }
}

/// One box as supervision's `Detections` row: corners rounded to float32 like the notebook's arrays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// `[x_min, y_min, x_max, y_max]` in pixels.
    pub xyxy: [f32; 4],
    pub class_id: i32,
    pub class_name: String,
}

impl Detection {
    pub fn pixels(&self) -> PixelBox {
        PixelBox::from_xyxy(self.xyxy.map(f64::from))
    }

    pub fn has_nan(&self) -> bool {
        self.xyxy.iter().any(|v| v.is_nan())
    }
}

/// A COCO annotation as the dataset stores it: `[x, y, width, height]` and a category id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GtObject {
    pub bbox: [f64; 4],
    pub category: i64,
}

/// The notebook's `coco_gt_detections`: boxes to float32 `xyxy` (sums in float32, as
/// `sv.xywh_to_xyxy` on a float32 array), unknown categories and boxes under [`MIN_GT_AREA`] dropped.
pub fn ground_truth(objects: &[GtObject], categories: &Categories) -> Vec<Detection> {
    let mut kept = Vec::new();
    for object in objects {
        let [x, y, w, h] = object.bbox.map(|v| v as f32);
        let xyxy = [x, y, x + w, y + h];
        // The notebook casts the ids to int32 before the lookup.
        let class_id = object.category as i32;
        let Some(name) = categories.name(i64::from(class_id)) else {
            continue;
        };
        // `max(0.0, float(box[2] - box[0]))`: the difference is taken in float32.
        let width = f64::from(xyxy[2] - xyxy[0]).max(0.0);
        let height = f64::from(xyxy[3] - xyxy[1]).max(0.0);
        if width * height < MIN_GT_AREA {
            continue;
        }
        kept.push(Detection {
            xyxy,
            class_id,
            class_name: name.to_string(),
        });
    }
    kept
}

/// Python truthiness of a JSON value (`a or b` picks the first truthy one).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `det.get(k1) or det.get(k2) or ...`: the first truthy value (falsy everywhere: nothing usable).
fn first_truthy<'a>(det: &'a serde_json::Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().filter_map(|k| det.get(*k)).find(|v| truthy(v))
}

/// Python's `str(label)` for the values a label can plausibly be; others never name a COCO class.
fn python_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Python's `float(v)` for a JSON value; `None` where it raises ValueError/TypeError.
fn python_float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        // float(' 12.5 ') == 12.5; 'nan' and 'inf' parse too.
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

/// The notebook's `parse_gemma_detections`: its exact JSON extraction (any failure gives no
/// detections), label and box key aliases, labels that are not COCO classes skipped, `box_2d`
/// `[y_min, x_min, y_max, x_max]` in 0..=1000 to clipped pixels, boxes at most 1 px wide or high dropped.
pub fn parse_predictions(text: &str, size: ImageSize, categories: &Categories) -> Vec<Detection> {
    if text.is_empty() {
        return Vec::new();
    }
    let Some(Value::Array(dets)) = notebook_parse(text, JsonKind::Array) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for det in &dets {
        let Value::Object(det) = det else { continue };
        let Some(label) =
            first_truthy(det, &["label", "class", "name", "object"]).and_then(python_str)
        else {
            continue;
        };
        let label = normalize_label(&label);
        let Some(class_id) = categories.id_of(&label) else {
            continue;
        };
        let Some(Value::Array(coords)) =
            first_truthy(det, &["box_2d", "box", "bbox", "bounding_box"])
        else {
            continue;
        };
        if coords.len() != 4 {
            continue;
        }
        let Some(values) = coords
            .iter()
            .map(python_float)
            .collect::<Option<Vec<f64>>>()
        else {
            continue;
        };
        // float('nan') parses, and supervision 0.31 then refuses the whole Detections (the notebook's
        // cell would stop with a ValueError); we drop that one box instead.
        if values.iter().any(|v| v.is_nan()) {
            continue;
        }
        let pixels =
            GemmaBox::from_box_2d([values[0], values[1], values[2], values[3]]).to_pixels(size);
        if pixels.is_degenerate() {
            continue;
        }
        out.push(Detection {
            xyxy: pixels.xyxy().map(|v| v as f32),
            class_id,
            class_name: label,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats() -> Categories {
        Categories::new(
            ["person", "bicycle", "car", "tv", "dining table"]
                .map(String::from)
                .to_vec(),
        )
    }

    #[test]
    fn small_and_unknown_ground_truth_is_dropped() {
        let objects = [
            GtObject {
                bbox: [10.0, 10.0, 31.0, 33.0],
                category: 0,
            }, // 1023 px²
            GtObject {
                bbox: [10.0, 10.0, 32.0, 32.0],
                category: 1,
            }, // exactly 32x32: kept
            GtObject {
                bbox: [0.0, 0.0, 100.0, 100.0],
                category: 77,
            }, // not a known category
        ];
        let gt = ground_truth(&objects, &cats());
        assert_eq!(gt.len(), 1);
        assert_eq!(gt[0].class_name, "bicycle");
        assert_eq!(gt[0].xyxy, [10.0, 10.0, 42.0, 42.0]);
    }

    #[test]
    fn predictions_use_aliases_key_fallbacks_and_skip_bad_boxes() {
        let text = r#"```json
[{"label": "Man", "box_2d": [100, 200, 500, 600]},
 {"class": "television", "bbox": ["0", 0, 1000, 1000]},
 {"label": "unicorn", "box_2d": [0, 0, 10, 10]},
 {"label": "car", "box_2d": [0, 0, 1, 1000]},
 {"label": "", "name": "car", "box": [0, 0, 500, 500], "box_2d": []},
 {"label": "car", "box_2d": [1, 2, 3]},
 "not an object"]
```"#;
        let dets = parse_predictions(text, ImageSize::new(1000, 500), &cats());
        let got: Vec<(&str, [f32; 4])> = dets
            .iter()
            .map(|d| (d.class_name.as_str(), d.xyxy))
            .collect();
        assert_eq!(
            got,
            vec![
                ("person", [200.0, 50.0, 600.0, 250.0]),
                ("tv", [0.0, 0.0, 1000.0, 500.0]),
                ("car", [0.0, 0.0, 500.0, 250.0])
            ]
        );
    }

    #[test]
    fn unparseable_answers_give_no_detections() {
        assert!(parse_predictions("", ImageSize::new(10, 10), &cats()).is_empty());
        assert!(parse_predictions("I see a car.", ImageSize::new(10, 10), &cats()).is_empty());
        assert!(parse_predictions(
            "[{\"label\": \"car\", \"box_2d\": [0, 0, 5",
            ImageSize::new(10, 10),
            &cats()
        )
        .is_empty());
        assert!(
            parse_predictions("{\"label\": \"car\"}", ImageSize::new(10, 10), &cats()).is_empty()
        );
        // NaN coordinates: the notebook would stop with supervision's ValueError; we drop the box.
        let nan = r#"[{"label": "car", "box_2d": ["nan", 0, 5, 5]}, {"label": "car", "box_2d": [0, 0, 500, 500]}]"#;
        assert_eq!(
            parse_predictions(nan, ImageSize::new(10, 10), &cats()).len(),
            1
        );
    }
}
