//! The tasks' own prompts asked about a synthetic scene, each with the answer its ground truth
//! gives: the training pairs of the built-in demo model (issue #27). Prompts come from
//! [`crate::tasks::prompts`], so the model learns exactly what the notebook and the tasks send;
//! answers follow the formats those prompts ask for (`box_2d` and points as `[y, x]`, polygons as
//! `[x, y]`, all integers in 0..=1000), written as Python's `json.dumps` writes them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::numpy_rng::RandomState;
use super::scenes::{Scene, SceneObject, SceneSet, COLORS, HEIGHT, SHAPES, WIDTH};
use crate::tasks::prompts::{self, CaptionLength};

/// The segmentation target the notebook asks about a scene (its photo target is "main animal").
pub const SEGMENT_SCENE_TARGET: &str = "largest shape";

/// One prompt about a scene and the answer the ground truth gives.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Pair {
    /// What is asked: `scene`, `caption-short|normal|long`, `coco-detect`, `detect`, `point`,
    /// `segment`, `vqa` or `query`.
    pub task: &'static str,
    pub prompt: String,
    pub answer: String,
}

/// Every pair of `scene`: one per caption prompt, the notebook's detection, detection and points
/// of a few things present and absent, one segmentation, and each question asked the VQA way and
/// as a plain query. Which things are asked about is drawn from `seed` and the scene's id.
pub fn pairs(scene: &Scene, seed: u32) -> Vec<Pair> {
    let mut rng = RandomState::seed(seed ^ (scene.id as u32).wrapping_mul(0x9E37_79B9));
    let mut pick = |n: usize| ((rng.random() * n as f64) as usize).min(n.max(1) - 1);
    let objects = &scene.objects;
    let pair = |task, prompt: String, answer: String| Pair {
        task,
        prompt,
        answer,
    };
    let described = description(scene);
    let mut out = vec![
        pair("scene", prompts::SCENE.into(), described.clone()),
        pair(
            "caption-short",
            prompts::caption(CaptionLength::Short).into(),
            scene.caption.clone(),
        ),
        pair(
            "caption-normal",
            prompts::caption(CaptionLength::Normal).into(),
            scene.caption.clone(),
        ),
        pair(
            "caption-long",
            prompts::caption(CaptionLength::Long).into(),
            format!("{described} {}", positions(objects)),
        ),
        pair(
            "coco-detect",
            prompts::COCO_DETECT.into(),
            json_list(objects.iter(), |o| o.shape.to_string(), "box_2d", box_2d),
        ),
    ];
    type Prompt = fn(&str) -> String;
    type Coords = fn(&SceneObject) -> String;
    let asks: [(&str, Prompt, &str, Coords); 2] = [
        ("detect", prompts::detect, "box_2d", box_2d),
        ("point", prompts::point, "point", point_yx),
    ];
    for _ in 0..2 {
        for (task, prompt, key, coords) in asks {
            let thing = thing_to_find(objects, &mut pick);
            let found = objects.iter().filter(|o| matches(o, &thing));
            out.push(pair(
                task,
                prompt(&thing),
                json_list(found, |_| thing.clone(), key, coords),
            ));
        }
    }
    let unique: Vec<&SceneObject> = objects
        .iter()
        .filter(|o| {
            objects
                .iter()
                .filter(|p| p.shape == o.shape && p.color == o.color)
                .count()
                == 1
        })
        .collect();
    if let Some(o) = unique.get(pick(unique.len())) {
        let name = format!("{} {}", o.color, o.shape);
        out.push(pair("segment", prompts::segment(&name), polygon(o, &name)));
    }
    if let Some(o) = largest(objects) {
        let name = format!("{} {}", o.color, o.shape);
        out.push(pair(
            "segment",
            prompts::segment(SEGMENT_SCENE_TARGET),
            polygon(o, &name),
        ));
    }
    for qa in &scene.questions {
        out.push(pair("vqa", prompts::vqa(&qa.question), qa.answer.clone()));
        out.push(pair("query", qa.question.clone(), qa.answer.clone()));
    }
    out
}

/// The scene prompt's answer: the caption and how many shapes there are.
fn description(scene: &Scene) -> String {
    let count = match scene.objects.len() {
        1 => "There is one shape.".to_string(),
        n => format!("There are {n} shapes."),
    };
    format!("{} {count}", scene.caption)
}

/// "The red circle is at the top left. The blue star is in the middle."
fn positions(objects: &[SceneObject]) -> String {
    let place = |o: &SceneObject| {
        let [x, y] = o.point;
        let row = ["top", "middle", "bottom"][third(y, HEIGHT)];
        let col = ["left", "center", "right"][third(x, WIDTH)];
        match (row, col) {
            ("middle", "center") => "in the middle".to_string(),
            ("middle", col) => format!("on the {col}"),
            (row, "center") => format!("at the {row}"),
            (row, col) => format!("at the {row} {col}"),
        }
    };
    let sentences: Vec<String> = objects
        .iter()
        .map(|o| format!("The {} {} is {}.", o.color, o.shape, place(o)))
        .collect();
    sentences.join(" ")
}

fn third(v: f32, size: u32) -> usize {
    ((v / size as f32 * 3.0) as usize).min(2)
}

/// A shape name, a colour and shape, or either one absent from the scene.
fn thing_to_find(objects: &[SceneObject], pick: &mut impl FnMut(usize) -> usize) -> String {
    let o = &objects[pick(objects.len())];
    match pick(4) {
        0 => o.shape.to_string(),
        1 => format!("{} {}", o.color, o.shape),
        2 => SHAPES[pick(SHAPES.len())].to_string(),
        _ => format!(
            "{} {}",
            COLORS[pick(COLORS.len())].0,
            SHAPES[pick(SHAPES.len())]
        ),
    }
}

/// Whether `o` is what `thing` ("star" or "red star") names.
fn matches(o: &SceneObject, thing: &str) -> bool {
    match thing.split_once(' ') {
        Some((color, shape)) => o.color == color && o.shape == shape,
        None => o.shape == thing,
    }
}

fn largest(objects: &[SceneObject]) -> Option<&SceneObject> {
    objects
        .iter()
        .max_by(|a, b| (a.bbox[2] * a.bbox[3]).total_cmp(&(b.bbox[2] * b.bbox[3])))
}

/// `v` pixels of `size` on Gemma's 0..=1000 scale.
fn scaled(v: f32, size: u32) -> i64 {
    ((v / size as f32 * 1000.0).round() as i64).clamp(0, 1000)
}

/// `[{"label": LABEL, "KEY": COORDS}, ...]` for `found` in reading order (top to bottom, then left
/// to right).
fn json_list<'a>(
    found: impl Iterator<Item = &'a SceneObject>,
    label: impl Fn(&SceneObject) -> String,
    key: &str,
    coords: fn(&SceneObject) -> String,
) -> String {
    let mut found: Vec<&SceneObject> = found.collect();
    found.sort_by(|a, b| {
        (a.bbox[1], a.bbox[0])
            .partial_cmp(&(b.bbox[1], b.bbox[0]))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let items: Vec<String> = found
        .iter()
        .map(|o| format!("{{\"label\": \"{}\", \"{key}\": {}}}", label(o), coords(o)))
        .collect();
    format!("[{}]", items.join(", "))
}

/// `[y_min, x_min, y_max, x_max]`.
fn box_2d(o: &SceneObject) -> String {
    let [x, y, w, h] = o.bbox;
    format!(
        "[{}, {}, {}, {}]",
        scaled(y, HEIGHT),
        scaled(x, WIDTH),
        scaled(y + h, HEIGHT),
        scaled(x + w, WIDTH)
    )
}

/// `[y, x]` of the shape's centre.
fn point_yx(o: &SceneObject) -> String {
    let [x, y] = o.point;
    format!("[{}, {}]", scaled(y, HEIGHT), scaled(x, WIDTH))
}

/// `{"polygon": [[x, y], ...], "label": "..."}` with the outline resampled to at least 20 points
/// that keep every corner (the prompt asks for 20+).
fn polygon(o: &SceneObject, label: &str) -> String {
    let per_edge = 20_usize.div_ceil(o.polygon.len());
    let n = o.polygon.len();
    let mut pts = Vec::new();
    for i in 0..n {
        let (a, b) = (o.polygon[i], o.polygon[(i + 1) % n]);
        for k in 0..per_edge {
            let t = k as f32 / per_edge as f32;
            pts.push([a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])]);
        }
    }
    let items: Vec<String> = pts
        .iter()
        .map(|[x, y]| format!("[{}, {}]", scaled(*x, WIDTH), scaled(*y, HEIGHT)))
        .collect();
    format!(
        "{{\"polygon\": [{}], \"label\": \"{label}\"}}",
        items.join(", ")
    )
}

/// `out/images/NAME` for each scene of `set` and `out/pairs.jsonl`: every pair of [`pairs`] with
/// its image file, one JSON object a line. Returns the latter's path.
pub fn write_training_pairs(out: &Path, set: &SceneSet) -> Result<PathBuf> {
    let images = out.join("images");
    std::fs::create_dir_all(&images)
        .with_context(|| format!("cannot create {}", images.display()))?;
    let mut lines = String::new();
    for ((s, name), jpeg) in set.scenes.iter().zip(&set.names).zip(&set.jpegs) {
        let file = images.join(name);
        std::fs::write(&file, jpeg).with_context(|| format!("cannot write {}", file.display()))?;
        for p in pairs(s, set.seed) {
            let mut v = serde_json::to_value(&p)?;
            v["image"] = serde_json::json!(format!("images/{name}"));
            lines += &v.to_string();
            lines.push('\n');
        }
    }
    let path = out.join("pairs.jsonl");
    std::fs::write(&path, lines).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::scenes::scene;
    use crate::tasks::answer::{parse_boxes, parse_points, parse_polygon};

    fn near(a: f64, pixels: f32, size: u32) {
        let want = f64::from(pixels / size as f32 * 1000.0);
        assert!((a - want).abs() <= 0.5 + 1e-3, "{a} vs {want}");
    }

    #[test]
    fn json_answers_parse_back_to_the_ground_truth_in_reading_order() {
        for id in 0..60 {
            let s = scene(11, id, &[]);
            let mut order: Vec<&SceneObject> = s.objects.iter().collect();
            order.sort_by(|a, b| {
                (a.bbox[1], a.bbox[0])
                    .partial_cmp(&(b.bbox[1], b.bbox[0]))
                    .unwrap()
            });
            for p in pairs(&s, 11) {
                match p.task {
                    "coco-detect" => {
                        let parsed = parse_boxes(&p.answer).expect(&p.answer);
                        assert_eq!(parsed.items.len(), order.len(), "{}", p.answer);
                        for (b, o) in parsed.items.iter().zip(&order) {
                            assert_eq!(b.label.as_deref(), Some(o.shape));
                            let [x, y, w, h] = o.bbox;
                            near(b.box_2d.y_min, y, HEIGHT);
                            near(b.box_2d.x_min, x, WIDTH);
                            near(b.box_2d.y_max, y + h, HEIGHT);
                            near(b.box_2d.x_max, x + w, WIDTH);
                        }
                    }
                    "detect" | "point" => {
                        let thing = p.prompt.split_once("every ").unwrap().1;
                        let thing = thing.split_once(" in this image").unwrap().0;
                        let want = s.objects.iter().filter(|o| matches(o, thing)).count();
                        let got = if p.task == "detect" {
                            parse_boxes(&p.answer).expect(&p.answer).items.len()
                        } else {
                            let parsed = parse_points(&p.answer).expect(&p.answer);
                            for pt in &parsed.items {
                                assert_eq!(pt.label.as_deref(), Some(thing));
                            }
                            parsed.items.len()
                        };
                        assert_eq!(got, want, "{} -> {}", thing, p.answer);
                    }
                    "segment" => {
                        let poly = parse_polygon(&p.answer).expect(&p.answer);
                        assert!(poly.points.len() >= 20, "{}", p.answer);
                        let label = poly.label.unwrap();
                        // Every resampled point lies in the box of a shape of that name (two
                        // shapes may share a name when the largest is asked for).
                        let inside = |o: &&SceneObject| {
                            let [x, y, w, h] = o.bbox;
                            let (x0, x1) =
                                (x / WIDTH as f32 * 1000.0, (x + w) / WIDTH as f32 * 1000.0);
                            let (y0, y1) =
                                (y / HEIGHT as f32 * 1000.0, (y + h) / HEIGHT as f32 * 1000.0);
                            poly.points.iter().all(|pt| {
                                (f64::from(x0) - 1.0..=f64::from(x1) + 1.0).contains(&pt.x)
                                    && (f64::from(y0) - 1.0..=f64::from(y1) + 1.0).contains(&pt.y)
                            })
                        };
                        assert!(
                            s.objects
                                .iter()
                                .filter(|o| format!("{} {}", o.color, o.shape) == label)
                                .any(|o| inside(&o)),
                            "{}",
                            p.answer
                        );
                    }
                    _ => assert!(!p.answer.is_empty()),
                }
            }
        }
    }

    #[test]
    fn a_polygon_keeps_every_corner_of_the_outline() {
        let s = (0..100)
            .map(|id| scene(2, id, &[]))
            .find(|s| s.objects.iter().any(|o| o.shape == "star"))
            .unwrap();
        let star = s.objects.iter().find(|o| o.shape == "star").unwrap();
        let answer = polygon(star, "star");
        let poly = parse_polygon(&answer).unwrap();
        assert_eq!(poly.points.len(), 20);
        for (i, c) in star.polygon.iter().enumerate() {
            let p = &poly.points[2 * i];
            assert_eq!(
                (p.x, p.y),
                (scaled(c[0], WIDTH) as f64, scaled(c[1], HEIGHT) as f64)
            );
        }
    }

    #[test]
    fn positions_name_the_thirds() {
        let mut o = scene(0, 0, &[]).objects[0].clone();
        o.point = [10.0, 10.0];
        let mut p = o.clone();
        p.point = [WIDTH as f32 / 2.0, HEIGHT as f32 / 2.0];
        let text = positions(&[o.clone(), p]);
        assert_eq!(
            text,
            format!(
                "The {0} {1} is at the top left. The {0} {1} is in the middle.",
                o.color, o.shape
            )
        );
    }

    #[test]
    fn training_sets_name_an_image_file_for_every_pair() {
        let dir = std::env::temp_dir().join(format!("vlmbench-pairs-{}", std::process::id()));
        let set = SceneSet::draw(4, 3).unwrap();
        write_training_pairs(&dir, &set).unwrap();
        let pairs = std::fs::read_to_string(dir.join("pairs.jsonl")).unwrap();
        let mut tasks = std::collections::BTreeSet::new();
        for line in pairs.lines() {
            let p: serde_json::Value = serde_json::from_str(line).unwrap();
            let image = dir.join(p["image"].as_str().unwrap());
            let decoded = image::open(&image).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (WIDTH, HEIGHT));
            tasks.insert(p["task"].as_str().unwrap().to_string());
        }
        assert_eq!(
            pairs.lines().count(),
            set.scenes
                .iter()
                .map(|s| super::pairs(s, 4).len())
                .sum::<usize>()
        );
        for task in [
            "scene",
            "coco-detect",
            "detect",
            "point",
            "segment",
            "vqa",
            "query",
        ] {
            assert!(tasks.contains(task), "{task} missing from {tasks:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
