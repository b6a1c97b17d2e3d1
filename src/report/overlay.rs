//! Drawing results on images: labelled boxes (the notebook's status colors for evaluations),
//! filled translucent polygons and point markers, saved as PNG.
//!
//! Sizes follow the image: line width and label text grow with its shorter side, so a label is
//! readable on a 320-px thumbnail and on a 4000-px photo alike.

use std::path::Path;

use ab_glyph::{FontRef, PxScale};
use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use imageproc::drawing::{
    draw_filled_circle_mut, draw_filled_rect_mut, draw_hollow_rect_mut, draw_polygon_mut,
    draw_text_mut, text_size,
};
use imageproc::point::Point;
use imageproc::rect::Rect;

use super::FONT_BYTES;
use crate::tasks::coords::PixelBox;

/// The notebook's `STATUS_COLORS`.
pub const TP_GREEN: Rgb<u8> = Rgb([22, 163, 74]);
pub const NEAR_AMBER: Rgb<u8> = Rgb([245, 158, 11]);
pub const CLASS_PURPLE: Rgb<u8> = Rgb([168, 85, 247]);
pub const FP_RED: Rgb<u8> = Rgb([220, 38, 38]);
/// The notebook's polygon fill (matplotlib `red` at alpha 0.35).
pub const POLYGON_RED: Rgb<u8> = Rgb([255, 0, 0]);

/// Distinct colors for class-colored boxes (ground truth, plain detections).
const PALETTE: [Rgb<u8>; 8] = [
    Rgb([37, 99, 235]),
    Rgb([234, 88, 12]),
    Rgb([5, 150, 105]),
    Rgb([219, 39, 119]),
    Rgb([202, 138, 4]),
    Rgb([8, 145, 178]),
    Rgb([124, 58, 237]),
    Rgb([101, 163, 13]),
];

/// The palette color for `label`: the same label always gets the same color.
pub fn class_color(label: &str) -> Rgb<u8> {
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let hash = label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    PALETTE[(hash % PALETTE.len() as u64) as usize]
}

/// A box to draw with its caption.
#[derive(Clone, Debug)]
pub struct LabeledBox {
    pub pixels: PixelBox,
    pub label: String,
    pub color: Rgb<u8>,
}

/// An image being annotated.
pub struct Overlay {
    image: RgbImage,
    font: FontRef<'static>,
}

impl Overlay {
    /// Starts from a copy of `width` x `height` RGB bytes.
    pub fn new(width: u32, height: u32, rgb: Vec<u8>) -> Result<Self> {
        let image = RgbImage::from_raw(width, height, rgb)
            .context("overlay: pixel buffer does not match the size")?;
        let font = FontRef::try_from_slice(FONT_BYTES)
            .context("overlay: the embedded font is unreadable")?;
        Ok(Self { image, font })
    }

    /// Starts from one of the models' decoded images.
    pub fn from_image(image: &vlm_models::image_io::RgbImage) -> Result<Self> {
        Self::new(image.width(), image.height(), image.as_bytes().to_vec())
    }

    pub fn image(&self) -> &RgbImage {
        &self.image
    }

    fn line_width(&self) -> i32 {
        (self.image.width().min(self.image.height()) / 250).clamp(2, 8) as i32
    }

    fn text_scale(&self) -> PxScale {
        PxScale::from((self.image.width().min(self.image.height()) as f32 / 32.0).clamp(11.0, 48.0))
    }

    /// Box outlines with a filled caption tab above each (inside the box when there is no room).
    pub fn boxes(&mut self, boxes: &[LabeledBox]) -> &mut Self {
        let width = self.line_width();
        for b in boxes {
            let (x0, y0) = (b.pixels.x_min.round() as i32, b.pixels.y_min.round() as i32);
            let (x1, y1) = (b.pixels.x_max.round() as i32, b.pixels.y_max.round() as i32);
            for inset in 0..width {
                let (w, h) = (x1 - x0 - 2 * inset, y1 - y0 - 2 * inset);
                if w > 0 && h > 0 {
                    draw_hollow_rect_mut(
                        &mut self.image,
                        Rect::at(x0 + inset, y0 + inset).of_size(w as u32, h as u32),
                        b.color,
                    );
                }
            }
            if !b.label.is_empty() {
                self.caption(x0, y0, &b.label, b.color);
            }
        }
        self
    }

    /// White text on a tab of `color` whose bottom-left corner sits at (`x`, `y`).
    fn caption(&mut self, x: i32, y: i32, text: &str, color: Rgb<u8>) {
        let scale = self.text_scale();
        let (tw, th) = text_size(scale, &self.font, text);
        let pad = (th / 4).max(2) as i32;
        let (tab_w, tab_h) = (tw as i32 + 2 * pad, th as i32 + 2 * pad);
        let top = if y - tab_h >= 0 { y - tab_h } else { y };
        let left = x.clamp(0, (self.image.width() as i32 - tab_w).max(0));
        draw_filled_rect_mut(
            &mut self.image,
            Rect::at(left, top).of_size(tab_w as u32, tab_h as u32),
            color,
        );
        draw_text_mut(
            &mut self.image,
            Rgb([255, 255, 255]),
            left + pad,
            top + pad,
            scale,
            &self.font,
            text,
        );
    }

    /// A caption across the bottom-left corner (e.g. why nothing could be drawn).
    pub fn footer(&mut self, text: &str, color: Rgb<u8>) -> &mut Self {
        let (_, th) = text_size(self.text_scale(), &self.font, text);
        let bottom = self.image.height() as i32;
        self.caption(
            0,
            bottom - (th as i32 / 4).max(2) * 2 - th as i32,
            text,
            color,
        );
        self
    }

    /// A polygon filled with `color` at `alpha` (0..=1) and outlined in `color`, as the notebook's
    /// matplotlib patch. Repeated and closing vertices are dropped; fewer than 3 distinct ones draw nothing.
    pub fn polygon(&mut self, pixel_points: &[[f64; 2]], color: Rgb<u8>, alpha: f32) -> &mut Self {
        let mut vertices: Vec<Point<i32>> = Vec::with_capacity(pixel_points.len());
        for [x, y] in pixel_points {
            let p = Point::new(x.round() as i32, y.round() as i32);
            if vertices.last() != Some(&p) {
                vertices.push(p);
            }
        }
        while vertices.len() > 1 && vertices.first() == vertices.last() {
            vertices.pop();
        }
        if vertices.len() < 3 {
            return self;
        }
        // Fill a mask, then blend: imageproc draws opaque polygons only.
        let mut mask = image::GrayImage::new(self.image.width(), self.image.height());
        draw_polygon_mut(&mut mask, &vertices, image::Luma([255]));
        for (pixel, m) in self.image.pixels_mut().zip(mask.pixels()) {
            if m.0[0] != 0 {
                for (c, target) in pixel.0.iter_mut().zip(color.0) {
                    *c = (f32::from(*c) * (1.0 - alpha) + f32::from(target) * alpha).round() as u8;
                }
            }
        }
        let width = self.line_width() as f32;
        for (a, b) in vertices.iter().zip(vertices.iter().cycle().skip(1)) {
            draw_thick_line(
                &mut self.image,
                (a.x as f32, a.y as f32),
                (b.x as f32, b.y as f32),
                width,
                color,
            );
        }
        self
    }

    /// A marker for each point: a filled dot of `color` ringed in white, with its label.
    pub fn points(
        &mut self,
        pixel_points: &[[f64; 2]],
        labels: &[String],
        color: Rgb<u8>,
    ) -> &mut Self {
        let radius = self.line_width() * 3;
        for (i, [x, y]) in pixel_points.iter().enumerate() {
            let center = (x.round() as i32, y.round() as i32);
            draw_filled_circle_mut(&mut self.image, center, radius + 2, Rgb([255, 255, 255]));
            draw_filled_circle_mut(&mut self.image, center, radius, color);
            if let Some(label) = labels.get(i).filter(|l| !l.is_empty()) {
                self.caption(center.0 + radius, center.1 - radius, label, color);
            }
        }
        self
    }

    /// Writes the image as PNG.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        self.image
            .save_with_format(path, image::ImageFormat::Png)
            .with_context(|| format!("cannot write overlay {}", path.display()))
    }
}

/// A line `width` pixels wide: dots along it (imageproc's lines are one pixel).
fn draw_thick_line(
    image: &mut RgbImage,
    from: (f32, f32),
    to: (f32, f32),
    width: f32,
    color: Rgb<u8>,
) {
    let steps = (to.0 - from.0)
        .abs()
        .max((to.1 - from.1).abs())
        .ceil()
        .max(1.0) as i32;
    let radius = (width / 2.0).round().max(1.0) as i32;
    for s in 0..=steps {
        let t = s as f32 / steps as f32;
        let (x, y) = (from.0 + (to.0 - from.0) * t, from.1 + (to.1 - from.1) * t);
        draw_filled_circle_mut(image, (x.round() as i32, y.round() as i32), radius, color);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(w: u32, h: u32) -> Overlay {
        Overlay::new(w, h, vec![128; (w * h * 3) as usize]).unwrap()
    }

    #[test]
    fn a_box_outline_has_the_color_and_its_inside_is_untouched() {
        let mut o = gray(200, 200);
        let b = LabeledBox {
            pixels: PixelBox::from_xyxy([50.0, 60.0, 150.0, 160.0]),
            label: String::new(),
            color: TP_GREEN,
        };
        o.boxes(&[b]);
        assert_eq!(*o.image().get_pixel(50, 100), TP_GREEN);
        assert_eq!(*o.image().get_pixel(149, 100), TP_GREEN);
        assert_eq!(*o.image().get_pixel(100, 110), Rgb([128, 128, 128]));
    }

    #[test]
    fn a_label_tab_is_drawn_above_the_box_with_white_text() {
        let mut o = gray(300, 300);
        let b = LabeledBox {
            pixels: PixelBox::from_xyxy([50.0, 100.0, 250.0, 250.0]),
            label: "person (TP 0.81)".into(),
            color: FP_RED,
        };
        o.boxes(&[b]);
        let tab = (0..100).flat_map(|y| (50..250).map(move |x| (x, y)));
        let (mut red, mut white) = (0, 0);
        for (x, y) in tab {
            match *o.image().get_pixel(x, y) {
                FP_RED => red += 1,
                // Glyphs are antialiased: count near-white pixels.
                Rgb([r, g, b]) if r > 200 && g > 200 && b > 200 => white += 1,
                _ => {}
            }
        }
        assert!(red > 500 && white > 20, "red {red}, white {white}");
    }

    #[test]
    fn a_polygon_is_filled_translucently_and_closing_duplicates_do_not_matter() {
        let mut o = gray(100, 100);
        let square = [
            [20.0, 20.0],
            [80.0, 20.0],
            [80.0, 80.0],
            [20.0, 80.0],
            [20.0, 20.0],
        ];
        o.polygon(&square, POLYGON_RED, 0.35);
        // 128 * 0.65 + 255 * 0.35 = 172.45; 128 * 0.65 = 83.2
        assert_eq!(*o.image().get_pixel(50, 50), Rgb([172, 83, 83]));
        assert_eq!(*o.image().get_pixel(5, 5), Rgb([128, 128, 128]));
        assert_eq!(*o.image().get_pixel(20, 50), POLYGON_RED);
    }

    #[test]
    fn degenerate_polygons_draw_nothing() {
        let mut o = gray(50, 50);
        o.polygon(&[[1.0, 1.0], [1.0, 1.0], [30.0, 30.0]], POLYGON_RED, 0.5);
        assert!(o.image().pixels().all(|p| *p == Rgb([128, 128, 128])));
    }

    #[test]
    fn boxes_and_points_outside_the_image_do_not_panic() {
        let mut o = gray(40, 30);
        let b = LabeledBox {
            pixels: PixelBox::from_xyxy([-50.0, -50.0, 500.0, 500.0]),
            label: "big".into(),
            color: NEAR_AMBER,
        };
        o.boxes(&[b]).points(
            &[[-10.0, 900.0], [20.0, 15.0]],
            &["far".into(), "in".into()],
            CLASS_PURPLE,
        );
        assert_eq!(*o.image().get_pixel(20, 15), CLASS_PURPLE);
    }

    #[test]
    fn class_colors_are_stable_per_label() {
        assert_eq!(class_color("person"), class_color("person"));
        let distinct: std::collections::HashSet<_> = ["person", "dog", "car", "cup", "tv"]
            .iter()
            .map(|l| class_color(l).0)
            .collect();
        assert!(distinct.len() >= 3);
    }
}
