//! Synthetic scenes with ground truth (issue #27): a few shapes in named colours on a plain,
//! textured or photo background, drawn from a seed (the same seed gives the same bytes), each with
//! its caption, questions and answers, boxes, points and polygons. `vlmbench make-scenes` writes
//! them in the notebook's two dataset layouts ([`super::dataset_writer`]), so `eval vqa|coco
//! --data` and the notebook read them unchanged; the class list (the shapes) travels with the
//! COCO shard.

use std::path::Path;

use anyhow::{Context, Result};
use image::imageops::FilterType;
use image::{Rgb, RgbImage};
use imageproc::drawing::draw_polygon_mut;
use imageproc::point::Point;
use serde::Serialize;

use super::dataset_writer::{
    write_coco_shard, write_vqa_shard, CocoObject, CocoRow, ImageCell, VqaRow,
};
use super::numpy_rng::RandomState;
use super::pillow_jpeg::encode_like_pillow;

/// The shapes, in class-id order.
pub const SHAPES: [&str; 4] = ["circle", "square", "triangle", "star"];
/// The colours and the RGB they are drawn in.
pub const COLORS: [(&str, [u8; 3]); 6] = [
    ("red", [220, 38, 38]),
    ("green", [22, 163, 74]),
    ("blue", [37, 99, 235]),
    ("yellow", [250, 204, 21]),
    ("purple", [147, 51, 234]),
    ("orange", [249, 115, 22]),
];
pub const WIDTH: u32 = 320;
pub const HEIGHT: u32 = 240;
/// The most two objects' boxes may overlap (intersection over the smaller box): occlusion is
/// allowed, hiding is not.
const MAX_OVERLAP: f32 = 0.3;

/// One drawn shape.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SceneObject {
    pub shape: &'static str,
    pub color: &'static str,
    /// `[x, y, w, h]` in pixels (COCO's box).
    pub bbox: [f32; 4],
    /// The outline as drawn, `[x, y]` pixels.
    pub polygon: Vec<[f32; 2]>,
    /// The shape's centre, `[x, y]` pixels.
    pub point: [f32; 2],
}

/// A question about a scene and its one right answer (VQAv2's short answers).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Qa {
    pub question: String,
    pub answer: String,
}

/// A scene: what it shows and the picture.
#[derive(Clone, Debug, Serialize)]
pub struct Scene {
    pub id: usize,
    pub background: String,
    pub objects: Vec<SceneObject>,
    pub caption: String,
    pub questions: Vec<Qa>,
    #[serde(skip)]
    pub image: RgbImage,
}

/// Draws scene `id` of the set made from `seed`; `photos` are the backgrounds a third of the
/// scenes take (cropped and resized).
pub fn scene(seed: u32, id: usize, photos: &[RgbImage]) -> Scene {
    // (seed, id) as one 64-bit number, mixed by an odd multiplier (a bijection): no two pairs
    // share a generator by construction, as `seed + id` would (seed 1 = seed 0 shifted by one).
    let pair = (u64::from(seed) << 32) | id as u64;
    let mut rng = RandomState::seed((pair.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32);
    let mut pick = |n: usize| ((rng.random() * n as f64) as usize).min(n - 1);
    let (mut image, background) = match pick(3) {
        0 => {
            let g = 200 + pick(50) as u8;
            (
                RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([g, g, g - pick(20) as u8])),
                "plain".to_string(),
            )
        }
        1 => (stripes(pick(4) + 2, pick(2) == 0), "striped".to_string()),
        _ if photos.is_empty() => (
            RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([230; 3])),
            "plain".to_string(),
        ),
        _ => {
            let p = pick(photos.len());
            (
                photo(&photos[p], pick(100) as f32 / 100.0),
                "photo".to_string(),
            )
        }
    };
    let wanted = 1 + pick(4);
    let mut objects: Vec<SceneObject> = Vec::new();
    for _ in 0..wanted * 20 {
        if objects.len() == wanted {
            break;
        }
        let shape = SHAPES[pick(SHAPES.len())];
        let (color, _) = COLORS[pick(COLORS.len())];
        let size = 40.0 + pick(60) as f32;
        let cx = size / 2.0 + pick((WIDTH as f32 - size) as usize) as f32;
        let cy = size / 2.0 + pick((HEIGHT as f32 - size) as usize) as f32;
        let candidate = object(shape, color, [cx, cy], size);
        if objects
            .iter()
            .all(|o| overlap(&o.bbox, &candidate.bbox) <= MAX_OVERLAP)
        {
            objects.push(candidate);
        }
    }
    for o in &objects {
        let rgb = COLORS
            .iter()
            .find(|(c, _)| *c == o.color)
            .map(|(_, v)| *v)
            .unwrap_or([0; 3]);
        let points: Vec<Point<i32>> = o
            .polygon
            .iter()
            .map(|[x, y]| Point::new(x.round() as i32, y.round() as i32))
            .collect();
        draw_polygon_mut(&mut image, &points, Rgb(rgb));
    }
    let questions = questions(&objects, &mut pick);
    Scene {
        id,
        caption: caption(&objects, &background),
        background,
        objects,
        questions,
        image,
    }
}

/// Bands of two soft colours, vertical or horizontal.
fn stripes(bands: usize, vertical: bool) -> RgbImage {
    let band = (if vertical { WIDTH } else { HEIGHT }) / bands as u32;
    RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        let at = if vertical { x } else { y };
        if (at / band.max(1)) % 2 == 0 {
            Rgb([235, 230, 220])
        } else {
            Rgb([205, 215, 225])
        }
    })
}

/// A crop of `photo` at horizontal position `at` (0..1) with the scene's aspect, resized.
fn photo(photo: &RgbImage, at: f32) -> RgbImage {
    let (w, h) = photo.dimensions();
    let crop_w = w.min(h * WIDTH / HEIGHT);
    let crop_h = crop_w * HEIGHT / WIDTH;
    let x = ((w - crop_w) as f32 * at) as u32;
    let view = image::imageops::crop_imm(photo, x, (h - crop_h) / 2, crop_w, crop_h).to_image();
    image::imageops::resize(&view, WIDTH, HEIGHT, FilterType::Triangle)
}

/// A shape of `size` pixels across centred at `c`, its outline as a polygon.
fn object(shape: &'static str, color: &'static str, c: [f32; 2], size: f32) -> SceneObject {
    let r = size / 2.0;
    let around = |n: usize, radius: &dyn Fn(usize) -> f32, start: f32| -> Vec<[f32; 2]> {
        (0..n)
            .map(|i| {
                let a = start + i as f32 * std::f32::consts::TAU / n as f32;
                [c[0] + radius(i) * a.cos(), c[1] + radius(i) * a.sin()]
            })
            .collect()
    };
    let up = -std::f32::consts::FRAC_PI_2;
    let polygon: Vec<[f32; 2]> = match shape {
        "circle" => around(32, &|_| r, 0.0),
        "square" => vec![
            [c[0] - r, c[1] - r],
            [c[0] + r, c[1] - r],
            [c[0] + r, c[1] + r],
            [c[0] - r, c[1] + r],
        ],
        "triangle" => around(3, &|_| r, up),
        _ => around(10, &|i| if i % 2 == 0 { r } else { 0.45 * r }, up),
    };
    // Hundredths of a pixel: the files stay readable and the box is the polygon's.
    let polygon: Vec<[f32; 2]> = polygon
        .into_iter()
        .map(|p| p.map(|v| (v * 100.0).round() / 100.0))
        .collect();
    let (x0, x1) = polygon
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p[0]), b.max(p[0])));
    let (y0, y1) = polygon
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p[1]), b.max(p[1])));
    SceneObject {
        shape,
        color,
        bbox: [x0, y0, x1 - x0, y1 - y0],
        polygon,
        point: c,
    }
}

/// The intersection of two `[x, y, w, h]` boxes over the smaller one's area.
fn overlap(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let h = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    (w.max(0.0) * h.max(0.0)) / (a[2] * a[3]).min(b[2] * b[3])
}

/// "a" or "an" before `word`.
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// "A red circle and an orange star on a striped background."
fn caption(objects: &[SceneObject], background: &str) -> String {
    let names: Vec<String> = objects
        .iter()
        .map(|o| format!("{} {} {}", article(o.color), o.color, o.shape))
        .collect();
    let list = match names.split_last() {
        None => "Nothing".to_string(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    };
    let mut c = list;
    c[..1].make_ascii_uppercase();
    format!("{c} on a {background} background.")
}

/// Up to four questions with one right answer each: a count, a colour, a shape, a yes/no.
fn questions(objects: &[SceneObject], pick: &mut impl FnMut(usize) -> usize) -> Vec<Qa> {
    let qa = |q: String, a: String| Qa {
        question: q,
        answer: a,
    };
    let mut out = vec![qa(
        "How many shapes are there?".into(),
        objects.len().to_string(),
    )];
    let unique_shape: Vec<&SceneObject> = objects
        .iter()
        .filter(|o| objects.iter().filter(|p| p.shape == o.shape).count() == 1)
        .collect();
    if let Some(o) = unique_shape.get(pick(unique_shape.len().max(1))) {
        out.push(qa(
            format!("What color is the {}?", o.shape),
            o.color.into(),
        ));
    }
    let unique_color: Vec<&SceneObject> = objects
        .iter()
        .filter(|o| objects.iter().filter(|p| p.color == o.color).count() == 1)
        .collect();
    if let Some(o) = unique_color.get(pick(unique_color.len().max(1))) {
        out.push(qa(
            format!("What shape is the {} one?", o.color),
            o.shape.into(),
        ));
    }
    let shape = SHAPES[pick(SHAPES.len())];
    let color = COLORS[pick(COLORS.len())].0;
    let there = objects.iter().any(|o| o.shape == shape && o.color == color);
    out.push(qa(
        format!("Is there {} {color} {shape}?", article(color)),
        if there { "yes" } else { "no" }.into(),
    ));
    out
}

/// The photos a third of the scenes take as background: the built-in sample images.
fn photos() -> Result<Vec<RgbImage>> {
    let mut photos = Vec::new();
    for sample in [
        crate::sample_images::ASTRONAUT,
        crate::sample_images::CHELSEA,
    ] {
        let p = sample.decode()?;
        let (w, h) = (p.width(), p.height());
        photos.push(RgbImage::from_raw(w, h, p.as_bytes().to_vec()).context("a decoded photo")?);
    }
    Ok(photos)
}

/// The scene's picture as its datasets hold it: JPEG as Pillow writes it.
fn jpeg(scene: &Scene) -> Result<Vec<u8>> {
    let (w, h) = scene.image.dimensions();
    let raw = scene.image.as_raw().clone();
    encode_like_pillow(&vlm_models::image_io::RgbImage::from_raw(w, h, raw)?)
}

/// Scenes drawn from one seed, each with its picture as JPEG and its file name
/// (`scene-SEED-ID.jpg`): what the datasets and the training pairs are written from.
pub struct SceneSet {
    pub seed: u32,
    pub scenes: Vec<Scene>,
    pub names: Vec<String>,
    pub jpegs: Vec<Vec<u8>>,
}

impl SceneSet {
    /// Scenes `0..count` of `seed`.
    pub fn draw(seed: u32, count: usize) -> Result<Self> {
        let photos = photos()?;
        let scenes: Vec<Scene> = (0..count).map(|i| scene(seed, i, &photos)).collect();
        let jpegs = scenes.iter().map(jpeg).collect::<Result<_>>()?;
        let names = scenes
            .iter()
            .map(|s| format!("scene-{seed}-{:05}.jpg", s.id))
            .collect();
        Ok(Self {
            seed,
            scenes,
            names,
            jpegs,
        })
    }
}

/// What [`write_scene_sets`] wrote.
pub struct Written {
    pub scenes: usize,
    pub vqa_rows: usize,
    pub coco_objects: usize,
    pub files: Vec<std::path::PathBuf>,
}

/// `set` under `out`, in the notebook's dataset layouts:
/// `vqa/data/validation-00000-of-00001.parquet` (a row per question),
/// `coco/data/val-00000-of-00001.parquet` (a row per scene, the shapes as classes) and
/// `scenes.jsonl` (every scene's caption, objects with polygons and points, and questions).
/// Images are JPEG as Pillow writes them (the datasets' images are JPEG).
pub fn write_scene_sets(out: &Path, set: &SceneSet) -> Result<Written> {
    let SceneSet {
        scenes,
        names,
        jpegs,
        ..
    } = set;
    let cell = |i: usize| ImageCell {
        bytes: &jpegs[i],
        path: &names[i],
    };
    let vqa: Vec<VqaRow> = scenes
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.questions.iter().map(move |q| (i, q)))
        .map(|(i, q)| VqaRow {
            question: &q.question,
            answer: &q.answer,
            image: cell(i),
        })
        .collect();
    let mut next_box = 0i64;
    let coco: Vec<CocoRow> = scenes
        .iter()
        .enumerate()
        .map(|(i, s)| CocoRow {
            image_id: i as i64,
            image: cell(i),
            width: WIDTH as i64,
            height: HEIGHT as i64,
            objects: s
                .objects
                .iter()
                .map(|o| {
                    next_box += 1;
                    CocoObject {
                        bbox_id: next_box,
                        category: SHAPES.iter().position(|s| *s == o.shape).unwrap_or(0) as i64,
                        bbox: o.bbox,
                    }
                })
                .collect(),
        })
        .collect();
    let vqa_path = out.join("vqa/data/validation-00000-of-00001.parquet");
    let coco_path = out.join("coco/data/val-00000-of-00001.parquet");
    write_vqa_shard(&vqa_path, &vqa, None)?;
    write_coco_shard(&coco_path, &SHAPES, &coco, None)?;
    let jsonl = out.join("scenes.jsonl");
    let mut lines = String::new();
    for (s, name) in scenes.iter().zip(names.iter()) {
        let mut v = serde_json::to_value(s)?;
        v["image"] = serde_json::json!(name);
        lines += &v.to_string();
        lines.push('\n');
    }
    std::fs::write(&jsonl, lines).with_context(|| format!("cannot write {}", jsonl.display()))?;
    Ok(Written {
        scenes: scenes.len(),
        vqa_rows: vqa.len(),
        coco_objects: next_box as usize,
        files: vec![vqa_path, coco_path, jsonl],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rgb(color: &str) -> [u8; 3] {
        COLORS.iter().find(|(c, _)| *c == color).unwrap().1
    }

    #[test]
    fn the_same_seed_draws_the_same_scene_and_another_seed_another() {
        let a = scene(0, 7, &[]);
        let b = scene(0, 7, &[]);
        assert_eq!(a.image, b.image);
        assert_eq!((&a.objects, &a.questions), (&b.objects, &b.questions));
        assert_ne!(a.image, scene(1, 7, &[]).image);
        assert_ne!(a.image, scene(0, 8, &[]).image);
        // Another seed is another set, not the same scenes shifted.
        assert_ne!(a.image, scene(1, 6, &[]).image);
    }

    #[test]
    fn objects_lie_inside_the_image_apart_and_the_top_one_shows_its_colour_at_its_centre() {
        for id in 0..200 {
            let s = scene(3, id, &[]);
            assert!((1..=4).contains(&s.objects.len()), "scene {id}");
            for (i, o) in s.objects.iter().enumerate() {
                let [x, y, w, h] = o.bbox;
                assert!(x >= 0.0 && y >= 0.0 && x + w <= WIDTH as f32 && y + h <= HEIGHT as f32);
                for p in &s.objects[..i] {
                    assert!(overlap(&p.bbox, &o.bbox) <= MAX_OVERLAP, "scene {id}");
                }
            }
            // The last shape drawn is covered by none: its centre (inside every shape) shows it.
            let top = s.objects.last().unwrap();
            let [cx, cy] = top.point;
            assert_eq!(
                s.image.get_pixel(cx as u32, cy as u32).0,
                rgb(top.color),
                "scene {id}"
            );
        }
    }

    #[test]
    fn answers_follow_from_the_objects() {
        for id in 0..200 {
            let s = scene(5, id, &[]);
            for qa in &s.questions {
                let q = qa.question.as_str();
                if q == "How many shapes are there?" {
                    assert_eq!(qa.answer, s.objects.len().to_string());
                } else if let Some(shape) = q.strip_prefix("What color is the ") {
                    let shape = shape.trim_end_matches('?');
                    let same: Vec<_> = s.objects.iter().filter(|o| o.shape == shape).collect();
                    assert_eq!(same.len(), 1, "{q}");
                    assert_eq!(qa.answer, same[0].color);
                } else if let Some(color) = q.strip_prefix("What shape is the ") {
                    let color = color.trim_end_matches(" one?");
                    let same: Vec<_> = s.objects.iter().filter(|o| o.color == color).collect();
                    assert_eq!(same.len(), 1, "{q}");
                    assert_eq!(qa.answer, same[0].shape);
                } else {
                    let words: Vec<&str> = q.trim_end_matches('?').split(' ').collect();
                    let (color, shape) = (words[3], words[4]);
                    let there = s
                        .objects
                        .iter()
                        .any(|o| o.color == color && o.shape == shape);
                    assert_eq!(qa.answer, if there { "yes" } else { "no" }, "{q}");
                }
            }
            assert!(s
                .caption
                .ends_with(&format!("on a {} background.", s.background)));
        }
    }
}
