//! The notebook's COCO overlay figures: ground truth beside predictions colored by status
//! (green = strict TP, amber = near miss, purple = class mismatch, red = no usable match), six images
//! picked as `np.linspace(0, n - 1, 6, dtype=int)`, and the best and worst images by coarse F1.

use std::path::Path;

use ab_glyph::{FontRef, PxScale};
use anyhow::{Context, Result};
use image::{imageops, Rgb, RgbImage};
use imageproc::drawing::{draw_text_mut, text_size};

use super::overlay::{
    class_color, LabeledBox, Overlay, CLASS_PURPLE, FP_RED, NEAR_AMBER, TP_GREEN,
};
use super::FONT_BYTES;
use crate::eval::detection::Detection;
use crate::eval::matching::{ImageEval, Status};

/// Height every panel is scaled to.
const PANEL_HEIGHT: u32 = 420;
const TITLE_HEIGHT: u32 = 30;
const GAP: u32 = 16;

/// One evaluated image ready to draw.
pub struct EvaluatedImage<'a> {
    pub image: &'a vlm_models::image_io::RgbImage,
    pub ground_truth: &'a [Detection],
    pub predictions: &'a [Detection],
    pub eval: &'a ImageEval,
}

/// `np.linspace(0, n - 1, count, dtype=int)`: evenly spaced indices, truncated, the last exact.
pub fn linspace_indices(n: usize, count: usize) -> Vec<usize> {
    if n == 0 || count == 0 {
        return Vec::new();
    }
    if count == 1 {
        return vec![0];
    }
    let step = (n - 1) as f64 / (count - 1) as f64;
    (0..count)
        .map(|i| {
            if i == count - 1 {
                n - 1
            } else {
                (i as f64 * step) as usize
            }
        })
        .collect()
}

fn status_color(s: Status) -> Rgb<u8> {
    match s {
        Status::Tp => TP_GREEN,
        Status::Near => NEAR_AMBER,
        Status::Class => CLASS_PURPLE,
        Status::Fp => FP_RED,
    }
}

/// The notebook's `render_detections`: ground truth in per-class colors with class names.
pub fn ground_truth_panel(e: &EvaluatedImage) -> Result<RgbImage> {
    let mut o = Overlay::from_image(e.image)?;
    let boxes: Vec<LabeledBox> = e
        .ground_truth
        .iter()
        .map(|d| LabeledBox {
            pixels: d.pixels(),
            label: d.class_name.clone(),
            color: class_color(&d.class_name),
        })
        .collect();
    o.boxes(&boxes);
    Ok(o.image().clone())
}

/// The notebook's `annotate_prediction_status`: fp first, then class, near, tp on top.
pub fn prediction_panel(e: &EvaluatedImage) -> Result<RgbImage> {
    let mut o = Overlay::from_image(e.image)?;
    for status in [Status::Fp, Status::Class, Status::Near, Status::Tp] {
        let boxes: Vec<LabeledBox> = e
            .predictions
            .iter()
            .zip(&e.eval.pred_status)
            .zip(&e.eval.pred_display_labels)
            .filter(|((_, s), _)| **s == status)
            .map(|((d, _), label)| LabeledBox {
                pixels: d.pixels(),
                label: label.clone(),
                color: status_color(status),
            })
            .collect();
        o.boxes(&boxes);
    }
    Ok(o.image().clone())
}

fn scaled(panel: &RgbImage) -> RgbImage {
    let w = (u64::from(panel.width()) * u64::from(PANEL_HEIGHT) / u64::from(panel.height().max(1)))
        .max(1) as u32;
    imageops::resize(panel, w, PANEL_HEIGHT, imageops::FilterType::Triangle)
}

/// Rows of titled panels under a figure title, saved as PNG.
fn grid(path: &Path, title: &str, rows: Vec<Vec<(String, RgbImage)>>) -> Result<()> {
    let font = FontRef::try_from_slice(FONT_BYTES).context("the embedded font is unreadable")?;
    let rows: Vec<Vec<(String, RgbImage)>> = rows
        .into_iter()
        .map(|r| r.into_iter().map(|(t, p)| (t, scaled(&p))).collect())
        .collect();
    let row_width =
        |r: &Vec<(String, RgbImage)>| r.iter().map(|(_, p)| p.width() + GAP).sum::<u32>() + GAP;
    let big = PxScale::from(22.0);
    let (tw, _) = text_size(big, &font, title);
    let width = rows
        .iter()
        .map(row_width)
        .max()
        .unwrap_or(400)
        .max(tw + 2 * GAP);
    let row_height = TITLE_HEIGHT + PANEL_HEIGHT + GAP;
    let height = 2 * TITLE_HEIGHT + GAP + row_height * rows.len() as u32;
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let black = Rgb([20, 20, 20]);
    draw_text_mut(
        &mut canvas,
        black,
        ((width.saturating_sub(tw)) / 2) as i32,
        12,
        big,
        &font,
        title,
    );
    let small = PxScale::from(16.0);
    for (r, row) in rows.iter().enumerate() {
        let top = 2 * TITLE_HEIGHT + GAP + r as u32 * row_height;
        let mut x = GAP;
        for (caption, panel) in row {
            draw_text_mut(
                &mut canvas,
                black,
                x as i32,
                (top + 6) as i32,
                small,
                &font,
                caption,
            );
            imageops::overlay(
                &mut canvas,
                panel,
                i64::from(x),
                i64::from(top + TITLE_HEIGHT),
            );
            x += panel.width() + GAP;
        }
    }
    canvas
        .save_with_format(path, image::ImageFormat::Png)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The "GT vs. Predictions" figure for the images at `indices`.
pub fn overlay_grid(path: &Path, images: &[EvaluatedImage], indices: &[usize]) -> Result<()> {
    let mut rows = Vec::new();
    for &i in indices {
        let e = &images[i];
        rows.push(vec![
            (
                format!("Ground truth ({} objects)", e.eval.n_gt),
                ground_truth_panel(e)?,
            ),
            (
                format!(
                    "Coarse P/R@0.3={:.2}/{:.2} | Strict P/R@0.5={:.2}/{:.2}",
                    e.eval.precision, e.eval.recall, e.eval.strict_precision, e.eval.strict_recall
                ),
                prediction_panel(e)?,
            ),
        ]);
    }
    grid(
        path,
        "COCO localization overlays: green=TP@0.5, amber=near miss, purple=class mismatch, red=no usable match",
        rows,
    )
}

/// The "Best vs worst localization (by coarse F1)" figure.
pub fn best_vs_worst(path: &Path, best: &EvaluatedImage, worst: &EvaluatedImage) -> Result<()> {
    let mut rows = Vec::new();
    for (e, label) in [(best, "Best"), (worst, "Worst")] {
        rows.push(vec![
            (
                format!(
                    "{label} (coarse F1={:.2}) - GT: {} objects",
                    e.eval.f1, e.eval.n_gt
                ),
                ground_truth_panel(e)?,
            ),
            (
                format!(
                    "{label} - coarse P/R={:.2}/{:.2} | strict R={:.2}",
                    e.eval.precision, e.eval.recall, e.eval.strict_recall
                ),
                prediction_panel(e)?,
            ),
        ]);
    }
    grid(path, "Best vs worst localization (by coarse F1)", rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::matching::evaluate;

    #[test]
    fn linspace_indices_truncate_like_numpy() {
        // np.linspace(0, 19, 6, dtype=int) -> [0, 3, 7, 11, 15, 19]; n=3 repeats indices.
        assert_eq!(linspace_indices(20, 6), vec![0, 3, 7, 11, 15, 19]);
        assert_eq!(linspace_indices(3, 6), vec![0, 0, 0, 1, 1, 2]);
        assert_eq!(linspace_indices(0, 6), Vec::<usize>::new());
    }

    #[test]
    fn prediction_panel_draws_strict_hits_green_over_false_positives() {
        let img =
            vlm_models::image_io::RgbImage::from_raw(200, 200, vec![128; 200 * 200 * 3]).unwrap();
        let d = |xyxy: [f32; 4]| Detection {
            xyxy,
            class_id: 0,
            class_name: "person".into(),
        };
        let gt = [d([20.0, 20.0, 180.0, 180.0])];
        let preds = [d([20.0, 20.0, 180.0, 180.0]), d([20.0, 20.0, 180.0, 180.0])];
        let eval = evaluate(&preds, &gt);
        let e = EvaluatedImage {
            image: &img,
            ground_truth: &gt,
            predictions: &preds,
            eval: &eval,
        };
        let panel = prediction_panel(&e).unwrap();
        // The same outline is drawn amber (the duplicate: a near miss) then green (the match): green wins.
        assert_eq!(*panel.get_pixel(20, 100), TP_GREEN);
        let dir = tempfile::tempdir().unwrap();
        overlay_grid(&dir.path().join("g.png"), &[e], &[0]).unwrap();
    }
}
