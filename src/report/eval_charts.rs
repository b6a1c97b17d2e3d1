//! The evaluations' figures, each one PNG:
//! - the notebook's "Localization quality analysis", three panels: per-image coarse precision vs
//!   recall (with the means), the IoU histogram of strict matches (15 bins, the 0.5 threshold
//!   marked), and coarse recall of the 10 most frequent ground-truth classes (green at 0.5 and
//!   up, orange at 0.25 and up, red below, with matched/total beside each bar);
//! - its quantitative summary: VQA accuracy beside COCO's precision, recall, strict recall and
//!   mean IoU.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::charts::{draw_error, register_font, Panel, FONT};
use crate::eval::summary::ClassRecall;

const CYAN: RGBColor = RGBColor(0x06, 0xb6, 0xd4);
const GREEN: RGBColor = RGBColor(0x22, 0xc5, 0x5e);
const ORANGE: RGBColor = RGBColor(0xf9, 0x73, 0x16);
const RED: RGBColor = RGBColor(0xef, 0x44, 0x44);

/// The inputs of the three panels.
pub struct LocalizationChart<'a> {
    /// Per image: (coarse recall, coarse precision).
    pub per_image: &'a [(f64, f64)],
    pub mean_precision: f64,
    pub mean_recall: f64,
    /// IoU of every strict true positive.
    pub strict_tp_ious: &'a [f64],
    pub per_class: &'a [ClassRecall],
}

/// matplotlib's `hist(bins=15)` edges: 15 equal bins over the data's range (±0.5 around a single value).
pub fn histogram(values: &[f64], bins: usize) -> (Vec<f64>, Vec<usize>) {
    if values.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if lo == hi {
        lo -= 0.5;
        hi += 0.5;
    }
    let edges: Vec<f64> = (0..=bins)
        .map(|i| lo + (hi - lo) * i as f64 / bins as f64)
        .collect();
    let mut counts = vec![0usize; bins];
    for &v in values {
        // As numpy: estimate the bin, then fix rounding against the edges; the last bin includes
        // its right edge.
        let mut k = ((((v - lo) / (hi - lo)) * bins as f64).floor() as usize).min(bins - 1);
        if k > 0 && v < edges[k] {
            k -= 1;
        } else if k + 1 < bins && v >= edges[k + 1] {
            k += 1;
        }
        counts[k] += 1;
    }
    (edges, counts)
}

pub fn localization_chart(path: &Path, title: &str, c: &LocalizationChart) -> Result<()> {
    register_font();
    let draw = || -> Result<()> {
        let root = BitMapBackend::new(path, (1800, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let root = root.titled(title, (FONT, 26)).map_err(draw_error)?;
        let panels = root.split_evenly((1, 3));
        precision_recall_panel(&panels[0], c)?;
        iou_panel(&panels[1], c)?;
        class_recall_panel(&panels[2], c)?;
        root.present().map_err(draw_error)
    };
    draw().with_context(|| format!("cannot draw chart {}", path.display()))
}

/// Panel 1: per-image coarse precision vs recall, with the means.
fn precision_recall_panel(area: &Panel, c: &LocalizationChart) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption("Per-image coarse precision vs recall", (FONT, 20))
        .margin(14)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.05..1.05, -0.05..1.05)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("Recall @0.3")
        .y_desc("Precision @0.3")
        .label_style((FONT, 14))
        .draw()
        .map_err(draw_error)?;
    let gray = RGBColor(0x80, 0x80, 0x80);
    chart
        .draw_series([
            PathElement::new(
                vec![(-0.05, c.mean_precision), (1.05, c.mean_precision)],
                gray.mix(0.8).stroke_width(2),
            ),
            PathElement::new(
                vec![(c.mean_recall, -0.05), (c.mean_recall, 1.05)],
                gray.mix(0.8).stroke_width(2),
            ),
        ])
        .map_err(draw_error)?;
    chart
        .draw_series(c.per_image.iter().map(|&(r, p)| {
            EmptyElement::at((r, p))
                + Circle::new((0, 0), 7, CYAN.mix(0.7).filled())
                + Circle::new((0, 0), 7, BLACK.stroke_width(1))
        }))
        .map_err(draw_error)?;
    chart
        .draw_series([Text::new(
            format!("mean ({:.2}, {:.2})", c.mean_precision, c.mean_recall),
            (c.mean_recall + 0.02, c.mean_precision + 0.04),
            (FONT, 13).into_font().color(&gray),
        )])
        .map_err(draw_error)?;
    Ok(())
}

/// Panel 2: the IoU of strict matches, the 0.5 threshold marked.
fn iou_panel(area: &Panel, c: &LocalizationChart) -> Result<()> {
    let (edges, counts) = histogram(c.strict_tp_ious, 15);
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.15;
    let (x0, x1) = match (edges.first(), edges.last()) {
        (Some(&a), Some(&b)) => (a.min(0.45), b.max(0.55)),
        _ => (0.0, 1.0),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("IoU of strict matches (n={})", c.strict_tp_ious.len()),
            (FONT, 20),
        )
        .margin(14)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, 0.0..top)
        .map_err(draw_error)?;
    let mut mesh = chart.configure_mesh();
    mesh.label_style((FONT, 14));
    if !c.strict_tp_ious.is_empty() {
        mesh.x_desc("IoU").y_desc("Count");
    }
    mesh.draw().map_err(draw_error)?;
    if !c.strict_tp_ious.is_empty() {
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &n)| {
                Rectangle::new(
                    [(edges[i], 0.0), (edges[i + 1], n as f64)],
                    GREEN.mix(0.85).filled(),
                )
            }))
            .map_err(draw_error)?;
        chart
            .draw_series([PathElement::new(
                vec![(0.5, 0.0), (0.5, top)],
                RED.stroke_width(3),
            )])
            .map_err(draw_error)?
            .label("IoU=0.5 threshold")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(3)));
        chart
            .configure_series_labels()
            .label_font((FONT, 13))
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(draw_error)?;
    }
    Ok(())
}

/// Panel 3: per-class coarse recall, the most frequent class on top.
fn class_recall_panel(area: &Panel, c: &LocalizationChart) -> Result<()> {
    let n = c.per_class.len() as i32;
    let mut chart = ChartBuilder::on(area)
        .caption("Per-class coarse recall (top 10 by GT count)", (FONT, 20))
        .margin(14)
        .x_label_area_size(45)
        .y_label_area_size(130)
        .build_cartesian_2d(0.0..1.05, (0..n.max(1)).into_segmented())
        .map_err(draw_error)?;
    let name_at = |v: &SegmentValue<i32>| match v {
        // Row 0 at the bottom holds the last class.
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => c
            .per_class
            .get((n - 1 - *i) as usize)
            .map(|r| r.name.clone())
            .unwrap_or_default(),
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("Recall @0.3")
        .label_style((FONT, 14))
        .y_label_formatter(&name_at)
        .draw()
        .map_err(draw_error)?;
    let row = |k: usize| n - 1 - k as i32;
    chart
        .draw_series(c.per_class.iter().enumerate().map(|(k, r)| {
            let color = if r.recall >= 0.5 {
                GREEN
            } else if r.recall >= 0.25 {
                ORANGE
            } else {
                RED
            };
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(row(k))),
                    (r.recall, SegmentValue::Exact(row(k) + 1)),
                ],
                color.filled(),
            );
            bar.set_margin(5, 5, 0, 0);
            bar
        }))
        .map_err(draw_error)?;
    chart
        .draw_series(c.per_class.iter().enumerate().map(|(k, r)| {
            Text::new(
                format!("{}/{}", r.matched, r.total),
                (r.recall + 0.02, SegmentValue::CenterOf(row(k))),
                TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center)),
            )
        }))
        .map_err(draw_error)?;
    Ok(())
}

/// One panel of [`quantitative_summary`]: its caption and bars (label, value in 0..1, colour).
pub struct BarPanel<'a> {
    pub caption: String,
    pub bars: Vec<(&'a str, f64, RGBColor)>,
}

/// The notebook's quantitative summary figure: the VQA panel (narrow, left) and the COCO one.
pub fn quantitative_summary(
    path: &Path,
    title: &str,
    vqa: &BarPanel,
    coco: &BarPanel,
) -> Result<()> {
    register_font();
    let draw = || -> Result<()> {
        let root = BitMapBackend::new(path, (1650, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let root = root.titled(title, (FONT, 24)).map_err(draw_error)?;
        let (left, right) = root.split_horizontally(550);
        bar_panel(&left, vqa)?;
        bar_panel(&right, coco)?;
        root.present().map_err(draw_error)
    };
    draw().with_context(|| format!("cannot draw {}", path.display()))
}

/// Bars of values in 0..1, each labelled below and with its value above.
fn bar_panel(area: &Panel, panel: &BarPanel) -> Result<()> {
    let bars = &panel.bars;
    let n = bars.len().max(1) as i32;
    // A segmented 0..=n-1 range has exactly n segments.
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.caption, (FONT, 20))
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..1.0)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .label_style((FONT, 15))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => bars
                .get(*i as usize)
                .map(|b| b.0.to_string())
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .draw()
        .map_err(draw_error)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v, c))| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i as i32), 0.0),
                    (SegmentValue::Exact(i as i32 + 1), *v),
                ],
                c.mix(0.8).filled(),
            );
            bar.set_margin(0, 0, 15, 15);
            bar
        }))
        .map_err(draw_error)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v, _))| {
            Text::new(
                format!("{v:.2}"),
                (SegmentValue::CenterOf(i as i32), v + 0.02),
                TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        }))
        .map_err(draw_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_spans_the_data_and_counts_the_right_edge_in_the_last_bin() {
        let (edges, counts) = histogram(&[0.5, 0.6, 0.8], 3);
        assert_eq!(edges.len(), 4);
        assert!((edges[0] - 0.5).abs() < 1e-12 && (edges[3] - 0.8).abs() < 1e-12);
        assert_eq!(counts, vec![1, 1, 1]);
        let (edges, counts) = histogram(&[0.7], 15);
        assert!((edges[0] - 0.2).abs() < 1e-12);
        assert_eq!(counts.iter().sum::<usize>(), 1);
    }

    #[test]
    fn draws_a_png_with_and_without_matches() {
        let dir = tempfile::tempdir().unwrap();
        let classes = vec![ClassRecall {
            name: "person".into(),
            matched: 1,
            total: 3,
            recall: 1.0 / 3.0,
        }];
        for ious in [vec![0.55, 0.7], vec![]] {
            let path = dir.path().join("c.png");
            let chart = LocalizationChart {
                per_image: &[(0.5, 0.25), (0.0, 0.0)],
                mean_precision: 0.125,
                mean_recall: 0.25,
                strict_tp_ious: &ious,
                per_class: &classes,
            };
            localization_chart(&path, "Localization quality analysis", &chart).unwrap();
            let img = image::open(&path).unwrap();
            assert_eq!((img.width(), img.height()), (1800, 560));
        }
    }
}
