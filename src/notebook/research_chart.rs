//! The notebook's chart-analysis figure, redrawn with plotters from the same synthetic data:
//! training vs validation loss over 20 epochs (numpy seed 42 noise, overfitting from epoch 15)
//! and a four-model accuracy bar chart.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::charts::{register_font, FONT};

/// The figure's data, as the notebook computes it.
#[derive(Clone, Debug, PartialEq)]
pub struct ResearchData {
    pub epochs: Vec<f64>,
    pub train_loss: Vec<f64>,
    pub val_loss: Vec<f64>,
    pub models: [&'static str; 4],
    pub accuracy: [f64; 4],
}

impl ResearchData {
    /// `train_noise` and `val_noise` are the notebook's `np.random.normal(0, 0.05, 20)` and
    /// `np.random.normal(0, 0.08, 20)` draws after `np.random.seed(42)`.
    pub fn from_noise(train_noise: &[f64], val_noise: &[f64]) -> Self {
        let epochs: Vec<f64> = (1..=20).map(f64::from).collect();
        let train_loss = epochs
            .iter()
            .zip(train_noise)
            .map(|(e, n)| 2.5 * (-0.15 * e).exp() + 0.1 + n)
            .collect();
        let mut val_loss: Vec<f64> = epochs
            .iter()
            .zip(val_noise)
            .map(|(e, n)| 2.5 * (-0.12 * e).exp() + 0.3 + n)
            .collect();
        // val_loss[14:] += np.linspace(0, 0.4, 6)
        for (i, v) in val_loss.iter_mut().skip(14).enumerate() {
            *v += 0.4 * i as f64 / 5.0;
        }
        Self {
            epochs,
            train_loss,
            val_loss,
            models: ["CNN", "ResNet", "ViT", "Ours"],
            accuracy: [78.2, 85.6, 89.1, 92.3],
        }
    }
}

const TRAIN_BLUE: RGBColor = RGBColor(0, 0, 255);
const VAL_RED: RGBColor = RGBColor(255, 0, 0);
const BAR_GRAY: RGBColor = RGBColor(0xaa, 0xaa, 0xaa);
const OURS_RED: RGBColor = RGBColor(0xe7, 0x4c, 0x3c);

/// Draws the two panels at the notebook's 10x4 inches, 150 dpi.
pub fn draw(path: &Path, data: &ResearchData) -> Result<()> {
    register_font();
    let err = |e: DrawingAreaErrorKind<_>| anyhow!("cannot draw {}: {e:?}", path.display());
    let root = BitMapBackend::new(path, (1500, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(750);

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
    let mut loss = ChartBuilder::on(&left)
        .caption("Training vs Validation Loss", (FONT, 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..21.0, y_min..y_max)
        .map_err(err)?;
    loss.configure_mesh()
        .x_desc("Epoch")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("Loss")
        .label_style((FONT, 16))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
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
    .map_err(err)?
    .label("Train")
    .legend(|(x, y)| Circle::new((x + 10, y), 4, TRAIN_BLUE.filled()));
    loss.draw_series(
        points(&data.train_loss)
            .into_iter()
            .map(|p| Circle::new(p, 4, TRAIN_BLUE.filled())),
    )
    .map_err(err)?;
    loss.draw_series(LineSeries::new(
        points(&data.val_loss),
        VAL_RED.stroke_width(2),
    ))
    .map_err(err)?
    .label("Val")
    .legend(|(x, y)| Rectangle::new([(x + 6, y - 4), (x + 14, y + 4)], VAL_RED.filled()));
    loss.draw_series(points(&data.val_loss).into_iter().map(|(x, y)| {
        EmptyElement::at((x, y)) + Rectangle::new([(-4, -4), (4, 4)], VAL_RED.filled())
    }))
    .map_err(err)?;
    loss.configure_series_labels()
        .border_style(BLACK.mix(0.3))
        .background_style(WHITE.mix(0.9))
        .label_font((FONT, 16))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;

    let n = data.models.len() as i32;
    let mut bars = ChartBuilder::on(&right)
        .caption("Model Comparison", (FONT, 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((0..n - 1).into_segmented(), 70.0..100.0)
        .map_err(err)?;
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
        .map_err(err)?;
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
    .map_err(err)?;
    bars.draw_series(data.accuracy.iter().enumerate().map(|(i, &v)| {
        Text::new(
            format!("{v}%"),
            (SegmentValue::CenterOf(i as i32), v + 0.5),
            TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom)),
        )
    }))
    .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overfitting_ramp_is_added_from_epoch_15() {
        let zero = [0.0; 20];
        let d = ResearchData::from_noise(&zero, &zero);
        let base = |e: f64| 2.5 * (-0.12 * e).exp() + 0.3;
        assert!((d.val_loss[13] - base(14.0)).abs() < 1e-12);
        assert!((d.val_loss[14] - base(15.0)).abs() < 1e-12);
        assert!((d.val_loss[15] - base(16.0) - 0.08).abs() < 1e-12);
        assert!((d.val_loss[19] - base(20.0) - 0.4).abs() < 1e-12);
        assert!((d.train_loss[0] - (2.5 * (-0.15f64).exp() + 0.1)).abs() < 1e-12);
    }

    #[test]
    fn draws_a_png_with_both_panels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("research.png");
        let noise: Vec<f64> = (0..20).map(|i| (i as f64 * 0.7).sin() * 0.05).collect();
        draw(&path, &ResearchData::from_noise(&noise, &noise)).unwrap();
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
