//! Fuzzes the answer parser with arbitrary model output: it must never panic, and what it returns
//! must keep its promises (pixel boxes inside the image, IoU in [0, 1], polygons of 3+ points).
//!
//! Run: `cargo +nightly fuzz run answer_parser fuzz/seeds -- -runs=N` from the repository root
//! (docs/fuzzing.md records the runs made).
#![no_main]

use libfuzzer_sys::fuzz_target;

// The parser's own source files, compiled here without the rest of vlmbench: the main crate links
// MLX, which sanitizer builds do not need and would make slow.
#[path = "../../src/tasks"]
mod tasks {
    pub mod answer;
    pub mod coords;
    pub mod json_fragment;
    pub mod labels;
}

use tasks::answer::{parse_boxes, parse_points, parse_polygon};
use tasks::coords::{ImageSize, PixelBox};
use tasks::json_fragment::{find_json, notebook_parse, JsonKind};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let size = ImageSize::new(1 + (data.len() as u32 * 7919) % 4096, 1 + (data.len() as u32 * 104729) % 4096);
    let _ = notebook_parse(&text, JsonKind::Array);
    let _ = notebook_parse(&text, JsonKind::Object);
    if let Ok(found) = find_json(&text) {
        assert!(found.value.is_array() || found.value.is_object());
    }
    if let Ok(parsed) = parse_boxes(&text) {
        for item in &parsed.items {
            let px = item.box_2d.to_pixels(size);
            assert_eq!(px, px.clipped(size), "pixel boxes lie in the image");
            let whole = PixelBox::from_xyxy([0.0, 0.0, f64::from(size.width), f64::from(size.height)]);
            let iou = px.iou(whole);
            assert!((0.0..=1.0).contains(&iou), "iou {iou}");
            let _ = px.is_degenerate();
        }
    }
    if let Ok(parsed) = parse_points(&text) {
        for item in &parsed.items {
            let p = item.point.to_pixels(size);
            assert!(p.x >= 0.0 && p.x <= f64::from(size.width) && p.y >= 0.0 && p.y <= f64::from(size.height));
        }
    }
    if let Ok(polygon) = parse_polygon(&text) {
        assert!(polygon.points.len() >= 3);
    }
    let _ = tasks::labels::normalize_label(&text);
});
