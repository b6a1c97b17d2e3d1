//! Turning a model's JSON answer into typed boxes, points and polygons.
//!
//! Real answers drift from the requested shape: a single object instead of an array, the list
//! wrapped in `{"objects": [...]}`, the notebook's key aliases (`label`/`class`/`name`/`object`;
//! `box_2d`/`box`/`bbox`/`bounding_box`; `polygon`/`segmentation`/`points`), numbers as strings.
//! Those are accepted. An element that cannot be read is skipped with its reason (never silently);
//! an answer with no usable JSON at all is an [`AnswerError`].

use serde::Serialize;
use serde_json::{Map, Value};

use super::coords::{GemmaBox, GemmaPoint};
use super::json_fragment::{find_json, JsonError};

/// Keys that may hold an element's label, in the notebook's order of preference.
pub const LABEL_KEYS: [&str; 4] = ["label", "class", "name", "object"];
/// Keys that may hold a `box_2d`, in the notebook's order of preference.
pub const BOX_KEYS: [&str; 4] = ["box_2d", "box", "bbox", "bounding_box"];
/// Keys that may hold a polygon, in the notebook's order of preference.
pub const POLYGON_KEYS: [&str; 3] = ["polygon", "segmentation", "points"];
/// Keys that may hold a point `[y, x]`.
pub const POINT_KEYS: [&str; 2] = ["point", "point_2d"];
/// Keys under which a model may wrap its list of elements in an object.
const LIST_KEYS: [&str; 6] = [
    "objects",
    "detections",
    "boxes",
    "points",
    "results",
    "items",
];

/// Why an answer could not be read at all.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AnswerError {
    #[error(transparent)]
    Json(#[from] JsonError),
    #[error("the answer's JSON has the wrong shape: {0}")]
    Shape(String),
}

/// An element of the answer that was left out, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Skipped {
    /// Position in the answer's list.
    pub index: usize,
    pub reason: String,
}

/// The elements read from an answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Parsed<T> {
    pub items: Vec<T>,
    pub skipped: Vec<Skipped>,
    /// The answer was cut off; only its complete elements are here.
    pub truncated: bool,
}

/// One box as the model wrote it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BoxAnswer {
    pub label: Option<String>,
    pub box_2d: GemmaBox,
}

/// One point as the model wrote it (`[y, x]`, 0..=1000, like `box_2d`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PointAnswer {
    pub label: Option<String>,
    pub point: GemmaPoint,
}

/// A polygon as the model wrote it (`[x, y]` pairs, 0..=1000, the notebook's convention).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolygonAnswer {
    pub label: Option<String>,
    pub points: Vec<GemmaPoint>,
    /// Pairs that could not be read (index in the model's list, reason).
    pub skipped: Vec<Skipped>,
    pub truncated: bool,
}

/// Boxes from a detection answer.
pub fn parse_boxes(text: &str) -> Result<Parsed<BoxAnswer>, AnswerError> {
    parse_list(text, &BOX_KEYS, |value| {
        let (label, coords) = match value {
            Value::Object(map) => (
                label_of(map),
                first_present(map, &BOX_KEYS).ok_or("no box key")?,
            ),
            // A bare box without a label.
            Value::Array(_) => (None, value),
            _ => return Err("neither an object nor a box".into()),
        };
        let [y_min, x_min, y_max, x_max] = numbers::<4>(coords)?;
        Ok(BoxAnswer {
            label,
            box_2d: GemmaBox {
                y_min,
                x_min,
                y_max,
                x_max,
            },
        })
    })
}

/// Points from a pointing answer.
pub fn parse_points(text: &str) -> Result<Parsed<PointAnswer>, AnswerError> {
    parse_list(text, &POINT_KEYS, |value| {
        let (label, coords) = match value {
            Value::Object(map) => (
                label_of(map),
                first_present(map, &POINT_KEYS).ok_or("no point key")?,
            ),
            Value::Array(_) => (None, value),
            _ => return Err("neither an object nor a point".into()),
        };
        let [y, x] = numbers::<2>(coords)?;
        Ok(PointAnswer {
            label,
            point: GemmaPoint { x, y },
        })
    })
}

/// The polygon of a segmentation answer (the notebook's `{"polygon": [[x, y], ...], "label": ...}`).
pub fn parse_polygon(text: &str) -> Result<PolygonAnswer, AnswerError> {
    let found = find_json(text)?;
    let (label, list) = match &found.value {
        Value::Object(map) => {
            let list = first_present(map, &POLYGON_KEYS).ok_or_else(|| {
                AnswerError::Shape(format!(
                    "no polygon key (one of {})",
                    POLYGON_KEYS.join(", ")
                ))
            })?;
            (label_of(map), list)
        }
        list @ Value::Array(_) => (None, list),
        other => {
            return Err(AnswerError::Shape(format!(
                "expected an object or a list, found {}",
                kind(other)
            )))
        }
    };
    let Value::Array(pairs) = list else {
        return Err(AnswerError::Shape(format!(
            "the polygon is {}, not a list of [x, y] pairs",
            kind(list)
        )));
    };
    let mut points = Vec::with_capacity(pairs.len());
    let mut skipped = Vec::new();
    for (index, pair) in pairs.iter().enumerate() {
        match point_xy(pair) {
            Ok(p) => points.push(p),
            Err(reason) => skipped.push(Skipped { index, reason }),
        }
    }
    if points.len() < 3 {
        return Err(AnswerError::Shape(format!(
            "a polygon needs at least 3 points, the answer has {}",
            points.len()
        )));
    }
    Ok(PolygonAnswer {
        label,
        points,
        skipped,
        truncated: found.truncated,
    })
}

/// A polygon vertex: `[x, y]` or `{"x": .., "y": ..}`.
fn point_xy(value: &Value) -> Result<GemmaPoint, String> {
    if let Value::Object(map) = value {
        let x = map.get("x").ok_or("no x")?;
        let y = map.get("y").ok_or("no y")?;
        return Ok(GemmaPoint {
            x: number(x)?,
            y: number(y)?,
        });
    }
    let [x, y] = numbers::<2>(value)?;
    Ok(GemmaPoint { x, y })
}

/// The elements of a list answer, each read by `read`. `element_keys` recognise a single element
/// given where a list was asked for.
fn parse_list<T>(
    text: &str,
    element_keys: &[&str],
    read: impl Fn(&Value) -> Result<T, String>,
) -> Result<Parsed<T>, AnswerError> {
    let found = find_json(text)?;
    let single;
    let elements: &[Value] = match &found.value {
        Value::Array(list) => list,
        Value::Object(map) if first_present(map, element_keys).is_some() => {
            single = [found.value.clone()];
            &single
        }
        Value::Object(map) => match LIST_KEYS.iter().find_map(|k| map.get(*k)) {
            Some(Value::Array(list)) => list,
            _ => {
                return Err(AnswerError::Shape(format!(
                    "an object with neither a list ({}) nor an element key ({})",
                    LIST_KEYS.join(", "),
                    element_keys.join(", ")
                )))
            }
        },
        other => {
            return Err(AnswerError::Shape(format!(
                "expected a list, found {}",
                kind(other)
            )))
        }
    };
    let mut items = Vec::with_capacity(elements.len());
    let mut skipped = Vec::new();
    for (index, element) in elements.iter().enumerate() {
        match read(element) {
            Ok(item) => items.push(item),
            Err(reason) => skipped.push(Skipped { index, reason }),
        }
    }
    Ok(Parsed {
        items,
        skipped,
        truncated: found.truncated,
    })
}

/// The notebook's `det.get('label') or det.get('class') or ...`: the first key whose value is
/// truthy. Non-string labels (numbers) are kept as their JSON text.
fn label_of(map: &Map<String, Value>) -> Option<String> {
    LABEL_KEYS
        .iter()
        .filter_map(|k| map.get(*k))
        .find_map(|v| match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

/// The first of `keys` present with a truthy value (a non-empty list, a non-empty string...).
fn first_present<'a>(map: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().filter_map(|k| map.get(*k)).find(|v| truthy(v))
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Exactly `N` finite numbers (JSON numbers or numeric strings).
fn numbers<const N: usize>(value: &Value) -> Result<[f64; N], String> {
    let Value::Array(list) = value else {
        return Err(format!("expected {N} numbers, found {}", kind(value)));
    };
    if list.len() != N {
        return Err(format!("expected {N} numbers, found {}", list.len()));
    }
    let mut out = [0.0; N];
    for (slot, v) in out.iter_mut().zip(list) {
        *slot = number(v)?;
    }
    Ok(out)
}

fn number(value: &Value) -> Result<f64, String> {
    let n = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n.is_finite() => Ok(n),
        _ => Err(format!("not a finite number: {value}")),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The notebook's segmentation answer, verbatim (Gemma 4 31B, 4-bit).
    const NOTEBOOK_SEGMENTATION: &str = r#"{"polygon": [[100, 100], [160, 140], [230, 210], [300, 230], [400, 200], [500, 180], [600, 200], [700, 250], [800, 200], [900, 100], [950, 200], [950, 350], [850, 450], [800, 600], [900, 800], [950, 950], [800, 1000], [500, 1000], [200, 1000], [0, 950], [0, 800], [100, 700], [50, 600], [30, 550], [100, 450], [200, 400], [150, 300], [100, 200], [100, 100]], "label": "main animal"}"#;

    #[test]
    fn reads_the_notebooks_segmentation_answer() {
        let polygon = parse_polygon(NOTEBOOK_SEGMENTATION).unwrap();
        assert_eq!(polygon.points.len(), 29);
        assert_eq!(polygon.label.as_deref(), Some("main animal"));
        assert_eq!(polygon.points[1], GemmaPoint { x: 160.0, y: 140.0 });
        assert!(polygon.skipped.is_empty() && !polygon.truncated);
    }

    #[test]
    fn reads_fenced_detections_with_alias_keys_and_string_numbers() {
        let text = "```json\n[\n  {\"class\": \"dog\", \"bbox\": [\"10\", 20, 300, \"400.5\"]},\n  {\"name\": \"Cat\", \"bounding_box\": [1, 2, 3, 4]}\n]\n```";
        let parsed = parse_boxes(text).unwrap();
        assert_eq!(parsed.items.len(), 2);
        assert_eq!(parsed.items[0].label.as_deref(), Some("dog"));
        assert_eq!(
            parsed.items[0].box_2d.to_box_2d(),
            [10.0, 20.0, 300.0, 400.5]
        );
        assert_eq!(parsed.items[1].label.as_deref(), Some("Cat"));
    }

    #[test]
    fn an_empty_label_falls_through_to_the_next_alias_like_the_notebook() {
        let parsed =
            parse_boxes(r#"[{"label": "", "class": "cup", "box_2d": [1, 2, 3, 4]}]"#).unwrap();
        assert_eq!(parsed.items[0].label.as_deref(), Some("cup"));
    }

    #[test]
    fn a_single_object_or_a_wrapped_list_is_accepted_where_a_list_was_asked() {
        let single = parse_boxes(r#"{"label": "cup", "box_2d": [1, 2, 3, 4]}"#).unwrap();
        assert_eq!(single.items.len(), 1);
        let wrapped =
            parse_boxes(r#"{"objects": [{"label": "cup", "box": [1, 2, 3, 4]}]}"#).unwrap();
        assert_eq!(wrapped.items.len(), 1);
    }

    #[test]
    fn truncated_detections_keep_complete_elements() {
        let text = r#"[{"label": "person", "box_2d": [10, 20, 500, 400]}, {"label": "person", "box_2d": [12, 4"#;
        let parsed = parse_boxes(text).unwrap();
        assert_eq!(parsed.items.len(), 1);
        assert!(parsed.truncated);
    }

    #[test]
    fn unreadable_elements_are_skipped_with_their_reason() {
        let text = r#"[{"label": "a", "box_2d": [1, 2, 3]}, {"label": "b"}, "c", {"label": "d", "box_2d": [1, "x", 3, 4]}, {"label": "e", "box_2d": [1, 2, 3, 4]}]"#;
        let parsed = parse_boxes(text).unwrap();
        assert_eq!(parsed.items.len(), 1);
        let reasons: Vec<_> = parsed
            .skipped
            .iter()
            .map(|s| (s.index, s.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (0, "expected 4 numbers, found 3"),
                (1, "no box key"),
                (2, "neither an object nor a box"),
                (3, "not a finite number: \"x\""),
            ]
        );
    }

    #[test]
    fn out_of_range_and_inverted_boxes_are_read_as_written() {
        // Clipping and the degenerate check belong to the conversion to pixels (coords.rs).
        let parsed = parse_boxes(r#"[{"label": "a", "box_2d": [900, 1200, -5, 100]}]"#).unwrap();
        assert_eq!(
            parsed.items[0].box_2d.to_box_2d(),
            [900.0, 1200.0, -5.0, 100.0]
        );
    }

    #[test]
    fn points_are_y_first_like_box_2d() {
        let parsed = parse_points(r#"[{"point": [250, 750], "label": "face"}, [10, 20]]"#).unwrap();
        assert_eq!(parsed.items[0].point, GemmaPoint { x: 750.0, y: 250.0 });
        assert_eq!(parsed.items[1].label, None);
    }

    #[test]
    fn answers_without_usable_json_are_typed_errors() {
        assert!(matches!(
            parse_boxes("There are no objects."),
            Err(AnswerError::Json(JsonError::NoJson))
        ));
        assert!(matches!(
            parse_boxes(r#"{"answer": "none"}"#),
            Err(AnswerError::Shape(_))
        ));
        assert!(matches!(
            parse_boxes("42 [\"a\" : ]"),
            Err(AnswerError::Json(JsonError::Malformed(_)))
        ));
        assert!(matches!(
            parse_polygon(r#"{"polygon": [[1, 2], [3, 4]]}"#),
            Err(AnswerError::Shape(_))
        ));
        assert!(matches!(
            parse_polygon(r#"{"label": "dog"}"#),
            Err(AnswerError::Shape(_))
        ));
    }

    #[test]
    fn polygon_vertices_may_be_objects_and_bad_ones_are_skipped() {
        let polygon =
            parse_polygon(r#"{"points": [{"x": 1, "y": 2}, [3, 4], [5], [6, 7]], "label": "cat"}"#)
                .unwrap();
        assert_eq!(polygon.points.len(), 3);
        assert_eq!(
            polygon.skipped,
            [Skipped {
                index: 2,
                reason: "expected 2 numbers, found 1".into()
            }]
        );
    }
}
