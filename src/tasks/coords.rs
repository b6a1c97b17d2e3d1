//! Every coordinate convention the tasks meet, and the only place they are converted.
//!
//! - Gemma's `box_2d`: `[y_min, x_min, y_max, x_max]`, integers in 0..=1000 relative to the image.
//! - Gemma's polygons and points: `[x, y]` pairs in 0..=1000 (the notebook's segmentation prompt).
//! - Pixel boxes `xyxy` (what metrics and overlays use), in the image's pixel grid.
//! - Normalized boxes and points in 0..=1 (Moondream's `x_min`/`y_min`/`x_max`/`y_max`, `x`/`y`).
//! - COCO boxes `[x, y, width, height]` in pixels (the dataset's native form).
//!
//! Conversions from model space clip to the image, exactly as the notebook's
//! `np.clip(v / 1000 * size, 0, size)`; they never reorder an inverted box (the notebook drops those
//! as degenerate, and so do we, see [`PixelBox::is_degenerate`]).

use serde::{Deserialize, Serialize};

/// The side of Gemma's normalized coordinate square.
pub const GEMMA_SCALE: f64 = 1000.0;

/// An image's size in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
}

impl ImageSize {
    pub fn new(width: u32, height: u32) -> Self {
        Self { width, height }
    }
    fn w(self) -> f64 {
        f64::from(self.width)
    }
    fn h(self) -> f64 {
        f64::from(self.height)
    }
}

/// Gemma's `box_2d` as the model writes it: `[y_min, x_min, y_max, x_max]` in 0..=1000.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GemmaBox {
    pub y_min: f64,
    pub x_min: f64,
    pub y_max: f64,
    pub x_max: f64,
}

impl GemmaBox {
    /// From the four numbers in the order the model writes them.
    pub fn from_box_2d([y_min, x_min, y_max, x_max]: [f64; 4]) -> Self {
        Self {
            y_min,
            x_min,
            y_max,
            x_max,
        }
    }

    pub fn to_box_2d(self) -> [f64; 4] {
        [self.y_min, self.x_min, self.y_max, self.x_max]
    }

    /// Pixel box in `size`, each coordinate clipped to the image (the notebook's conversion).
    pub fn to_pixels(self, size: ImageSize) -> PixelBox {
        PixelBox {
            x_min: from_gemma(self.x_min, size.w()),
            y_min: from_gemma(self.y_min, size.h()),
            x_max: from_gemma(self.x_max, size.w()),
            y_max: from_gemma(self.y_max, size.h()),
        }
    }
}

/// A box in pixels, corners `(x_min, y_min)` and `(x_max, y_max)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PixelBox {
    pub x_min: f64,
    pub y_min: f64,
    pub x_max: f64,
    pub y_max: f64,
}

impl PixelBox {
    pub fn from_xyxy([x_min, y_min, x_max, y_max]: [f64; 4]) -> Self {
        Self {
            x_min,
            y_min,
            x_max,
            y_max,
        }
    }

    pub fn xyxy(self) -> [f64; 4] {
        [self.x_min, self.y_min, self.x_max, self.y_max]
    }

    /// From COCO's `[x, y, width, height]`.
    pub fn from_coco_xywh([x, y, width, height]: [f64; 4]) -> Self {
        Self {
            x_min: x,
            y_min: y,
            x_max: x + width,
            y_max: y + height,
        }
    }

    /// COCO's `[x, y, width, height]`.
    pub fn to_coco_xywh(self) -> [f64; 4] {
        [
            self.x_min,
            self.y_min,
            self.x_max - self.x_min,
            self.y_max - self.y_min,
        ]
    }

    /// Gemma's 0..=1000 box for an image of `size` (unclipped, unrounded).
    pub fn to_gemma(self, size: ImageSize) -> GemmaBox {
        GemmaBox {
            y_min: to_gemma(self.y_min, size.h()),
            x_min: to_gemma(self.x_min, size.w()),
            y_max: to_gemma(self.y_max, size.h()),
            x_max: to_gemma(self.x_max, size.w()),
        }
    }

    /// Moondream's 0..=1 box for an image of `size`.
    pub fn to_normalized(self, size: ImageSize) -> NormBox {
        NormBox {
            x_min: self.x_min / size.w(),
            y_min: self.y_min / size.h(),
            x_max: self.x_max / size.w(),
            y_max: self.y_max / size.h(),
        }
    }

    /// Each coordinate clipped to `[0, width]` / `[0, height]`.
    pub fn clipped(self, size: ImageSize) -> Self {
        Self {
            x_min: self.x_min.clamp(0.0, size.w()),
            y_min: self.y_min.clamp(0.0, size.h()),
            x_max: self.x_max.clamp(0.0, size.w()),
            y_max: self.y_max.clamp(0.0, size.h()),
        }
    }

    pub fn width(self) -> f64 {
        (self.x_max - self.x_min).max(0.0)
    }

    pub fn height(self) -> f64 {
        (self.y_max - self.y_min).max(0.0)
    }

    /// Area, zero for an inverted box (the notebook's `max(0, x2 - x1) * max(0, y2 - y1)`).
    pub fn area(self) -> f64 {
        self.width() * self.height()
    }

    /// At most one pixel wide or high, or inverted: the notebook drops such predictions
    /// (`x2 <= x1 + 1 or y2 <= y1 + 1`).
    pub fn is_degenerate(self) -> bool {
        self.x_max <= self.x_min + 1.0 || self.y_max <= self.y_min + 1.0
    }

    /// Intersection over union, as supervision's `box_iou_batch` (0 when the union is empty).
    pub fn iou(self, other: PixelBox) -> f64 {
        let ix = (self.x_max.min(other.x_max) - self.x_min.max(other.x_min)).max(0.0);
        let iy = (self.y_max.min(other.y_max) - self.y_min.max(other.y_min)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }
}

/// A box in 0..=1 relative coordinates (Moondream's `objects` entries).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormBox {
    pub x_min: f64,
    pub y_min: f64,
    pub x_max: f64,
    pub y_max: f64,
}

impl NormBox {
    pub fn to_pixels(self, size: ImageSize) -> PixelBox {
        PixelBox {
            x_min: self.x_min * size.w(),
            y_min: self.y_min * size.h(),
            x_max: self.x_max * size.w(),
            y_max: self.y_max * size.h(),
        }
    }
}

/// A point in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PixelPoint {
    pub x: f64,
    pub y: f64,
}

impl PixelPoint {
    pub fn to_normalized(self, size: ImageSize) -> NormPoint {
        NormPoint {
            x: self.x / size.w(),
            y: self.y / size.h(),
        }
    }
}

/// A point in 0..=1 relative coordinates (Moondream's `points` entries).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormPoint {
    pub x: f64,
    pub y: f64,
}

impl NormPoint {
    pub fn to_pixels(self, size: ImageSize) -> PixelPoint {
        PixelPoint {
            x: self.x * size.w(),
            y: self.y * size.h(),
        }
    }
}

/// A point as Gemma writes it in polygons and point lists: `[x, y]` in 0..=1000.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GemmaPoint {
    pub x: f64,
    pub y: f64,
}

impl GemmaPoint {
    /// Pixel point in `size`, clipped to the image.
    pub fn to_pixels(self, size: ImageSize) -> PixelPoint {
        PixelPoint {
            x: from_gemma(self.x, size.w()),
            y: from_gemma(self.y, size.h()),
        }
    }
}

impl PixelPoint {
    pub fn to_gemma(self, size: ImageSize) -> GemmaPoint {
        GemmaPoint {
            x: to_gemma(self.x, size.w()),
            y: to_gemma(self.y, size.h()),
        }
    }
}

fn from_gemma(value: f64, side: f64) -> f64 {
    (value / GEMMA_SCALE * side).clamp(0.0, side)
}

fn to_gemma(value: f64, side: f64) -> f64 {
    value / side * GEMMA_SCALE
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SIZE: ImageSize = ImageSize {
        width: 640,
        height: 480,
    };

    #[test]
    fn gemma_box_is_y_first_and_scaled_per_axis() {
        let px = GemmaBox::from_box_2d([100.0, 250.0, 500.0, 750.0]).to_pixels(SIZE);
        assert_eq!(px.xyxy(), [160.0, 48.0, 480.0, 240.0]);
    }

    #[test]
    fn gemma_box_outside_the_square_is_clipped_to_the_image() {
        let px = GemmaBox::from_box_2d([-20.0, 990.0, 1200.0, 1010.0]).to_pixels(SIZE);
        assert_eq!(px.xyxy(), [633.6, 0.0, 640.0, 480.0]);
    }

    #[test]
    fn inverted_and_thin_boxes_are_degenerate() {
        assert!(PixelBox::from_xyxy([10.0, 10.0, 5.0, 50.0]).is_degenerate());
        assert!(PixelBox::from_xyxy([10.0, 10.0, 11.0, 50.0]).is_degenerate());
        assert!(!PixelBox::from_xyxy([10.0, 10.0, 11.5, 50.0]).is_degenerate());
        assert_eq!(PixelBox::from_xyxy([10.0, 10.0, 5.0, 50.0]).area(), 0.0);
    }

    #[test]
    fn coco_xywh_becomes_corners() {
        let b = PixelBox::from_coco_xywh([10.0, 20.0, 30.0, 40.0]);
        assert_eq!(b.xyxy(), [10.0, 20.0, 40.0, 60.0]);
        assert_eq!(b.area(), 1200.0);
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = PixelBox::from_xyxy([0.0, 0.0, 10.0, 10.0]);
        let b = PixelBox::from_xyxy([5.0, 0.0, 15.0, 10.0]);
        assert!((a.iou(b) - 50.0 / 150.0).abs() < 1e-12);
        assert_eq!(a.iou(a), 1.0);
        assert_eq!(a.iou(PixelBox::from_xyxy([20.0, 20.0, 30.0, 30.0])), 0.0);
        let empty = PixelBox::from_xyxy([3.0, 3.0, 3.0, 3.0]);
        assert_eq!(empty.iou(empty), 0.0);
    }

    fn size() -> impl Strategy<Value = ImageSize> {
        (1u32..8000, 1u32..8000).prop_map(|(w, h)| ImageSize::new(w, h))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    proptest! {
        #[test]
        fn gemma_pixel_round_trip_inside_the_image(size in size(), c in prop::array::uniform4(0.0f64..=1000.0)) {
            let g = GemmaBox::from_box_2d(c);
            let back = g.to_pixels(size).to_gemma(size).to_box_2d();
            for (a, b) in c.iter().zip(back) {
                prop_assert!(close(*a, b), "{c:?} -> {back:?}");
            }
        }

        #[test]
        fn pixel_boxes_from_gemma_always_lie_in_the_image(size in size(), c in prop::array::uniform4(-5000.0f64..5000.0)) {
            let px = GemmaBox::from_box_2d(c).to_pixels(size);
            prop_assert_eq!(px, px.clipped(size));
        }

        #[test]
        fn normalized_pixel_round_trip(size in size(), c in prop::array::uniform4(0.0f64..=1.0)) {
            let n = NormBox { x_min: c[0], y_min: c[1], x_max: c[2], y_max: c[3] };
            let back = n.to_pixels(size).to_normalized(size);
            for (a, b) in [n.x_min, n.y_min, n.x_max, n.y_max].iter().zip([back.x_min, back.y_min, back.x_max, back.y_max]) {
                prop_assert!(close(*a, b));
            }
        }

        #[test]
        fn coco_round_trip(c in prop::array::uniform4(0.0f64..5000.0)) {
            let back = PixelBox::from_coco_xywh(c).to_coco_xywh();
            for (a, b) in c.iter().zip(back) {
                prop_assert!(close(*a, b));
            }
        }

        #[test]
        fn points_round_trip(size in size(), x in 0.0f64..=1000.0, y in 0.0f64..=1000.0) {
            let back = GemmaPoint { x, y }.to_pixels(size).to_gemma(size);
            prop_assert!(close(x, back.x) && close(y, back.y));
            let n = GemmaPoint { x, y }.to_pixels(size).to_normalized(size);
            prop_assert!(close(n.x, x / 1000.0) && close(n.y, y / 1000.0));
            let p = n.to_pixels(size);
            prop_assert!(close(p.x, x / 1000.0 * f64::from(size.width)));
        }

        #[test]
        fn iou_is_symmetric_and_bounded(a in prop::array::uniform4(0.0f64..100.0), b in prop::array::uniform4(0.0f64..100.0)) {
            let (a, b) = (PixelBox::from_xyxy(a), PixelBox::from_xyxy(b));
            let (ab, ba) = (a.iou(b), b.iou(a));
            prop_assert!(close(ab, ba));
            prop_assert!((0.0..=1.0).contains(&ab));
        }
    }
}
