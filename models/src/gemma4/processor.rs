//! The Gemma 4 image processor and prompt expansion of mlx-vlm 0.7.10
//! (`gemma4/processing_gemma4.py`: `Gemma4ImageProcessor`, `Gemma4Processor.__call__`).
//!
//! Per image: aspect-preserving resize to multiples of `pooling_kernel_size * patch_size` within
//! the soft-token budget (Pillow BICUBIC on the 8-bit pixels, skipped when the size already
//! matches), rescale by `rescale_factor` in float32, optional mean/std normalisation (off for
//! Gemma 4), channels-first. Each `<|image|>` of the prompt text then becomes
//! `<|image>` + `<|image|>` x N + `<image|>`, N the image's soft-token count.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::image_io::RgbImage;
use crate::pil_resize::resize_bicubic;

/// `processor_config.json` `image_processor` block (or a flat `preprocessor_config.json`), with
/// mlx-vlm's `Gemma4ImageProcessor` defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessorConfig {
    pub patch_size: u32,
    pub max_soft_tokens: u32,
    pub pooling_kernel_size: u32,
    pub do_resize: bool,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
}

impl Default for ImageProcessorConfig {
    fn default() -> Self {
        ImageProcessorConfig {
            patch_size: 16,
            max_soft_tokens: 280,
            pooling_kernel_size: 3,
            do_resize: true,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: false,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
        }
    }
}

/// Why an image cannot be processed, or a prompt not expanded.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("{path}: field `{field}`: {reason}")]
    Config {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "a {width}x{height} image is too thin to resize within {max_soft_tokens} soft tokens \
         (both sides would be 0; mlx-vlm raises the same error)"
    )]
    ZeroSize {
        width: u32,
        height: u32,
        max_soft_tokens: u32,
    },
    #[error("the prompt has {placeholders} image placeholder(s) `{token}` but {images} image(s) were given")]
    PlaceholderCount {
        token: String,
        placeholders: usize,
        images: usize,
    },
}

impl ImageProcessorConfig {
    /// Reads `processor_config.json` (its `image_processor` block) or else
    /// `preprocessor_config.json` from a checkpoint directory; defaults when neither exists.
    pub fn from_dir(dir: &Path) -> Result<Self, ProcessorError> {
        for (name, nested) in [
            ("processor_config.json", true),
            ("preprocessor_config.json", false),
        ] {
            let path = dir.join(name);
            if !path.exists() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| ProcessorError::Io {
                path: path.clone(),
                source: e,
            })?;
            let v: Value = serde_json::from_str(&text).map_err(|e| ProcessorError::Config {
                path: path.clone(),
                field: String::new(),
                reason: format!("invalid JSON: {e}"),
            })?;
            let block = if nested {
                v.get("image_processor")
            } else {
                Some(&v)
            };
            if let Some(b) = block {
                return Self::from_json(b, &path, if nested { "image_processor." } else { "" });
            }
        }
        Ok(Self::default())
    }

    /// Parses one image-processor block; `prefix` names it in errors.
    pub fn from_json(v: &Value, path: &Path, prefix: &str) -> Result<Self, ProcessorError> {
        let d = Self::default();
        let err = |field: &str, reason: String| ProcessorError::Config {
            path: path.to_path_buf(),
            field: format!("{prefix}{field}"),
            reason,
        };
        let uint = |field: &str, default: u32| -> Result<u32, ProcessorError> {
            match v.get(field) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => match x.as_u64() {
                    Some(n) if n > 0 && n <= u32::MAX as u64 => Ok(n as u32),
                    _ => Err(err(
                        field,
                        format!("expected a positive integer, found {x}"),
                    )),
                },
            }
        };
        let boolean = |field: &str, default: bool| -> Result<bool, ProcessorError> {
            match v.get(field) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x
                    .as_bool()
                    .ok_or_else(|| err(field, format!("expected true or false, found {x}"))),
            }
        };
        let triple = |field: &str, default: [f64; 3]| -> Result<[f64; 3], ProcessorError> {
            match v.get(field) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Number(n)) => Ok([n.as_f64().unwrap_or(0.0); 3]),
                Some(Value::Array(a)) if a.len() == 3 && a.iter().all(Value::is_number) => Ok([
                    a[0].as_f64().unwrap(),
                    a[1].as_f64().unwrap(),
                    a[2].as_f64().unwrap(),
                ]),
                Some(x) => Err(err(field, format!("expected 3 numbers, found {x}"))),
            }
        };
        let rescale_factor = match v.get("rescale_factor") {
            None | Some(Value::Null) => d.rescale_factor,
            Some(x) => x
                .as_f64()
                .ok_or_else(|| err("rescale_factor", format!("expected a number, found {x}")))?,
        };
        let cfg = ImageProcessorConfig {
            patch_size: uint("patch_size", d.patch_size)?,
            max_soft_tokens: uint("max_soft_tokens", d.max_soft_tokens)?,
            pooling_kernel_size: uint("pooling_kernel_size", d.pooling_kernel_size)?,
            do_resize: boolean("do_resize", d.do_resize)?,
            do_rescale: boolean("do_rescale", d.do_rescale)?,
            rescale_factor,
            do_normalize: boolean("do_normalize", d.do_normalize)?,
            image_mean: triple("image_mean", d.image_mean)?,
            image_std: triple("image_std", d.image_std)?,
        };
        if cfg.do_normalize && cfg.image_std.contains(&0.0) {
            return Err(err(
                "image_std",
                "a standard deviation of 0 with do_normalize".into(),
            ));
        }
        Ok(cfg)
    }

    /// `max_soft_tokens * pooling_kernel_size^2`: the patch budget of one image.
    pub fn max_patches(&self) -> u64 {
        self.max_soft_tokens as u64 * (self.pooling_kernel_size as u64).pow(2)
    }

    /// mlx-vlm `get_aspect_ratio_preserving_size`: `(height, width)` after resizing.
    pub fn target_size(&self, height: u32, width: u32) -> Result<(u32, u32), ProcessorError> {
        let side = self.pooling_kernel_size as u64 * self.patch_size as u64;
        let max_patches = self.max_patches();
        let target_px = max_patches * (self.patch_size as u64).pow(2);
        // Python: math.sqrt(target_px / (height * width)), true division of ints in double.
        let factor = (target_px as f64 / (height as u64 * width as u64) as f64).sqrt();
        let mut th = ((factor * height as f64) / side as f64).floor() as u64 * side;
        let mut tw = ((factor * width as f64) / side as f64).floor() as u64 * side;
        if th == 0 && tw == 0 {
            return Err(ProcessorError::ZeroSize {
                width,
                height,
                max_soft_tokens: self.max_soft_tokens,
            });
        }
        let max_side = (max_patches / (self.pooling_kernel_size as u64).pow(2)) * side;
        if th == 0 {
            th = side;
            tw = ((width as f64 / height as f64).floor() as u64 * side).min(max_side);
        } else if tw == 0 {
            tw = side;
            th = ((height as f64 / width as f64).floor() as u64 * side).min(max_side);
        }
        Ok((th as u32, tw as u32))
    }

    /// Resizes (if needed), rescales and lays out one RGB image channels-first.
    pub fn process(&self, image: &RgbImage) -> Result<ProcessedImage, ProcessorError> {
        let (h, w) = (image.height(), image.width());
        let (th, tw) = if self.do_resize {
            self.target_size(h, w)?
        } else {
            (h, w)
        };
        let resized;
        let pixels: &[u8] = if (th, tw) == (h, w) {
            image.as_bytes()
        } else {
            resized = resize_bicubic(
                image.as_bytes(),
                w as usize,
                h as usize,
                3,
                tw as usize,
                th as usize,
            );
            &resized
        };
        let plane = th as usize * tw as usize;
        let mut data = vec![0f32; 3 * plane];
        // numpy: uint8 -> float32, then `* rescale_factor` with the Python float taken as float32.
        let factor = self.rescale_factor as f32;
        let mean = self.image_mean.map(|m| m as f32);
        let std = self.image_std.map(|s| s as f32);
        for (i, px) in pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                let mut v = px[c] as f32;
                if self.do_rescale {
                    v *= factor;
                }
                if self.do_normalize {
                    v = (v - mean[c]) / std[c];
                }
                data[c * plane + i] = v;
            }
        }
        let num_patches = (th / self.patch_size) as usize * (tw / self.patch_size) as usize;
        Ok(ProcessedImage {
            height: th,
            width: tw,
            pixel_values: data,
            num_soft_tokens: num_patches / (self.pooling_kernel_size as usize).pow(2),
        })
    }
}

/// One image ready for the vision tower.
#[derive(Clone, PartialEq)]
pub struct ProcessedImage {
    pub height: u32,
    pub width: u32,
    /// `[3, height, width]` float32, channels-first (mlx-vlm's `pixel_values[i]`).
    pub pixel_values: Vec<f32>,
    /// Soft tokens this image becomes in the prompt.
    pub num_soft_tokens: usize,
}

impl std::fmt::Debug for ProcessedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ProcessedImage(3x{}x{}, {} soft tokens)",
            self.height, self.width, self.num_soft_tokens
        )
    }
}

impl ProcessedImage {
    /// The little-endian bytes of `pixel_values` (what the reference hashes).
    pub fn pixel_bytes(&self) -> Vec<u8> {
        self.pixel_values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }
}

/// The strings of an image block (from the tokenizer, as mlx-vlm's processor reads them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageTokens {
    /// `<|image|>`: the placeholder the chat template writes, and each soft token.
    pub image: String,
    /// `<|image>`
    pub begin: String,
    /// `<image|>`
    pub end: String,
}

/// Replaces the i-th occurrence of the image placeholder in `prompt` with
/// `begin + image * counts[i] + end` (mlx-vlm's `re.sub` in image order). The number of
/// placeholders must equal the number of images.
pub fn expand_image_tokens(
    prompt: &str,
    tokens: &ImageTokens,
    counts: &[usize],
) -> Result<String, ProcessorError> {
    let placeholders = prompt.matches(tokens.image.as_str()).count();
    if placeholders != counts.len() {
        return Err(ProcessorError::PlaceholderCount {
            token: tokens.image.clone(),
            placeholders,
            images: counts.len(),
        });
    }
    let mut out =
        String::with_capacity(prompt.len() + counts.iter().sum::<usize>() * tokens.image.len());
    let mut rest = prompt;
    for &n in counts {
        let at = rest.find(tokens.image.as_str()).expect("counted above");
        out.push_str(&rest[..at]);
        out.push_str(&tokens.begin);
        for _ in 0..n {
            out.push_str(&tokens.image);
        }
        out.push_str(&tokens.end);
        rest = &rest[at + tokens.image.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_soft_tokens: u32) -> ImageProcessorConfig {
        ImageProcessorConfig {
            max_soft_tokens,
            ..Default::default()
        }
    }

    fn tokens(c: &ImageProcessorConfig, h: u32, w: u32) -> (u32, u32, usize) {
        let (th, tw) = c.target_size(h, w).unwrap();
        (th, tw, ((th / 48) * (tw / 48)) as usize)
    }

    #[test]
    fn size_rule_examples_from_the_spec() {
        // 1024x768 (W x H) -> 912x672 -> 19 x 14 = 266 tokens.
        assert_eq!(tokens(&cfg(280), 768, 1024), (672, 912, 266));
        // Square -> 768x768 -> 256 tokens.
        assert_eq!(tokens(&cfg(280), 500, 500), (768, 768, 256));
        assert_eq!(tokens(&cfg(280), 4000, 4000), (768, 768, 256));
        // The tiny test image 320x240 with 16 soft tokens -> 192x144 -> 12 tokens.
        assert_eq!(tokens(&cfg(16), 240, 320), (144, 192, 12));
        // Chelsea (451x300) with 16 soft tokens.
        assert_eq!(tokens(&cfg(16), 300, 451), (144, 192, 12));
    }

    #[test]
    fn the_budget_is_never_exceeded() {
        let c = cfg(280);
        // (height, width) -> expected, from mlx-vlm.
        for (h, w, want) in [
            (1, 1, (768, 768)),
            (480, 640, (672, 912)),
            (1080, 1920, (576, 1056)),
            (7, 7, (768, 768)),
            (999, 1001, (768, 768)),
        ] {
            let (th, tw) = c.target_size(h, w).unwrap();
            assert_eq!((th, tw), want, "{h}x{w}");
            assert!((th / 48) * (tw / 48) <= 280, "{h}x{w} -> {th}x{tw}");
        }
    }

    #[test]
    fn one_side_zero_uses_the_aspect_ratio_capped_at_the_budget() {
        // Values checked against mlx-vlm's get_aspect_ratio_preserving_size.
        let c = cfg(280);
        assert_eq!(c.target_size(1, 5000).unwrap(), (48, 13440));
        assert_eq!(c.target_size(5000, 1).unwrap(), (13440, 48));
        assert_eq!(c.target_size(17, 3000).unwrap(), (48, 10656));
        assert_eq!(c.target_size(3, 200).unwrap(), (96, 6528));
        assert_eq!(cfg(16).target_size(1, 100).unwrap(), (48, 768));
    }

    #[test]
    fn both_sides_zero_is_an_error() {
        // With a 1-token budget a square image lands exactly on one 48-pixel block, and for some
        // sizes the double rounding falls just below it on both sides (mlx-vlm raises there too).
        let e = cfg(1).target_size(17, 17).unwrap_err();
        assert!(matches!(e, ProcessorError::ZeroSize { .. }), "{e}");
        assert!(e.to_string().contains("17x17"), "{e}");
        assert_eq!(cfg(1).target_size(16, 16).unwrap(), (48, 48));
    }

    #[test]
    fn pixels_are_rescaled_in_float32_channels_first() {
        // 48x48 already fits 1 token with max_soft_tokens 1: no resize.
        let mut raw = vec![0u8; 48 * 48 * 3];
        raw[0] = 255;
        raw[1] = 1;
        raw[2] = 128;
        let img = RgbImage::from_raw(48, 48, raw).unwrap();
        let p = cfg(1).process(&img).unwrap();
        assert_eq!((p.height, p.width, p.num_soft_tokens), (48, 48, 1));
        let plane = 48 * 48;
        assert_eq!(p.pixel_values[0], 1.0);
        assert_eq!(p.pixel_values[plane], 1.0f32 * (1.0f64 / 255.0) as f32);
        assert_eq!(p.pixel_values[2 * plane], 128.0 * (1.0f64 / 255.0) as f32);
        assert_eq!(p.pixel_bytes().len(), 3 * plane * 4);
    }

    #[test]
    fn prompt_expansion_replaces_each_placeholder_in_order() {
        let t = ImageTokens {
            image: "<|image|>".into(),
            begin: "<|image>".into(),
            end: "<image|>".into(),
        };
        let p = "a<|image|>b<|image|>c";
        assert_eq!(
            expand_image_tokens(p, &t, &[1, 2]).unwrap(),
            "a<|image><|image|><image|>b<|image><|image|><|image|><image|>c"
        );
        assert_eq!(expand_image_tokens("none", &t, &[]).unwrap(), "none");
        let e = expand_image_tokens(p, &t, &[3]).unwrap_err();
        assert!(e.to_string().contains("2 image placeholder(s)"), "{e}");
    }

    #[test]
    fn config_blocks_are_read_with_defaults_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            ImageProcessorConfig::from_dir(dir.path()).unwrap(),
            ImageProcessorConfig::default()
        );
        std::fs::write(
            dir.path().join("processor_config.json"),
            r#"{"image_processor": {"max_soft_tokens": 16, "rescale_factor": 0.00392156862745098}}"#,
        )
        .unwrap();
        let c = ImageProcessorConfig::from_dir(dir.path()).unwrap();
        assert_eq!(c.max_soft_tokens, 16);
        assert_eq!(c.patch_size, 16);
        std::fs::write(
            dir.path().join("processor_config.json"),
            r#"{"image_processor": {"patch_size": "x"}}"#,
        )
        .unwrap();
        let e = ImageProcessorConfig::from_dir(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("field `image_processor.patch_size`"),
            "{e}"
        );
    }
}
