//! The notebook's `img.save('/tmp/_od_tmp.jpg')` before each COCO image reaches the model: Pillow's
//! default JPEG (quality 75, 4:2:0 chroma, baseline, standard Huffman tables, libjpeg-turbo's encoder).
//! mozjpeg with its libjpeg-turbo ("fastest") profile writes the same coefficients; decoding the result
//! with the models crate's Pillow-exact decoder gives the pixels the notebook's model saw. Checked
//! against Pillow in tests/eval_jpeg_parity.rs.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use vlm_models::image_io::{decode_image, RgbImage};

/// Pillow's default JPEG quality.
pub const PILLOW_QUALITY: f32 = 75.0;

/// `image` encoded as Pillow's `Image.save(path_ending_in_jpg)` encodes an RGB image.
pub fn encode_like_pillow(image: &RgbImage) -> Result<Vec<u8>> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let pixels = image.as_bytes();
    catch_unwind(AssertUnwindSafe(|| -> std::io::Result<Vec<u8>> {
        let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
        c.set_fastest_defaults();
        c.set_size(w, h);
        c.set_quality(PILLOW_QUALITY);
        c.set_optimize_coding(false);
        c.set_chroma_sampling_pixel_sizes((2, 2), (2, 2));
        let mut started = c.start_compress(Vec::new())?;
        started.write_scanlines(pixels)?;
        started.finish()
    }))
    .map_err(|_| anyhow!("the JPEG encoder failed"))?
    .context("cannot encode JPEG")
}

/// The pixels after the notebook's JPEG round trip.
pub fn jpeg_round_trip(image: &RgbImage, name: &str) -> Result<RgbImage> {
    let bytes = encode_like_pillow(image)?;
    decode_image(&bytes, Path::new(name))
        .with_context(|| format!("{name}: cannot decode the re-saved JPEG"))
}
