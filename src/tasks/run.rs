//! Running a task on one image: prompt, generate, read the answer into Moondream-shaped results
//! with pixel coordinates beside the normalized ones.

use anyhow::Result;
use serde::Serialize;
use vlm_models::image_io::RgbImage;
use vlm_models::model::LoadedModel;
use vlm_models::sampling::Sampler;

use super::answer::{parse_boxes, parse_points, parse_polygon, AnswerError, Skipped};
use super::coords::{ImageSize, NormBox, NormPoint, PixelBox, PixelPoint};
use super::prompts::{self, CaptionLength};
use crate::engine::{generate_text, GenerateOptions, GenerationStats};

/// One of the tasks, with its argument.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "task", rename_all = "lowercase")]
pub enum Task {
    Caption {
        length: CaptionLength,
    },
    Query {
        question: String,
    },
    Detect {
        object: String,
    },
    Point {
        object: String,
    },
    /// The notebook's prompted polygon segmentation of `object`.
    Segment {
        object: String,
    },
    /// The notebook's scene-understanding prompt.
    Scene,
    /// The notebook's chart-analysis prompt.
    Chart,
}

impl Task {
    pub fn name(&self) -> &'static str {
        match self {
            Task::Caption { .. } => "caption",
            Task::Query { .. } => "query",
            Task::Detect { .. } => "detect",
            Task::Point { .. } => "point",
            Task::Segment { .. } => "segment",
            Task::Scene => "scene",
            Task::Chart => "chart",
        }
    }

    /// The user message sent with the image.
    pub fn prompt(&self) -> String {
        match self {
            Task::Caption { length } => prompts::caption(*length).to_string(),
            Task::Query { question } => question.clone(),
            Task::Detect { object } => prompts::detect(object),
            Task::Point { object } => prompts::point(object),
            Task::Segment { object } => prompts::segment(object),
            Task::Scene => prompts::SCENE.to_string(),
            Task::Chart => prompts::CHART.to_string(),
        }
    }

    /// The token limit when the user sets none (the notebook's for its prompts).
    pub fn default_max_tokens(&self) -> usize {
        match self {
            Task::Caption { length } => prompts::caption_max_tokens(*length),
            Task::Query { .. } => prompts::QUERY_MAX_TOKENS,
            Task::Detect { .. } => prompts::DETECT_MAX_TOKENS,
            Task::Point { .. } => prompts::POINT_MAX_TOKENS,
            Task::Segment { .. } => prompts::SEGMENT_MAX_TOKENS,
            Task::Scene => prompts::SCENE_MAX_TOKENS,
            Task::Chart => prompts::CHART_MAX_TOKENS,
        }
    }
}

/// A detected object: Moondream's normalized box and label, plus the box in pixels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DetectedObject {
    pub x_min: f64,
    pub y_min: f64,
    pub x_max: f64,
    pub y_max: f64,
    pub label: String,
    /// `[x_min, y_min, x_max, y_max]` in pixels, clipped to the image.
    pub pixel_box: [f64; 4],
}

impl DetectedObject {
    pub fn pixels(&self) -> PixelBox {
        PixelBox::from_xyxy(self.pixel_box)
    }
}

/// A point: Moondream's normalized `x`, `y`, plus pixels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FoundPoint {
    pub x: f64,
    pub y: f64,
    pub label: String,
    pub pixel: [f64; 2],
}

/// A polygon in normalized and pixel coordinates.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FoundPolygon {
    pub label: String,
    /// `[x, y]` pairs in 0..=1.
    pub points: Vec<[f64; 2]>,
    /// `[x, y]` pairs in pixels, clipped to the image.
    pub pixel_points: Vec<[f64; 2]>,
}

/// A task's result in Moondream's shapes (`caption`, `answer`, `objects`, `points`) and the
/// notebook's `polygon`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TaskOutput {
    Caption {
        caption: String,
    },
    Answer {
        answer: String,
    },
    Objects {
        objects: Vec<DetectedObject>,
        skipped: Vec<Skipped>,
        truncated: bool,
    },
    Points {
        points: Vec<FoundPoint>,
        skipped: Vec<Skipped>,
        truncated: bool,
    },
    Polygon {
        polygon: FoundPolygon,
        skipped: Vec<Skipped>,
        truncated: bool,
    },
}

/// The model's answer and its statistics, before reading.
#[derive(Clone, Debug, Serialize)]
pub struct Answered {
    pub prompt: String,
    pub text: String,
    pub token_ids: Vec<u32>,
    pub stats: GenerationStats,
}

/// Asks `model` the task's prompt about `image`. `on_piece` streams the answer's text.
pub fn ask(
    model: &LoadedModel,
    image: &RgbImage,
    prompt: &str,
    sampler: &mut Sampler,
    options: &GenerateOptions,
    on_piece: impl FnMut(&str) -> Result<()>,
) -> Result<Answered> {
    let built = model.build_prompt(prompt, std::slice::from_ref(image))?;
    let out = generate_text(model, &built, sampler, options, on_piece)?;
    Ok(Answered {
        prompt: prompt.to_string(),
        text: out.text,
        token_ids: out.generation.token_ids,
        stats: out.generation.stats,
    })
}

/// Reads an answer into the task's output for an image of `size`. Boxes that convert to at most
/// one pixel, or inverted ones, are skipped with the reason (the notebook drops them too).
pub fn read_answer(task: &Task, text: &str, size: ImageSize) -> Result<TaskOutput, AnswerError> {
    match task {
        Task::Caption { .. } => Ok(TaskOutput::Caption {
            caption: text.trim().to_string(),
        }),
        Task::Query { .. } | Task::Scene | Task::Chart => Ok(TaskOutput::Answer {
            answer: text.trim().to_string(),
        }),
        Task::Detect { object } => {
            let parsed = parse_boxes(text)?;
            let mut skipped = parsed.skipped;
            let mut objects = Vec::with_capacity(parsed.items.len());
            for (index, item) in parsed.items.into_iter().enumerate() {
                let px = item.box_2d.to_pixels(size);
                if px.is_degenerate() {
                    skipped.push(Skipped {
                        index,
                        reason: format!(
                            "degenerate box {:?} (inverted or under 1 px)",
                            item.box_2d.to_box_2d()
                        ),
                    });
                    continue;
                }
                let NormBox {
                    x_min,
                    y_min,
                    x_max,
                    y_max,
                } = px.to_normalized(size);
                let label = item.label.unwrap_or_else(|| object.clone());
                objects.push(DetectedObject {
                    x_min,
                    y_min,
                    x_max,
                    y_max,
                    label,
                    pixel_box: px.xyxy(),
                });
            }
            skipped.sort_by_key(|s| s.index);
            Ok(TaskOutput::Objects {
                objects,
                skipped,
                truncated: parsed.truncated,
            })
        }
        Task::Point { object } => {
            let parsed = parse_points(text)?;
            let points = parsed
                .items
                .into_iter()
                .map(|item| {
                    let px = item.point.to_pixels(size);
                    let NormPoint { x, y } = px.to_normalized(size);
                    FoundPoint {
                        x,
                        y,
                        label: item.label.unwrap_or_else(|| object.clone()),
                        pixel: [px.x, px.y],
                    }
                })
                .collect();
            Ok(TaskOutput::Points {
                points,
                skipped: parsed.skipped,
                truncated: parsed.truncated,
            })
        }
        Task::Segment { object } => {
            let answer = parse_polygon(text)?;
            let pixels: Vec<PixelPoint> = answer.points.iter().map(|p| p.to_pixels(size)).collect();
            let polygon = FoundPolygon {
                label: answer.label.unwrap_or_else(|| object.clone()),
                points: pixels
                    .iter()
                    .map(|p| p.to_normalized(size))
                    .map(|n| [n.x, n.y])
                    .collect(),
                pixel_points: pixels.iter().map(|p| [p.x, p.y]).collect(),
            };
            Ok(TaskOutput::Polygon {
                polygon,
                skipped: answer.skipped,
                truncated: answer.truncated,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: ImageSize = ImageSize {
        width: 200,
        height: 100,
    };

    #[test]
    fn detect_gives_normalized_and_pixel_boxes_and_skips_degenerate_ones() {
        let text = r#"[{"label": "dog", "box_2d": [100, 250, 500, 750]}, {"box_2d": [500, 500, 400, 600]}, {"label": "cat", "box_2d": [0, 0, 5, 1]}]"#;
        let task = Task::Detect {
            object: "dog".into(),
        };
        let TaskOutput::Objects {
            objects,
            skipped,
            truncated,
        } = read_answer(&task, text, SIZE).unwrap()
        else {
            panic!()
        };
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].pixel_box, [50.0, 10.0, 150.0, 50.0]);
        assert_eq!(
            [
                objects[0].x_min,
                objects[0].y_min,
                objects[0].x_max,
                objects[0].y_max
            ],
            [0.25, 0.1, 0.75, 0.5]
        );
        assert_eq!(skipped.iter().map(|s| s.index).collect::<Vec<_>>(), [1, 2]);
        assert!(!truncated);
    }

    #[test]
    fn a_point_without_label_takes_the_asked_object() {
        let task = Task::Point {
            object: "face".into(),
        };
        let TaskOutput::Points { points, .. } = read_answer(&task, "[[500, 250]]", SIZE).unwrap()
        else {
            panic!()
        };
        assert_eq!(points[0].label, "face");
        assert_eq!((points[0].x, points[0].y), (0.25, 0.5));
        assert_eq!(points[0].pixel, [50.0, 50.0]);
    }

    #[test]
    fn moondream_json_shapes() {
        let caption = read_answer(
            &Task::Caption {
                length: CaptionLength::Short,
            },
            " A dog. ",
            SIZE,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&caption).unwrap(),
            serde_json::json!({"caption": "A dog."})
        );
        let answer = read_answer(
            &Task::Query {
                question: "?".into(),
            },
            "two",
            SIZE,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            serde_json::json!({"answer": "two"})
        );
    }

    #[test]
    fn nonsense_answers_are_errors_for_structured_tasks_only() {
        let nonsense = "<unused12> kol kol";
        assert!(read_answer(&Task::Detect { object: "x".into() }, nonsense, SIZE).is_err());
        assert!(read_answer(&Task::Segment { object: "x".into() }, nonsense, SIZE).is_err());
        assert!(read_answer(&Task::Scene, nonsense, SIZE).is_ok());
    }
}
