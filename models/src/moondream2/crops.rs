//! Moondream2's image preprocessing and crop stitching (reference `image_crops.py`,
//! `vision.py::prepare_crops` / `vision_projection`), on host memory:
//!
//! * the tiling choice for overlapping local crops (`select_tiling`),
//! * one global crop (the whole image squeezed to 378x378) plus `t_h x t_w` local 378x378 crops
//!   cut from the image resized to `t*266 + 112` per side, both resized with Pillow's LANCZOS
//!   (the reference's path when pyvips is not installed, as in a stock install),
//! * the bf16 normalisation `((x / 255) - 0.5) / 0.5` with a rounding after each step,
//! * stitching the local encoder outputs with their overlap margin dropped on interior edges,
//! * PyTorch's `adaptive_avg_pool2d` bins `[floor(i*H/n), ceil((i+1)*H/n))`, summed in float32.

use half::bf16;

use crate::pil_resize::resize_lanczos;

/// Crop side in pixels and patch side, fixed by the reference.
pub const CROP: usize = 378;
pub const PATCH: usize = 14;
/// Patches per crop side.
pub const GRID: usize = CROP / PATCH;

/// `(rows, cols)` of local crops for an image of `height x width` (already minus the margins)
/// with usable crop windows of `crop_size` pixels and at most `max_crops` crops.
pub fn select_tiling(height: i64, width: i64, crop_size: i64, max_crops: i64) -> (usize, usize) {
    if height <= crop_size || width <= crop_size {
        return (1, 1);
    }
    let ceil_div = |a: i64, b: i64| (a + b - 1) / b;
    let min_h = ceil_div(height, crop_size);
    let min_w = ceil_div(width, crop_size);
    if min_h * min_w > max_crops {
        let ratio = (max_crops as f64 / (min_h * min_w) as f64).sqrt();
        let h = ((min_h as f64 * ratio).floor() as i64).max(1);
        let w = ((min_w as f64 * ratio).floor() as i64).max(1);
        return (h as usize, w as usize);
    }
    let mut h_tiles = (max_crops as f64 * height as f64 / width as f64)
        .sqrt()
        .floor() as i64;
    let mut w_tiles = (max_crops as f64 * width as f64 / height as f64)
        .sqrt()
        .floor() as i64;
    h_tiles = h_tiles.max(min_h);
    w_tiles = w_tiles.max(min_w);
    if h_tiles * w_tiles > max_crops {
        if w_tiles > h_tiles {
            w_tiles = max_crops / h_tiles;
        } else {
            h_tiles = max_crops / w_tiles;
        }
    }
    (h_tiles.max(1) as usize, w_tiles.max(1) as usize)
}

/// The crops of one image: `n` crops of `378 x 378 x 3` uint8 (HWC), global crop first, then
/// the local crops row-major.
#[derive(Debug, Clone)]
pub struct OverlapCrops {
    pub pixels: Vec<u8>,
    pub n: usize,
    pub tiling: (usize, usize),
}

impl OverlapCrops {
    /// Crop `i` as `378 * 378 * 3` bytes.
    pub fn crop(&self, i: usize) -> &[u8] {
        let sz = CROP * CROP * 3;
        &self.pixels[i * sz..(i + 1) * sz]
    }
}

/// `overlap_crop_image`: RGB pixels `width x height` (HWC, uint8) to the global and local crops.
pub fn overlap_crops(
    rgb: &[u8],
    width: usize,
    height: usize,
    overlap_margin: usize,
    max_crops: usize,
) -> OverlapCrops {
    let margin_px = PATCH * overlap_margin;
    let total_margin = 2 * margin_px;
    let window = (GRID - 2 * overlap_margin) * PATCH;
    let tiling = select_tiling(
        height as i64 - total_margin as i64,
        width as i64 - total_margin as i64,
        window as i64,
        max_crops as i64,
    );
    let n = tiling.0 * tiling.1 + 1;
    let crop_bytes = CROP * CROP * 3;
    let mut pixels = vec![0u8; n * crop_bytes];

    let target_h = tiling.0 * window + total_margin;
    let target_w = tiling.1 * window + total_margin;
    let resized = resize_lanczos(rgb, width, height, 3, target_w, target_h);
    let global = resize_lanczos(rgb, width, height, 3, CROP, CROP);
    pixels[..crop_bytes].copy_from_slice(&global);

    for i in 0..tiling.0 {
        for j in 0..tiling.1 {
            let (y0, x0) = (i * window, j * window);
            // The reference pads with zeros past the resized image; with its target size the
            // windows always fit, but the bounds are kept as it computes them.
            let y_end = (y0 + CROP).min(target_h);
            let x_end = (x0 + CROP).min(target_w);
            let dst = &mut pixels[(1 + i * tiling.1 + j) * crop_bytes..][..crop_bytes];
            for y in y0..y_end {
                let src_row = &resized[(y * target_w + x0) * 3..(y * target_w + x_end) * 3];
                dst[(y - y0) * CROP * 3..][..src_row.len()].copy_from_slice(src_row);
            }
        }
    }
    OverlapCrops { pixels, n, tiling }
}

/// `bf16(bf16(bf16(v / 255) - 0.5) / 0.5)` for every byte value: the reference converts the
/// uint8 crops to bf16 and then runs `div_(255).sub_(0.5).div_(0.5)` in place, each op computing
/// in float32 and rounding back to bf16.
pub fn normalization_table() -> [bf16; 256] {
    let mut t = [bf16::ZERO; 256];
    for (v, out) in t.iter_mut().enumerate() {
        let a = bf16::from_f32(bf16::from_f32(v as f32).to_f32() / 255.0);
        let b = bf16::from_f32(a.to_f32() - 0.5);
        *out = bf16::from_f32(b.to_f32() / 0.5);
    }
    t
}

/// PyTorch adaptive pooling bin of output `i` (of `out`) over an input of `len`:
/// `[floor(i*len/out), ceil((i+1)*len/out))`.
pub fn adaptive_bin(i: usize, out: usize, len: usize) -> (usize, usize) {
    let start = (i * len) / out;
    let end = ((i + 1) * len).div_ceil(out);
    (start, end)
}

/// `reconstruct_from_crops(patch_size=1)` then `adaptive_avg_pool2d(.., (27, 27))`.
///
/// `local` holds `t_h * t_w` encoder outputs of `27 x 27 x dim` (row-major, as bf16 values in
/// f32). Interior edges drop `margin` patches per side. Returns `27 * 27 * dim` pooled values,
/// rounded to bf16: each bin is summed row by row in float32 and divided by its height and then
/// its width, as PyTorch's CPU kernel does.
pub fn stitch_and_pool(
    local: &[f32],
    tiling: (usize, usize),
    dim: usize,
    margin: usize,
) -> Vec<bf16> {
    let (th, tw) = tiling;
    let inner = GRID - 2 * margin;
    let out_h = inner * th + 2 * margin;
    let out_w = inner * tw + 2 * margin;
    let mut grid = vec![0f32; out_h * out_w * dim];
    for t in 0..th * tw {
        let (ty, tx) = (t / tw, t % tw);
        let x_start = if tx == 0 { 0 } else { margin };
        let x_end = if tx == tw - 1 { GRID } else { GRID - margin };
        let y_start = if ty == 0 { 0 } else { margin };
        let y_end = if ty == th - 1 { GRID } else { GRID - margin };
        let (oy, ox) = (ty * inner, tx * inner);
        let crop = &local[t * GRID * GRID * dim..(t + 1) * GRID * GRID * dim];
        for y in y_start..y_end {
            let src = &crop[(y * GRID + x_start) * dim..(y * GRID + x_end) * dim];
            grid[((oy + y) * out_w + ox + x_start) * dim..][..src.len()].copy_from_slice(src);
        }
    }
    let mut pooled = Vec::with_capacity(GRID * GRID * dim);
    let mut sum = vec![0f32; dim];
    for oy in 0..GRID {
        let (y0, y1) = adaptive_bin(oy, GRID, out_h);
        for ox in 0..GRID {
            let (x0, x1) = adaptive_bin(ox, GRID, out_w);
            sum.iter_mut().for_each(|s| *s = 0.0);
            for y in y0..y1 {
                for x in x0..x1 {
                    let cell = &grid[(y * out_w + x) * dim..][..dim];
                    sum.iter_mut().zip(cell).for_each(|(s, v)| *s += v);
                }
            }
            let (kh, kw) = ((y1 - y0) as f32, (x1 - x0) as f32);
            pooled.extend(sum.iter().map(|s| bf16::from_f32(s / kh / kw)));
        }
    }
    pooled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiling_examples_from_the_spec() {
        let t = |w: i64, h: i64| select_tiling(h - 112, w - 112, 266, 12);
        assert_eq!(t(640, 480), (2, 4));
        assert_eq!(t(1024, 768), (3, 4));
        assert_eq!(t(1920, 1080), (2, 4));
        assert_eq!(t(378, 378), (1, 1));
        // Too many minimum tiles: scaled down proportionally.
        assert_eq!(t(800, 1400), (4, 2));
    }

    #[test]
    fn pooling_bins_overlap_like_pytorch() {
        // 84 -> 27: bins of 4 cells that overlap where 84/27 is not whole.
        assert_eq!(adaptive_bin(0, 27, 84), (0, 4));
        assert_eq!(adaptive_bin(1, 27, 84), (3, 7));
        assert_eq!(adaptive_bin(26, 27, 84), (80, 84));
        // Identity when the sizes agree.
        for i in 0..27 {
            assert_eq!(adaptive_bin(i, 27, 27), (i, i + 1));
        }
    }

    #[test]
    fn a_single_tile_pools_to_itself() {
        let dim = 2;
        let local: Vec<f32> = (0..GRID * GRID * dim)
            .map(|i| bf16::from_f32(i as f32 * 0.25).to_f32())
            .collect();
        let pooled = stitch_and_pool(&local, (1, 1), dim, 4);
        let back: Vec<f32> = pooled.iter().map(|v| v.to_f32()).collect();
        assert_eq!(back, local);
    }

    #[test]
    fn normalization_maps_bytes_to_minus_one_one() {
        let t = normalization_table();
        assert_eq!(t[0].to_f32(), -1.0);
        assert_eq!(t[255].to_f32(), 1.0);
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
    }
}
