//! Charts of bench runs on different numbers of processes: `scaling.png` (one panel per test:
//! tok/s against process count, the ideal linear line from the baseline, the measured speedup at
//! each point) and `scaling_memory.png` (one panel per test: every process's peak memory, so the
//! split of a tensor-parallel model is visible). The figures come from bench::scaling.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::charts::{plot_err, register_font, trim_number, FONT, SERIES_COLORS};
use crate::bench::scaling::{scaling, BenchFile, TestScaling};

const PANEL_HEIGHT: u32 = 540;
const GIB: f64 = (1u64 << 30) as f64;
const IDEAL_COLOR: RGBColor = RGBColor(0x7f, 0x8c, 0x8d);

/// Width of each panel of `scaling.png`.
pub const SPEED_PANEL_WIDTH: u32 = 600;

/// Width of one test's memory panel: room for every bar of every run.
pub fn memory_panel_width(test: &TestScaling) -> u32 {
    let bars: usize = test
        .points
        .iter()
        .map(|p| p.peak_memory_per_process.len())
        .sum();
    600.max(100 + 110 * bars as u32)
}

/// Draws `scaling.png` and `scaling_memory.png` into `dir` from bench files of runs on different
/// numbers of processes.
pub fn chart_scaling(files: &[BenchFile], dir: &Path) -> Result<Vec<PathBuf>> {
    let tests = scaling(files)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow!("cannot create chart directory {}: {e}", dir.display()))?;
    let what = describe(files);
    let speed = dir.join("scaling.png");
    speed_vs_processes(&speed, &format!("Scaling over processes — {what}"), &tests)?;
    let memory = dir.join("scaling_memory.png");
    memory_per_process(
        &memory,
        &format!("Peak memory per process — {what}"),
        &tests,
    )?;
    Ok(vec![speed, memory])
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 process".into()
    } else {
        format!("{n} processes")
    }
}

/// tok/s against process count, one panel per test, with the ideal line and speedup labels.
pub fn speed_vs_processes(path: &Path, title: &str, tests: &[TestScaling]) -> Result<()> {
    anyhow::ensure!(
        !tests.is_empty(),
        "no scaling figures to chart for {}",
        path.display()
    );
    register_font();
    let err = plot_err(path);
    let root = BitMapBackend::new(path, (SPEED_PANEL_WIDTH * tests.len() as u32, PANEL_HEIGHT))
        .into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let root = root.titled(title, (FONT, 22)).map_err(&err)?;
    for (area, test) in root.split_evenly((1, tests.len())).iter().zip(tests) {
        // Integer process counts, one past the largest so its label fits.
        let x_hi = test.points.last().map_or(1, |p| p.processes as i32) + 1;
        let y_max = test
            .points
            .iter()
            .map(|p| p.tps.max(p.ideal_tps))
            .fold(0.0, f64::max)
            .max(1e-9)
            * 1.2;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{} (tokens/s)", test.test), (FONT, 20))
            .margin(16)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0..x_hi, 0.0..y_max)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("processes (tensor-parallel ranks)")
            .y_desc("tokens/s")
            .label_style((FONT, 14))
            .light_line_style(WHITE)
            .x_label_formatter(&|x| {
                if *x == 0 {
                    String::new()
                } else {
                    x.to_string()
                }
            })
            .y_label_formatter(&|y| trim_number(*y))
            .draw()
            .map_err(&err)?;
        let base = plural(test.points[0].processes);
        let ideal: Vec<(i32, f64)> = test
            .points
            .iter()
            .map(|p| (p.processes as i32, p.ideal_tps))
            .collect();
        chart
            .draw_series(DashedLineSeries::new(
                ideal,
                8,
                6,
                IDEAL_COLOR.stroke_width(2),
            ))
            .map_err(&err)?
            .label(format!("ideal (linear from {base})"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], IDEAL_COLOR.stroke_width(2)));
        let color = SERIES_COLORS[0];
        let measured: Vec<(i32, f64)> = test
            .points
            .iter()
            .map(|p| (p.processes as i32, p.tps))
            .collect();
        chart
            .draw_series(LineSeries::new(measured.clone(), color.stroke_width(3)))
            .map_err(&err)?
            .label("measured")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], color.stroke_width(3)));
        // Each point with its speedup beside it: the baseline's on its left (its lines leave to the
        // right), the others' on their right (their lines arrive from the left).
        chart
            .draw_series(test.points.iter().enumerate().map(|(k, p)| {
                let (dx, anchor) = if k == 0 {
                    (-10, HPos::Right)
                } else {
                    (10, HPos::Left)
                };
                EmptyElement::at((p.processes as i32, p.tps))
                    + Circle::new((0, 0), 5, color.filled())
                    + Text::new(
                        format!("{:.2}× ({:.1} tok/s)", p.speedup, p.tps),
                        (dx, 0),
                        TextStyle::from((FONT, 15).into_font()).pos(Pos::new(anchor, VPos::Center)),
                    )
            }))
            .map_err(&err)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .draw()
            .map_err(&err)?;
    }
    root.present().map_err(&err)?;
    Ok(())
}

/// One bar per process of every run, grouped by run and coloured by process count, one panel per test.
pub fn memory_per_process(path: &Path, title: &str, tests: &[TestScaling]) -> Result<()> {
    anyhow::ensure!(
        !tests.is_empty(),
        "no scaling figures to chart for {}",
        path.display()
    );
    register_font();
    let err = plot_err(path);
    let widths: Vec<u32> = tests.iter().map(memory_panel_width).collect();
    let root = BitMapBackend::new(path, (widths.iter().sum(), PANEL_HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let mut rest = root.titled(title, (FONT, 22)).map_err(&err)?;
    for (test, width) in tests.iter().zip(&widths) {
        let (area, right) = rest.split_horizontally(*width);
        rest = right;
        // (label, GiB, colour) of every bar, in run then rank order.
        let bars: Vec<(String, f64, RGBColor)> = test
            .points
            .iter()
            .enumerate()
            .flat_map(|(k, p)| {
                let color = SERIES_COLORS[k % SERIES_COLORS.len()];
                let ranks = p.peak_memory_per_process.len();
                p.peak_memory_per_process
                    .iter()
                    .enumerate()
                    .map(move |(rank, &bytes)| {
                        let label = if ranks == 1 {
                            plural(1)
                        } else {
                            format!("{} · rank {rank}", plural(ranks))
                        };
                        (label, bytes as f64 / GIB, color)
                    })
            })
            .collect();
        let sums: Vec<String> = test
            .points
            .iter()
            .map(|p| {
                format!(
                    "{:.2}",
                    p.peak_memory_per_process.iter().sum::<u64>() as f64 / GIB
                )
            })
            .collect();
        let sums = sums.join(", ");
        let n = bars.len() as i32;
        let y_max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9) * 1.2;
        let mut chart = ChartBuilder::on(&area)
            .caption(
                format!("{} (sum over processes: {sums} GiB)", test.test),
                (FONT, 18),
            )
            .margin(16)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..y_max)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .y_desc("peak memory (GiB)")
            .label_style((FONT, 13))
            .y_label_formatter(&|y| trim_number(*y))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => bars
                    .get(*i as usize)
                    .map(|b| b.0.clone())
                    .unwrap_or_default(),
                SegmentValue::Last => String::new(),
            })
            .draw()
            .map_err(&err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, gib, color))| {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i as i32), 0.0),
                        (SegmentValue::Exact(i as i32 + 1), *gib),
                    ],
                    color.mix(0.85).filled(),
                );
                bar.set_margin(0, 0, 12, 12);
                bar
            }))
            .map_err(&err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, gib, _))| {
                Text::new(
                    format!("{gib:.2}"),
                    (SegmentValue::CenterOf(i as i32), *gib),
                    TextStyle::from((FONT, 14).into_font())
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            }))
            .map_err(&err)?;
    }
    root.present().map_err(&err)?;
    Ok(())
}

/// "model (dtype) on device" over every row of the files, each distinct value listed once; the
/// device without its index ("gpu:0 NVIDIA H200" -> "NVIDIA H200"), since each rank sees its own
/// GPU as index 0.
fn describe(files: &[BenchFile]) -> String {
    let mut models: Vec<&str> = Vec::new();
    let mut dtypes: Vec<&str> = Vec::new();
    let mut devices: Vec<&str> = Vec::new();
    for row in files.iter().flat_map(|f| &f.rows) {
        let device = match row.device.split_once(' ') {
            Some((_, name)) if !name.trim().is_empty() => name.trim(),
            _ => row.device.split(':').next().unwrap_or(&row.device),
        };
        for (seen, value) in [
            (&mut models, row.model.as_str()),
            (&mut dtypes, row.dtype.as_str()),
            (&mut devices, device),
        ] {
            if !value.is_empty() && !seen.contains(&value) {
                seen.push(value);
            }
        }
    }
    let mut text = models.join(", ");
    if !dtypes.is_empty() {
        text.push_str(&format!(" ({})", dtypes.join(", ")));
    }
    if !devices.is_empty() {
        text.push_str(&format!(" on {}", devices.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::scaling::SavedBenchRow;
    use crate::bench::RankFigures;

    fn row(test: &str, device: &str, tps: f64, ranks: &[u64]) -> SavedBenchRow {
        SavedBenchRow {
            model: "gemma-4-31b-random".into(),
            device: device.into(),
            dtype: "bfloat16".into(),
            test: test.into(),
            tps_mean: tps,
            peak_memory_bytes: ranks[0],
            ranks: (ranks.len() > 1).then(|| {
                ranks
                    .iter()
                    .enumerate()
                    .map(|(rank, &peak_memory_bytes)| RankFigures {
                        rank,
                        tps_mean: tps,
                        peak_memory_bytes,
                    })
                    .collect()
            }),
        }
    }

    fn files() -> Vec<BenchFile> {
        vec![
            BenchFile {
                path: "single.json".into(),
                rows: vec![
                    row("pp512", "gpu:0 NVIDIA H200", 1664.6, &[24 << 30]),
                    row("tg128", "gpu:0 NVIDIA H200", 61.5, &[18 << 30]),
                ],
            },
            BenchFile {
                path: "rank0.json".into(),
                rows: vec![
                    row("pp512", "gpu:0 NVIDIA H200", 2748.1, &[13 << 30, 13 << 30]),
                    row("tg128", "gpu:0 NVIDIA H200", 101.5, &[10 << 30, 10 << 30]),
                ],
            },
        ]
    }

    #[test]
    fn the_title_names_model_dtype_and_device_once_without_the_device_index() {
        assert_eq!(
            describe(&files()),
            "gemma-4-31b-random (bfloat16) on NVIDIA H200"
        );
        let cpu = [BenchFile {
            path: "c.json".into(),
            rows: vec![row("pp16", "cpu:0", 1.0, &[1])],
        }];
        assert_eq!(describe(&cpu), "gemma-4-31b-random (bfloat16) on cpu");
    }

    #[test]
    fn both_charts_are_drawn_one_panel_per_test() {
        let dir = tempfile::tempdir().unwrap();
        let written = chart_scaling(&files(), dir.path()).unwrap();
        assert_eq!(
            written,
            [
                dir.path().join("scaling.png"),
                dir.path().join("scaling_memory.png")
            ]
        );
        let speed = image::open(&written[0]).unwrap().to_rgb8();
        assert_eq!(speed.dimensions(), (2 * SPEED_PANEL_WIDTH, PANEL_HEIGHT));
        let memory = image::open(&written[1]).unwrap().to_rgb8();
        assert_eq!(memory.dimensions(), (2 * 600, PANEL_HEIGHT));
        // The measured line, the ideal line and the second run's bars are all drawn.
        let near = |a: u8, b: u8| (a as i32 - b as i32).abs() <= 2;
        let has = |img: &image::RgbImage, c: RGBColor| {
            img.pixels()
                .any(|p| near(p.0[0], c.0) && near(p.0[1], c.1) && near(p.0[2], c.2))
        };
        assert!(
            has(&speed, SERIES_COLORS[0]) && has(&speed, IDEAL_COLOR),
            "measured and ideal lines"
        );
        let blend = |c: RGBColor| RGBColor(mix(c.0), mix(c.1), mix(c.2));
        assert!(
            has(&memory, blend(SERIES_COLORS[0])) && has(&memory, blend(SERIES_COLORS[1])),
            "bars of both runs"
        );
    }

    /// A channel of a bar drawn at 85% opacity over white.
    fn mix(c: u8) -> u8 {
        (c as f64 * 0.85 + 255.0 * 0.15).round() as u8
    }

    #[test]
    fn memory_panels_widen_for_many_ranks() {
        let eight = BenchFile {
            path: "tp8.json".into(),
            rows: vec![row("tg128", "gpu:0 NVIDIA H200", 300.0, &[3 << 30; 8])],
        };
        let tests = scaling(&[files().remove(0), eight]).unwrap();
        assert_eq!(memory_panel_width(&tests[0]), 100 + 110 * 9);
    }
}
