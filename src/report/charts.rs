//! PNG charts with plotters, readable at a glance: titles, units on every axis, values on bars,
//! legends where there is more than one series. Text uses DejaVu Sans, embedded, so charts look
//! the same on every machine and no system font library is needed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::bench::results::{ResultKind, ResultsFile};

pub(crate) const FONT: &str = "sans-serif";
use super::FONT_BYTES;
static REGISTER: Once = Once::new();

/// Text-only prompts in blue, prompts with images in red, as in the seed notebook.
pub const TEXT_COLOR: RGBColor = RGBColor(0x34, 0x98, 0xdb);
pub const IMAGE_COLOR: RGBColor = RGBColor(0xe7, 0x4c, 0x3c);
pub(crate) const SERIES_COLORS: [RGBColor; 6] = [
    RGBColor(0x34, 0x98, 0xdb),
    RGBColor(0xe7, 0x4c, 0x3c),
    RGBColor(0x27, 0xae, 0x60),
    RGBColor(0x8e, 0x44, 0xad),
    RGBColor(0xf3, 0x9c, 0x12),
    RGBColor(0x2c, 0x3e, 0x50),
];

/// One panel of a figure drawn into a PNG.
pub(crate) type Panel<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// A plotters error as an error of ours (the caller adds which file).
pub(crate) fn draw_error(e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow!("{e:?}")
}

pub(crate) fn register_font() {
    REGISTER.call_once(|| {
        // The embedded bytes are a valid TrueType font; registration cannot fail for them.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES);
    });
}

pub(crate) fn plot_err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> anyhow::Error + '_ {
    move |e| anyhow!("cannot draw chart {}: {e:?}", path.display())
}

/// One bar of the throughput panels (one prompt of the notebook's table).
#[derive(Clone, Debug)]
pub struct ThroughputBar {
    pub label: String,
    pub has_image: bool,
    pub gen_tps: f64,
    pub prompt_tps: f64,
    pub total_s: f64,
}

/// The notebook's three panels: generation speed, prompt processing speed, total time per test.
pub fn throughput_panels(path: &Path, title: &str, bars: &[ThroughputBar]) -> Result<()> {
    anyhow::ensure!(
        !bars.is_empty(),
        "no results to chart for {}",
        path.display()
    );
    register_font();
    let err = plot_err(path);
    let root = BitMapBackend::new(path, (1500, 120 + 60 * bars.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let root = root.titled(title, (FONT, 24)).map_err(&err)?;
    let panels = root.split_evenly((1, 3));
    let specs: [(&str, &str, Value<ThroughputBar>, &str); 3] = [
        ("Generation speed", "tokens/s", |b| b.gen_tps, ""),
        ("Prompt processing speed", "tokens/s", |b| b.prompt_tps, ""),
        ("Total time", "seconds", |b| b.total_s, " s"),
    ];
    for (panel, (caption, unit, value, suffix)) in panels.iter().zip(specs) {
        let panel_bars: Vec<PanelBar> = bars
            .iter()
            .map(|b| PanelBar {
                label: b.label.clone(),
                value: value(b),
                colour: if b.has_image { IMAGE_COLOR } else { TEXT_COLOR },
                text: format!(" {:.1}{suffix}", value(b)),
            })
            .collect();
        bar_panel(path, panel, caption, unit, &panel_bars, (150, 1.25, 8))?;
    }
    root.present().map_err(&err)?;
    Ok(())
}

/// One program's figures for one test of a side-by-side chart.
#[derive(Clone, Debug)]
pub struct ProgramBar {
    pub program: String,
    pub test: String,
    /// tokens/s.
    pub value: f64,
}

/// Programs side by side on the same tests: prefill rates in one panel, decode rates in the
/// other, a bar per (test, program) coloured by program, each labelled with its rate and its
/// ratio to the first program's (the baseline).
pub fn programs_side_by_side(
    path: &Path,
    title: &str,
    programs: &[String],
    prefill: &[ProgramBar],
    decode: &[ProgramBar],
) -> Result<()> {
    anyhow::ensure!(
        !prefill.is_empty() || !decode.is_empty(),
        "no results to chart for {}",
        path.display()
    );
    register_font();
    let err = plot_err(path);
    let rows = prefill.len().max(decode.len()) as u32;
    let root = BitMapBackend::new(path, (1400, 130 + 44 * rows)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let root = root.titled(title, (FONT, 22)).map_err(&err)?;
    let panels = root.split_evenly((1, 2));
    let colour = |program: &str| {
        let i = programs.iter().position(|p| p == program).unwrap_or(0);
        SERIES_COLORS[i % SERIES_COLORS.len()]
    };
    let short_names = short_names(programs);
    for (panel, (caption, bars)) in panels.iter().zip([
        ("Prefill (prompt processing)", prefill),
        ("Decode (generation)", decode),
    ]) {
        if bars.is_empty() {
            continue;
        }
        let baseline = |test: &str| {
            bars.iter()
                .find(|b| b.test == test && b.program == programs[0])
                .map(|b| b.value)
        };
        // The test names the bar only where the panel holds several.
        let one_test = bars.iter().all(|b| b.test == bars[0].test);
        let caption = if one_test {
            format!("{caption}, {}", bars[0].test)
        } else {
            caption.to_string()
        };
        let panel_bars: Vec<PanelBar> = bars
            .iter()
            .map(|b| {
                let program =
                    short_names[programs.iter().position(|p| *p == b.program).unwrap_or(0)];
                let ratio = match baseline(&b.test) {
                    Some(base) if base > 0.0 && b.program != programs[0] => {
                        format!(" ({:.2}x)", b.value / base)
                    }
                    _ => String::new(),
                };
                PanelBar {
                    label: if one_test {
                        program.to_string()
                    } else {
                        format!("{} {program}", b.test)
                    },
                    value: b.value,
                    colour: colour(&b.program),
                    text: format!(" {:.1}{ratio}", b.value),
                }
            })
            .collect();
        // About 8 pixels a character at the labels' size.
        let widest = panel_bars.iter().map(|b| b.label.chars().count()).max();
        let label_width = (widest.unwrap_or(0) as u32 * 8 + 30).max(170);
        bar_panel(
            path,
            panel,
            &caption,
            "tokens/s",
            &panel_bars,
            (label_width, 1.45, 6),
        )?;
    }
    root.present().map_err(&err)?;
    Ok(())
}

/// Each program's name before its parenthesised details (`llama.cpp (node-llama-cpp 3.22.1)`:
/// `llama.cpp`), unless another program's shortens to the same: then the whole name.
fn short_names(programs: &[String]) -> Vec<&str> {
    let short = |p: &'_ str| -> usize { p.find(" (").unwrap_or(p.len()) };
    programs
        .iter()
        .map(|p| {
            let s = &p[..short(p)];
            let clash = programs.iter().filter(|q| &q[..short(q)] == s).count() > 1;
            if clash {
                p.as_str()
            } else {
                s
            }
        })
        .collect()
}

/// One bar of a [`bar_panel`]: its axis label, length, colour and the text written after it.
struct PanelBar {
    label: String,
    value: f64,
    colour: RGBColor,
    text: String,
}

/// A panel of horizontal bars, one per entry from the bottom up, each named on the axis and
/// followed by its text. `(label_width, headroom, bar_margin)`: pixels for the names, the axis
/// length as a multiple of the longest bar (room for the texts), pixels between bars.
fn bar_panel(
    path: &Path,
    panel: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    unit: &str,
    bars: &[PanelBar],
    (label_width, headroom, bar_margin): (u32, f64, u32),
) -> Result<()> {
    let err = plot_err(path);
    let max = bars.iter().map(|b| b.value).fold(0.0, f64::max).max(1e-9);
    let n = bars.len() as i32;
    let mut chart = ChartBuilder::on(panel)
        .caption(caption, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(label_width)
        // A segmented 0..=n-1 range has exactly one segment per bar.
        .build_cartesian_2d(0.0..max * headroom, (0..n - 1).into_segmented())
        .map_err(&err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .x_label_formatter(&|v| trim_number(*v))
        .x_desc(unit)
        .label_style((FONT, 14))
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => bars
                .get(*i as usize)
                .map(|b| b.label.clone())
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .draw()
        .map_err(&err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i as i32)),
                    (b.value, SegmentValue::Exact(i as i32 + 1)),
                ],
                b.colour.mix(0.85).filled(),
            );
            bar.set_margin(bar_margin, bar_margin, 0, 0);
            bar
        }))
        .map_err(&err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            Text::new(
                b.text.clone(),
                (b.value, SegmentValue::CenterOf(i as i32)),
                TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center)),
            )
        }))
        .map_err(&err)?;
    Ok(())
}

/// An axis number without a useless ".0" (20 rather than 20.0; 0.5 stays).
pub(crate) fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The number a chart draws for one item.
type Value<T> = fn(&T) -> f64;

/// A line panel of a sweep: its caption and the value drawn against prompt length.
type SweepPanel<'a> = (&'a str, Value<SweepPoint>);

/// One measured prompt length of a sweep.
#[derive(Clone, Copy, Debug)]
pub struct SweepPoint {
    pub prompt_tokens: usize,
    pub prompt_tps: f64,
    pub gen_tps: f64,
    pub peak_memory_bytes: u64,
}

/// A named line (e.g. "vlmbench", "mlx-vlm", or a machine).
#[derive(Clone, Debug)]
pub struct SweepSeries {
    pub name: String,
    pub points: Vec<SweepPoint>,
}

fn x_range(series: &[SweepSeries]) -> (f64, f64) {
    let xs = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.prompt_tokens as f64));
    let (lo, hi) = xs.fold((f64::MAX, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    (lo.max(1.0) / 1.5, hi * 1.5)
}

/// Two panels against prompt length (log scale): prompt processing tok/s and generation tok/s.
pub fn speed_vs_prompt_length(path: &Path, title: &str, series: &[SweepSeries]) -> Result<()> {
    let panels: [SweepPanel; 2] = [
        ("Prompt processing (tokens/s)", |p| p.prompt_tps),
        ("Generation (tokens/s)", |p| p.gen_tps),
    ];
    line_panels(path, title, series, &panels, "tokens/s")
}

/// Peak memory (GiB) against prompt length (log scale).
pub fn memory_vs_prompt_length(path: &Path, title: &str, series: &[SweepSeries]) -> Result<()> {
    let panels: [SweepPanel; 1] = [("Peak memory (GiB)", |p| {
        p.peak_memory_bytes as f64 / (1u64 << 30) as f64
    })];
    line_panels(path, title, series, &panels, "GiB")
}

fn line_panels(
    path: &Path,
    title: &str,
    series: &[SweepSeries],
    panels: &[SweepPanel],
    unit: &str,
) -> Result<()> {
    anyhow::ensure!(
        series.iter().any(|s| !s.points.is_empty()),
        "no sweep points to chart for {}",
        path.display()
    );
    register_font();
    let err = plot_err(path);
    let root = BitMapBackend::new(path, (700 * panels.len() as u32, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let root = root.titled(title, (FONT, 24)).map_err(&err)?;
    let areas = root.split_evenly((1, panels.len()));
    let (x_lo, x_hi) = x_range(series);
    // Ticks at the measured prompt lengths: a log axis alone labels only powers of ten, which
    // leaves a sweep of 16 and 32 tokens without a single number under it.
    let mut lengths: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.prompt_tokens as f64))
        .collect();
    lengths.sort_by(f64::total_cmp);
    lengths.dedup();
    for (area, (caption, value)) in areas.iter().zip(panels) {
        let y_max = series
            .iter()
            .flat_map(|s| s.points.iter().map(value))
            .fold(0.0, f64::max)
            .max(1e-9)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(*caption, (FONT, 20))
            .margin(14)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (x_lo..x_hi).log_scale().with_key_points(lengths.clone()),
                0.0..y_max,
            )
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("prompt length (tokens, log scale)")
            .y_desc(unit)
            .label_style((FONT, 14))
            .x_labels(6)
            .light_line_style(WHITE)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| trim_number(*y))
            .draw()
            .map_err(&err)?;
        for (k, s) in series.iter().enumerate() {
            let color = SERIES_COLORS[k % SERIES_COLORS.len()];
            let mut points: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|p| (p.prompt_tokens as f64, value(p)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))
                .map_err(&err)?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 24, y)], color.stroke_width(3))
                });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 5, color.filled())))
                .map_err(&err)?;
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FONT, 14))
                .draw()
                .map_err(&err)?;
        }
    }
    root.present().map_err(&err)?;
    Ok(())
}

/// Draws every chart the results support into `dir`: prompt-length sweeps as speed and memory
/// charts (one series per file), prompt tables as the notebook's three panels (one PNG per file).
pub fn chart_results(files: &[ResultsFile], dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow!("cannot create chart directory {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    let sweeps: Vec<SweepSeries> = files
        .iter()
        .filter(|f| f.kind == ResultKind::PromptLengthSweep)
        .map(|f| SweepSeries {
            name: f.run.label.clone(),
            points: f
                .measurements
                .iter()
                .map(|m| SweepPoint {
                    prompt_tokens: m.prompt_tokens,
                    prompt_tps: m.prefill_tps,
                    gen_tps: m.decode_tps,
                    peak_memory_bytes: m.peak_memory_bytes,
                })
                .collect(),
        })
        .collect();
    if !sweeps.is_empty() {
        let what = describe(
            files
                .iter()
                .filter(|f| f.kind == ResultKind::PromptLengthSweep),
        );
        let speed = dir.join("speed_vs_prompt_length.png");
        speed_vs_prompt_length(
            &speed,
            &format!("Prompt vs generation speed — {what}"),
            &sweeps,
        )?;
        let memory = dir.join("memory_vs_prompt_length.png");
        memory_vs_prompt_length(&memory, &format!("Peak memory — {what}"), &sweeps)?;
        written.extend([speed, memory]);
    }
    for f in files
        .iter()
        .filter(|f| matches!(f.kind, ResultKind::PromptTable | ResultKind::TaskBench))
    {
        let bars: Vec<ThroughputBar> = f
            .measurements
            .iter()
            .map(|m| ThroughputBar {
                label: m.label.clone(),
                has_image: m.has_image,
                gen_tps: m.decode_tps,
                prompt_tps: m.prefill_tps,
                total_s: m.total_s,
            })
            .collect();
        let slug: String = f
            .run
            .label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = dir.join(format!("throughput_{slug}.png"));
        let title = format!(
            "{} — {} ({}) — blue: text only, red: with image",
            f.run.model, f.run.device, f.run.dtype
        );
        throughput_panels(&path, &title, &bars)?;
        written.push(path);
    }
    let tables: Vec<&ResultsFile> = files
        .iter()
        .filter(|f| f.kind == ResultKind::PromptTable)
        .collect();
    if tables.len() >= 2 {
        let path = dir.join("side_by_side.png");
        side_by_side(&path, &tables)?;
        written.push(path);
    }
    anyhow::ensure!(
        !written.is_empty(),
        "the results files hold nothing to chart"
    );
    Ok(written)
}

/// [`programs_side_by_side`] of several prompt tables (one per program, the first the baseline):
/// each test's prefill rate where it has one, and its decode rate.
fn side_by_side(path: &Path, tables: &[&ResultsFile]) -> Result<()> {
    let programs: Vec<String> = tables.iter().map(|f| f.run.label.clone()).collect();
    let mut tests: Vec<&str> = Vec::new();
    for m in tables.iter().flat_map(|f| &f.measurements) {
        if !tests.contains(&m.label.as_str()) {
            tests.push(&m.label);
        }
    }
    let bars = |value: fn(&crate::bench::results::Measurement) -> f64| -> Vec<ProgramBar> {
        tests
            .iter()
            .flat_map(|t| {
                tables.iter().filter_map(move |f| {
                    let m = f.measurements.iter().find(|m| m.label == *t)?;
                    (value(m) > 0.0).then(|| ProgramBar {
                        program: f.run.label.clone(),
                        test: t.to_string(),
                        value: value(m),
                    })
                })
            })
            .collect()
    };
    let title = format!(
        "{} — tokens/s, ratios to {}",
        describe(tables.iter().copied()),
        programs[0]
    );
    programs_side_by_side(
        path,
        &title,
        &programs,
        &bars(|m| m.prefill_tps),
        &bars(|m| m.decode_tps),
    )
}

/// "model (dtype) on device" for the files, each part listed once: several long device names
/// would not fit in a title, so devices are named only when there is one.
fn describe<'a>(files: impl Iterator<Item = &'a ResultsFile>) -> String {
    let files: Vec<&ResultsFile> = files.collect();
    let distinct = |f: fn(&ResultsFile) -> &str| {
        let mut seen: Vec<&str> = Vec::new();
        for file in &files {
            if !seen.contains(&f(file)) {
                seen.push(f(file));
            }
        }
        seen
    };
    let (models, dtypes, devices) = (
        distinct(|f| &f.run.model),
        distinct(|f| &f.run.dtype),
        distinct(|f| &f.run.device),
    );
    let mut text = format!("{} ({})", models.join(", "), dtypes.join(", "));
    if let [device] = devices.as_slice() {
        text.push_str(&format!(" on {device}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_named_short_unless_two_would_read_the_same() {
        let programs = [
            "llama.cpp (node-llama-cpp 3.22.1, haswell)",
            "vlmbench",
            "vlmbench (int8 activations)",
            "mlx-vlm (float32)",
        ]
        .map(String::from);
        assert_eq!(
            short_names(&programs),
            [
                "llama.cpp",
                "vlmbench",
                "vlmbench (int8 activations)",
                "mlx-vlm"
            ]
        );
    }

    /// Distinct colours in a PNG: a blank or failed chart has one or two.
    fn colours(path: &Path) -> usize {
        let img = image::open(path).unwrap().to_rgb8();
        let mut seen = std::collections::HashSet::new();
        for p in img.pixels() {
            seen.insert(p.0);
        }
        seen.len()
    }

    fn bars() -> Vec<ThroughputBar> {
        vec![
            ThroughputBar {
                label: "Short text".into(),
                has_image: false,
                gen_tps: 18.8,
                prompt_tps: 38.2,
                total_s: 1.3,
            },
            ThroughputBar {
                label: "Image + short".into(),
                has_image: true,
                gen_tps: 17.3,
                prompt_tps: 74.4,
                total_s: 6.4,
            },
        ]
    }

    #[test]
    fn throughput_panels_draw_both_bar_colours_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("panels.png");
        throughput_panels(&path, "test", &bars()).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (1500, 240));
        let has = |c: RGBColor| {
            img.pixels()
                .any(|p| p.0 == [c.0, c.1, c.2] || close(p.0, c))
        };
        assert!(
            has(TEXT_COLOR) && has(IMAGE_COLOR),
            "both bar colours drawn"
        );
        assert!(colours(&path) > 20, "anti-aliased text and axes present");
    }

    fn close(p: [u8; 3], c: RGBColor) -> bool {
        // Bars are drawn at 85% opacity over white.
        let blend = |a: u8| (a as f64 * 0.85 + 255.0 * 0.15).round() as i32;
        (p[0] as i32 - blend(c.0)).abs() <= 2
            && (p[1] as i32 - blend(c.1)).abs() <= 2
            && (p[2] as i32 - blend(c.2)).abs() <= 2
    }

    #[test]
    fn prompt_tables_of_several_programs_get_one_side_by_side_chart_in_their_colours() {
        let dir = tempfile::tempdir().unwrap();
        let table = |label: &str, pp: f64, tg: f64| {
            let mut f = crate::bench::results::tests::sample();
            f.kind = ResultKind::PromptTable;
            f.run.label = label.into();
            let m = |label: &str, prefill_tps: f64, decode_tps: f64| {
                crate::bench::results::Measurement {
                    label: label.into(),
                    has_image: false,
                    prompt_tokens: 64,
                    gen_tokens: 32,
                    prefill_tps,
                    decode_tps,
                    time_to_first_token_s: 0.0,
                    vision_encode_s: 0.0,
                    total_s: 1.0,
                    peak_memory_bytes: 0,
                    reference_prompt_tps: 0.0,
                    reference_generation_tps: 0.0,
                    stream_first_token_s: None,
                    stream_avg_token_s: None,
                    answer: None,
                }
            };
            f.measurements = vec![m("pp64", pp, 0.0), m("tg32", 0.0, tg)];
            f
        };
        let files = [
            table("llama.cpp (node-llama-cpp)", 380.0, 49.0),
            table("vlmbench", 391.0, 54.0),
        ];
        let written = chart_results(&files, dir.path()).unwrap();
        let path = dir.path().join("side_by_side.png");
        assert!(written.contains(&path), "{written:?}");
        let img = image::open(&path).unwrap().to_rgb8();
        for c in &SERIES_COLORS[..2] {
            assert!(
                img.pixels().any(|p| close(p.0, *c)),
                "no bar in {c:?}: one program is missing"
            );
        }
        // One program alone has nothing to stand beside.
        let alone = tempfile::tempdir().unwrap();
        chart_results(&files[..1], alone.path()).unwrap();
        assert!(!alone.path().join("side_by_side.png").exists());
    }

    #[test]
    fn sweep_charts_render_several_series() {
        let dir = tempfile::tempdir().unwrap();
        let point = |n: usize, f: f64| SweepPoint {
            prompt_tokens: n,
            prompt_tps: 100.0 * f,
            gen_tps: 20.0 * f,
            peak_memory_bytes: (n as u64) << 20,
        };
        let series = vec![
            SweepSeries {
                name: "vlmbench".into(),
                points: vec![point(64, 1.0), point(256, 1.1), point(1024, 0.9)],
            },
            SweepSeries {
                name: "mlx-vlm".into(),
                points: vec![point(64, 0.8), point(256, 0.9), point(1024, 0.7)],
            },
        ];
        let speed = dir.path().join("speed.png");
        let memory = dir.path().join("memory.png");
        speed_vs_prompt_length(&speed, "sweep", &series).unwrap();
        memory_vs_prompt_length(&memory, "sweep", &series).unwrap();
        assert_eq!(image::open(&speed).unwrap().width(), 1400);
        assert!(colours(&speed) > 20 && colours(&memory) > 20);
    }

    #[test]
    fn empty_input_is_an_error_not_a_blank_chart() {
        let dir = tempfile::tempdir().unwrap();
        assert!(throughput_panels(&dir.path().join("a.png"), "t", &[]).is_err());
        let empty = [SweepSeries {
            name: "x".into(),
            points: vec![],
        }];
        assert!(speed_vs_prompt_length(&dir.path().join("b.png"), "t", &empty).is_err());
        assert!(!dir.path().join("a.png").exists());
    }
}
