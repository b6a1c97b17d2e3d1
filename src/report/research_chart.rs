//! The notebook's chart-analysis figure with plotters: training vs validation loss (left) and a
//! model accuracy bar chart (right), from data the notebook computes
//! (`crate::notebook::research_data`).

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::charts::{draw_error, register_font, Panel, FONT};

/// The figure's data.
#[derive(Clone, Debug, PartialEq)]
pub struct ResearchData {
    pub epochs: Vec<f64>,
    pub train_loss: Vec<f64>,
    pub val_loss: Vec<f64>,
    pub models: [&'static str; 4],
    pub accuracy: [f64; 4],
}

const TRAIN_BLUE: RGBColor = RGBColor(0, 0, 255);
const VAL_RED: RGBColor = RGBColor(255, 0, 0);
const BAR_GRAY: RGBColor = RGBColor(0xaa, 0xaa, 0xaa);
const OURS_RED: RGBColor = RGBColor(0xe7, 0x4c, 0x3c);

/// Draws the two panels at the notebook's 10x4 inches, 150 dpi.
pub fn draw(path: &Path, data: &ResearchData) -> Result<()> {
    register_font();
    let draw = || -> Result<()> {
        let root = BitMapBackend::new(path, (1500, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let (left, right) = root.split_horizontally(750);
        loss_panel(&left, data)?;
        accuracy_panel(&right, data)?;
        root.present().map_err(draw_error)
    };
    draw().with_context(|| format!("cannot draw {}", path.display()))
}

/// Training and validation loss by epoch.
fn loss_panel(area: &Panel, data: &ResearchData) -> Result<()> {
    let y_max = data
        .train_loss
        .iter()
        .chain(&data.val_loss)
        .fold(0.0f64, |a, &b| a.max(b))
        * 1.05;
    let y_min = data
        .train_loss
        .iter()
        .chain(&data.val_loss)
        .fold(f64::MAX, |a, &b| a.min(b))
        .min(0.0);
    let mut loss = ChartBuilder::on(area)
        .caption("Training vs Validation Loss", (FONT, 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..21.0, y_min..y_max)
        .map_err(draw_error)?;
    loss.configure_mesh()
        .x_desc("Epoch")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("Loss")
        .label_style((FONT, 16))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(WHITE)
        .draw()
        .map_err(draw_error)?;
    let points = |ys: &[f64]| {
        data.epochs
            .iter()
            .copied()
            .zip(ys.iter().copied())
            .collect::<Vec<_>>()
    };
    loss.draw_series(LineSeries::new(
        points(&data.train_loss),
        TRAIN_BLUE.stroke_width(2),
    ))
    .map_err(draw_error)?
    .label("Train")
    .legend(|(x, y)| Circle::new((x + 10, y), 4, TRAIN_BLUE.filled()));
    loss.draw_series(
        points(&data.train_loss)
            .into_iter()
            .map(|p| Circle::new(p, 4, TRAIN_BLUE.filled())),
    )
    .map_err(draw_error)?;
    loss.draw_series(LineSeries::new(
        points(&data.val_loss),
        VAL_RED.stroke_width(2),
    ))
    .map_err(draw_error)?
    .label("Val")
    .legend(|(x, y)| Rectangle::new([(x + 6, y - 4), (x + 14, y + 4)], VAL_RED.filled()));
    loss.draw_series(points(&data.val_loss).into_iter().map(|(x, y)| {
        EmptyElement::at((x, y)) + Rectangle::new([(-4, -4), (4, 4)], VAL_RED.filled())
    }))
    .map_err(draw_error)?;
    loss.configure_series_labels()
        .border_style(BLACK.mix(0.3))
        .background_style(WHITE.mix(0.9))
        .label_font((FONT, 16))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(draw_error)?;
    Ok(())
}

/// Each model's accuracy, the last (ours) in red.
fn accuracy_panel(area: &Panel, data: &ResearchData) -> Result<()> {
    let n = data.models.len() as i32;
    let mut bars = ChartBuilder::on(area)
        .caption("Model Comparison", (FONT, 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((0..n - 1).into_segmented(), 70.0..100.0)
        .map_err(draw_error)?;
    bars.configure_mesh()
        .disable_x_mesh()
        .y_desc("Accuracy (%)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .light_line_style(WHITE)
        .label_style((FONT, 16))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => data
                .models
                .get(*i as usize)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .draw()
        .map_err(draw_error)?;
    bars.draw_series(data.accuracy.iter().enumerate().map(|(i, &v)| {
        let color = if i + 1 == data.accuracy.len() {
            OURS_RED
        } else {
            BAR_GRAY
        };
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i as i32), 70.0),
                (SegmentValue::Exact(i as i32 + 1), v),
            ],
            color.filled(),
        );
        bar.set_margin(0, 0, 20, 20);
        bar
    }))
    .map_err(draw_error)?;
    bars.draw_series(data.accuracy.iter().enumerate().map(|(i, &v)| {
        Text::new(
            format!("{v}%"),
            (SegmentValue::CenterOf(i as i32), v + 0.5),
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
    fn draws_a_png_with_both_panels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("research.png");
        let noise: Vec<f64> = (0..20).map(|i| (i as f64 * 0.7).sin() * 0.05).collect();
        draw(
            &path,
            &crate::notebook::research_data::from_noise(&noise, &noise),
        )
        .unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (1500, 600));
        let has = |c: [u8; 3]| img.pixels().any(|p| p.0 == c);
        assert!(
            has([0, 0, 255]) && has([255, 0, 0]),
            "both loss curves are drawn"
        );
        assert!(
            has([0xe7, 0x4c, 0x3c]) && has([0xaa, 0xaa, 0xaa]),
            "the bars are drawn"
        );
    }
}
