//! Pillow's `Image.resize(size, Image.BICUBIC)` and `Image.resize(size, Image.LANCZOS)` on 8-bit
//! images, reproduced operation for operation (Pillow 13 `libImaging/Resample.c`) so that the
//! output bytes are identical.
//!
//! The algorithm is a separable convolution: two 1-D passes through an 8-bit intermediate image,
//! horizontal first unless the height shrinks by more than twice as many pixels as the width
//! (Pillow 13 then runs the vertical pass first; earlier Pillows always went horizontal first).
//! Per output coordinate, the filter (Keys cubic, a = -0.5, support 2; or Lanczos-3, support 3) is
//! stretched by the downscale factor (antialiasing), its weights are normalised to sum 1 in
//! double precision, and then turned into 22-bit fixed-point integers. Each output sample is
//! `clamp((2^21 + sum(sample * weight)) >> 22, 0, 255)` in 32-bit integer arithmetic. Rounding
//! the intermediate image to 8 bits is part of the result, so the pass order matters.

/// Fixed-point bits of the weights: `32 - 8 - 2` (8 bits of sample, 2 bits of headroom for
/// weight sums outside [0, 1]).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Keys' cubic convolution kernel with a = -0.5 (Pillow's `bicubic_filter`).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Pillow's `sinc_filter`.
fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

/// Pillow's `lanczos_filter`: the sinc truncated to [-3, 3) and windowed by sinc(x/3).
fn lanczos(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// A resampling filter: the kernel and its support at scale 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Bicubic,
    Lanczos,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Bicubic => bicubic(x),
            Filter::Lanczos => lanczos(x),
        }
    }
}

/// Per output index: the first input index, the number of taps, and fixed-point weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the box `[0, in_size)`.
fn coeffs(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    // Pillow holds the box edges as C floats; (float)in_size is exact for any accepted size.
    let in0 = 0.0f32;
    let in1 = in_size as f32;
    let scale = (in1 - in0) as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let inv_filterscale = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = in0 as f64 + (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero; negative values are clamped to 0 right after.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut ww = 0.0f64;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = filter.eval((x as f64 + xmin as f64 - center + 0.5) * inv_filterscale);
            *kx = w;
            ww += w;
        }
        for (x, kx) in k.iter().enumerate().take(n) {
            let w = if ww != 0.0 { kx / ww } else { *kx };
            let fixed = w * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if w < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

/// `clip8`: the accumulator's integer part (arithmetic shift, i.e. floor), clamped to a byte.
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes interleaved 8-bit pixels with `channels` samples each (`src.len() == w * h * channels`)
/// to `out_w x out_h`, exactly as Pillow's BICUBIC resize. Sizes must be non-zero.
pub fn resize_bicubic(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    resize(src, width, height, channels, out_w, out_h, Filter::Bicubic)
}

/// As [`resize_bicubic`], with Pillow's LANCZOS filter (what Moondream's PIL path uses).
pub fn resize_lanczos(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    resize(src, width, height, channels, out_w, out_h, Filter::Lanczos)
}

/// Pillow's `ImagingResample` for 8-bit images with the given filter.
pub fn resize(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
    filter: Filter,
) -> Vec<u8> {
    assert_eq!(src.len(), width * height * channels, "pixel buffer size");
    assert!(
        width > 0 && height > 0 && out_w > 0 && out_h > 0,
        "sizes must be non-zero"
    );
    let need_h = out_w != width;
    let need_v = out_h != height;
    let (w, h) = (width as i64, height as i64);
    let horizontal_first = !(h - out_h as i64 > 0 && h - out_h as i64 > (w - out_w as i64) * 2);
    let vert = coeffs(height, out_h, filter);
    let hor = coeffs(width, out_w, filter);
    if horizontal_first {
        // Only the rows the vertical pass will read go through the horizontal pass.
        let (rows, first) = if need_h {
            let first = vert.bounds[0].0;
            let (last_min, last_n) = vert.bounds[out_h - 1];
            let rows = &src[first * width * channels..(last_min + last_n) * width * channels];
            (horizontal(rows, width, channels, &hor), first)
        } else {
            (src.to_vec(), 0)
        };
        if need_v {
            vertical(&rows, out_w, channels, &vert, first)
        } else {
            rows
        }
    } else {
        let cols = if need_v {
            vertical(src, width, channels, &vert, 0)
        } else {
            src.to_vec()
        };
        if need_h {
            horizontal(&cols, width, channels, &hor)
        } else {
            cols
        }
    }
}

/// One horizontal pass over every row of `src` (`width` pixels per row).
fn horizontal(src: &[u8], width: usize, channels: usize, c: &Coeffs) -> Vec<u8> {
    let out_w = c.bounds.len();
    let rows = src.len() / (width * channels);
    let mut out = vec![0u8; rows * out_w * channels];
    for y in 0..rows {
        let line = &src[y * width * channels..(y + 1) * width * channels];
        let dst = &mut out[y * out_w * channels..(y + 1) * out_w * channels];
        for (xx, &(xmin, n)) in c.bounds.iter().enumerate() {
            let k = &c.weights[xx * c.ksize..xx * c.ksize + n];
            for ch in 0..channels {
                let mut acc = 1i32 << (PRECISION_BITS - 1);
                for (x, &w) in k.iter().enumerate() {
                    acc =
                        acc.wrapping_add((line[(x + xmin) * channels + ch] as i32).wrapping_mul(w));
                }
                dst[xx * channels + ch] = clip8(acc);
            }
        }
    }
    out
}

/// One vertical pass; `src` holds the source rows starting at source row `row_offset`.
fn vertical(src: &[u8], width: usize, channels: usize, c: &Coeffs, row_offset: usize) -> Vec<u8> {
    let stride = width * channels;
    let mut out = vec![0u8; c.bounds.len() * stride];
    for (yy, &(ymin, n)) in c.bounds.iter().enumerate() {
        let ymin = ymin - row_offset;
        let k = &c.weights[yy * c.ksize..yy * c.ksize + n];
        for i in 0..stride {
            let mut acc = 1i32 << (PRECISION_BITS - 1);
            for (y, &w) in k.iter().enumerate() {
                acc = acc.wrapping_add((src[(y + ymin) * stride + i] as i32).wrapping_mul(w));
            }
            out[yy * stride + i] = clip8(acc);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_a_copy() {
        let src: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect();
        assert_eq!(resize_bicubic(&src, 4, 3, 3, 4, 3), src);
    }

    #[test]
    fn weights_of_each_output_sum_to_one_in_fixed_point() {
        for (i, o) in [(451, 192), (300, 144), (7, 13), (1000, 3), (5, 5)] {
            let c = coeffs(i, o, Filter::Bicubic);
            for (xx, &(_, n)) in c.bounds.iter().enumerate() {
                let s: i32 = c.weights[xx * c.ksize..xx * c.ksize + n].iter().sum();
                // Rounding each weight moves the sum by at most half a unit per tap.
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= n as i32,
                    "{i}->{o} at {xx}: {s}"
                );
            }
        }
    }

    #[test]
    fn a_flat_image_stays_flat_in_both_directions() {
        let src = vec![77u8; 50 * 30 * 3];
        assert!(resize_bicubic(&src, 50, 30, 3, 17, 11)
            .iter()
            .all(|&v| v == 77));
        assert!(resize_bicubic(&src, 50, 30, 3, 120, 64)
            .iter()
            .all(|&v| v == 77));
    }

    #[test]
    fn lanczos_keeps_flat_images_flat_and_is_a_wider_filter_than_bicubic() {
        let src = vec![200u8; 40 * 30 * 3];
        assert!(resize_lanczos(&src, 40, 30, 3, 13, 71)
            .iter()
            .all(|&v| v == 200));
        assert_eq!(coeffs(100, 10, Filter::Lanczos).ksize, 61);
        assert_eq!(coeffs(100, 10, Filter::Bicubic).ksize, 41);
        assert_eq!(lanczos(0.0), 1.0);
        assert_eq!(lanczos(3.0), 0.0);
    }

    #[test]
    fn overshoot_is_clamped_to_the_byte_range() {
        // A hard 0/255 edge upscaled: bicubic rings past both ends, clip8 clamps.
        let mut src = vec![0u8; 8];
        src[4..].fill(255);
        let out = resize_bicubic(&src, 8, 1, 1, 32, 1);
        assert_eq!(out[0], 0);
        assert_eq!(out[31], 255);
        assert!(out.windows(2).any(|w| w[0] != w[1]));
    }
}
