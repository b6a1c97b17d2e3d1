//! Moondream2 (vikhyatk/moondream2 revision 2025-06-21), native on MLX, with its region head:
//! caption, query, detect and point, following the reference `moondream.py` decode loops.
//!
//! * [`Moondream2::load`] reads the published `model.safetensors` layout (`model.{vision,text,
//!   region}.*`, 592 tensors at full size) and refuses any other layout with one error.
//! * [`Moondream2::encode_image`] runs the crops through the vision encoder and projection and
//!   prefills BOS + 729 image embeddings (a bidirectional 730-position prefix); the result is
//!   reusable across tasks.
//! * [`Moondream2::caption`] / [`Moondream2::query`] generate token ids (streamed through a
//!   callback) with the reference's default sampling (temperature 0.5, top-p 0.3, 768 tokens) or
//!   greedily (temperature 0); `answer_id` is masked after the first step; eos (0) stops.
//! * [`Moondream2::detect`] / [`Moondream2::point`] decode coordinates (and sizes) through the
//!   region head: 3 (detect) or 2 (point) steps per object, continuing while the argmax token of
//!   the last step is not eos, up to `max_objects`.
//!
//! Prompts are token ids (the tokenizer, moondream/starmie-v1, is loaded and checked by
//! [`tokenizer::load_starmie`]); the `*_prompt` functions build the reference's templates.

pub mod config;
pub mod crops;
pub mod layers;
pub mod quantize;
pub mod region;
pub mod sampling;
pub mod text;
pub mod tiny;
pub mod tokenizer;
pub mod vision;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use half::bf16;
use mlx_rs::{Array, Dtype};

use crate::attention::causal_mask;
use crate::cache::KvCache;
use crate::checkpoint::Checkpoint;
use crate::error::{ModelError, Result};
use config::MoondreamConfig;
use crops::{normalization_table, overlap_crops, stitch_and_pool, OverlapCrops, CROP, GRID};
use region::{argmax_first, coordinate_of_bin, host_values, size_of_bin, top2_gap, Region};
use sampling::{Sampler, TextSettings};
use text::TextModel;
use vision::Vision;

/// A detected box, normalized to [0, 1] of the image (not clamped, as the reference).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectedBox {
    pub x_min: f64,
    pub y_min: f64,
    pub x_max: f64,
    pub y_max: f64,
}

/// A point, normalized to [0, 1] of the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectedPoint {
    pub x: f64,
    pub y: f64,
}

/// Caption lengths of the reference templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptionLength {
    Short,
    Normal,
    Long,
}

impl CaptionLength {
    pub fn name(self) -> &'static str {
        match self {
            CaptionLength::Short => "short",
            CaptionLength::Normal => "normal",
            CaptionLength::Long => "long",
        }
    }
}

/// An image encoded into the text model's cache: BOS + 729 image positions.
#[derive(Debug, Clone)]
pub struct EncodedImage {
    kv: Vec<(Array, Array)>,
    /// Local crop rows and columns ((0, 0) when encoded from embeddings).
    pub tiling: (usize, usize),
    /// Wall time of cropping, vision encoder, projection and the prefix prefill.
    pub encode_time: Duration,
}

/// Generated token ids with the time split the engine's statistics report.
#[derive(Debug, Clone, Default)]
pub struct Generation {
    pub tokens: Vec<u32>,
    /// Per decision (each token, then the final eos if one stopped the loop): the gap between
    /// the best and second-best logit. Small gaps are where rounding can flip a greedy choice.
    pub margins: Vec<f32>,
    pub prompt_tokens: usize,
    pub prefill_time: Duration,
    pub decode_time: Duration,
}

/// Region-head outputs with their timing (`steps` = text-model decode steps after the prompt).
#[derive(Debug, Clone, Default)]
pub struct Regions<T> {
    pub items: Vec<T>,
    /// Every argmax decision in order, as `(chosen index, best-minus-second logit gap)`: the
    /// continue token (non-zero = go on; `chosen` is 1 for continue, 0 for eos), then x, y (and
    /// w, h bins for detect) per object, then the next continue token.
    pub decisions: Vec<(usize, f32)>,
    pub prompt_tokens: usize,
    pub steps: usize,
    pub prefill_time: Duration,
    pub decode_time: Duration,
}

/// Everything the vision side computes for one image (for parity tests and inspection).
#[derive(Debug)]
pub struct ImageFeatures {
    pub crops: OverlapCrops,
    /// `[729, enc_dim]` global-crop features.
    pub global: Array,
    /// `[729, enc_dim]` stitched and pooled local features.
    pub pooled: Array,
    /// `[729, text_dim]` projected image embeddings.
    pub projected: Array,
}

#[derive(Debug)]
pub struct Moondream2 {
    pub config: MoondreamConfig,
    dtype: Dtype,
    vision: Vision,
    text: TextModel,
    region: Region,
}

/// Names of the published layout for `cfg` (dense weights). 592 at full size.
pub fn expected_tensor_names(cfg: &MoondreamConfig) -> Vec<String> {
    let mut v = vec![
        "model.vision.patch_emb.weight".to_string(),
        "model.vision.patch_emb.bias".into(),
        "model.vision.pos_emb".into(),
    ];
    let wb = |v: &mut Vec<String>, p: String| {
        v.push(format!("{p}.weight"));
        v.push(format!("{p}.bias"));
    };
    for i in 0..cfg.vision.enc_n_layers {
        for m in ["ln1", "ln2", "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"] {
            wb(&mut v, format!("model.vision.blocks.{i}.{m}"));
        }
    }
    for m in ["post_ln", "proj_mlp.fc1", "proj_mlp.fc2"] {
        wb(&mut v, format!("model.vision.{m}"));
    }
    v.push("model.text.wte".into());
    for i in 0..cfg.text.n_layers {
        for m in ["ln", "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"] {
            wb(&mut v, format!("model.text.blocks.{i}.{m}"));
        }
    }
    for m in ["post_ln", "lm_head"] {
        wb(&mut v, format!("model.text.{m}"));
    }
    v.push("model.region.coord_features".into());
    v.push("model.region.size_features".into());
    for m in [
        "coord_encoder",
        "coord_decoder.fc1",
        "coord_decoder.fc2",
        "size_encoder",
        "size_decoder.fc1",
        "size_decoder.fc2",
    ] {
        wb(&mut v, format!("model.region.{m}"));
    }
    v
}

/// Every tensor must belong to the published layout (a quantized linear or `wte` may replace its
/// weight by `weight/scales/biases`); anything else is one error naming the first stranger.
fn check_layout(ckpt: &Checkpoint, cfg: &MoondreamConfig) -> Result<()> {
    let expected: BTreeSet<String> = expected_tensor_names(cfg).into_iter().collect();
    let mut names: Vec<&str> = ckpt.tensor_names().collect();
    names.sort_unstable();
    for name in names {
        if expected.contains(name) {
            continue;
        }
        let quantized_part = ["weight", "scales", "biases"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .and_then(|s| s.strip_suffix('.'))
                .is_some_and(|stem| {
                    stem == "model.text.wte" || expected.contains(&format!("{stem}.weight"))
                })
        });
        if quantized_part {
            continue;
        }
        return Err(ModelError::config(
            ckpt.config_path(),
            "weights",
            format!(
                "tensor `{name}` is not part of the Moondream2 2025-06-21 layout (model.vision.*, model.text.*, model.region.*; \
                 {} tensors for this config); older `.pt`-style or region-less conversions are not supported",
                expected.len()
            ),
        ));
    }
    Ok(())
}

impl Moondream2 {
    /// Load a checkpoint directory (`config.json` + `model.safetensors`) in `dtype` (bf16 is the
    /// reference's).
    pub fn load(dir: &Path, dtype: Dtype) -> Result<Self> {
        crate::error::check_compute_dtype(dtype)?;
        crate::kernels::check_choices()?;
        let ckpt = Checkpoint::open(dir)?;
        let config = MoondreamConfig::from_json(ckpt.config_json(), ckpt.config_path())?;
        check_layout(&ckpt, &config)?;
        let vision = Vision::load(&ckpt, &config.vision, config.text.dim, dtype)?;
        let text = TextModel::load(&ckpt, &config.text, dtype)?;
        let region = Region::load(&ckpt, &config.region, dtype)?;
        let model = Moondream2 {
            config,
            dtype,
            vision,
            text,
            region,
        };
        let arrays: Vec<&Array> = model
            .vision
            .arrays()
            .into_iter()
            .chain(model.text.arrays())
            .chain(model.region.arrays())
            .collect();
        mlx_rs::transforms::eval(arrays)?;
        Ok(model)
    }

    /// Crops, encoder outputs, stitching, pooling and projection for one RGB image.
    pub fn image_features(&self, image: &image::RgbImage) -> Result<ImageFeatures> {
        let (w, h) = (image.width() as usize, image.height() as usize);
        if w == 0 || h == 0 {
            return Err(ModelError::Input("image has zero width or height".into()));
        }
        let v = &self.config.vision;
        let crops = overlap_crops(
            image.as_raw(),
            w,
            h,
            v.overlap_margin as usize,
            v.max_crops as usize,
        );
        let table = normalization_table();
        let normalized: Vec<bf16> = crops.pixels.iter().map(|&b| table[b as usize]).collect();
        let x = Array::from_slice(&normalized, &[crops.n as i32, CROP as i32, CROP as i32, 3])
            .as_dtype(self.dtype)?;
        let enc = self.vision.encode(&x)?;
        use mlx_rs::ops::indexing::IndexOp;
        let global = enc.index(0);
        let dim = v.enc_dim as usize;
        let local = host_values(&enc.index(1..))?;
        let pooled = stitch_and_pool(&local, crops.tiling, dim, v.overlap_margin as usize);
        let pooled =
            Array::from_slice(&pooled, &[(GRID * GRID) as i32, dim as i32]).as_dtype(self.dtype)?;
        let projected = self.vision.project(&global, &pooled)?;
        projected.eval()?;
        Ok(ImageFeatures {
            crops,
            global,
            pooled,
            projected,
        })
    }

    /// `encode_image`: image features, then BOS + 729 embeddings prefilled with a bidirectional
    /// mask; the caches are kept for the tasks.
    pub fn encode_image(&self, image: &image::RgbImage) -> Result<EncodedImage> {
        let t0 = Instant::now();
        let f = self.image_features(image)?;
        let mut enc = self.encode_embeddings(&f.projected)?;
        enc.tiling = f.crops.tiling;
        enc.encode_time = t0.elapsed();
        Ok(enc)
    }

    /// The prefix prefill alone, from projected image embeddings `[729, dim]` (e.g. computed
    /// elsewhere): BOS + the embeddings at positions 0..730, all attending to each other.
    pub fn encode_embeddings(&self, projected: &Array) -> Result<EncodedImage> {
        let t0 = Instant::now();
        let n = (GRID * GRID) as i32;
        if projected.shape() != [n, self.config.text.dim] {
            return Err(ModelError::Input(format!(
                "image embeddings must be [{n}, {}], found {:?}",
                self.config.text.dim,
                projected.shape()
            )));
        }
        let bos = self.text.embed(&[self.config.tokenizer.bos_id])?;
        let img = projected.as_dtype(self.dtype)?.reshape(&[1, n, -1])?;
        let x = mlx_rs::ops::concatenate(&[bos, img], 1)?;
        let mut caches: Vec<KvCache> = (0..self.text.n_layers()).map(|_| KvCache::new()).collect();
        let hidden = self.text.forward(&x, &mut caches, None)?;
        hidden.eval()?;
        let mut kv = Vec::with_capacity(caches.len());
        for c in &caches {
            kv.push(
                c.state()
                    .ok_or_else(|| ModelError::Input("image prefill left an empty cache".into()))?,
            );
        }
        mlx_rs::transforms::eval(kv.iter().flat_map(|(k, v)| [k, v]))?;
        Ok(EncodedImage {
            kv,
            tiling: (0, 0),
            encode_time: t0.elapsed(),
        })
    }

    fn caches_for(&self, img: &EncodedImage) -> Result<Vec<KvCache>> {
        img.kv
            .iter()
            .map(|(k, v)| {
                let mut c = KvCache::new();
                c.update_and_fetch(k, v)?;
                Ok(c)
            })
            .collect()
    }

    /// Prefill prompt ids after the image: hidden states `[1, L, dim]` and last logits.
    fn prefill(&self, caches: &mut [KvCache], ids: &[u32]) -> Result<(Array, Vec<f32>)> {
        if ids.is_empty() {
            return Err(ModelError::Input("empty prompt".into()));
        }
        let x = self.text.embed(ids)?;
        let mask = causal_mask(ids.len() as i32, caches[0].offset(), None)?;
        let hidden = self.text.forward(&x, caches, Some(&mask))?;
        let logits = host_values(&self.text.logits(&hidden)?)?;
        Ok((hidden, logits))
    }

    /// One decode step on an input embedding `[1, 1, dim]`.
    fn step(&self, caches: &mut [KvCache], emb: &Array) -> Result<(Array, Vec<f32>)> {
        let hidden = self.text.forward(emb, caches, None)?;
        let logits = host_values(&self.text.logits(&hidden)?)?;
        Ok((hidden, logits))
    }

    /// `caption(image, length)`: token ids, each passed to `on_token` as it is chosen.
    pub fn caption(
        &self,
        img: &EncodedImage,
        length: CaptionLength,
        settings: &TextSettings,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generation> {
        let prompt = caption_prompt(&self.config, length)?;
        self.generate_answer(img, &prompt, settings, on_token)
    }

    /// `query(image, question)` with the question already tokenized (no leading space added).
    pub fn query(
        &self,
        img: &EncodedImage,
        question_ids: &[u32],
        settings: &TextSettings,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generation> {
        let prompt = query_prompt(&self.config, question_ids);
        self.generate_answer(img, &prompt, settings, on_token)
    }

    /// `_generate_answer`: prefill, then decode until eos or `max_tokens`.
    pub fn generate_answer(
        &self,
        img: &EncodedImage,
        prompt: &[u32],
        settings: &TextSettings,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generation> {
        let tk = &self.config.tokenizer;
        let mut sampler = Sampler::new(settings)?;
        let mut caches = self.caches_for(img)?;
        let t0 = Instant::now();
        let (_, logits) = self.prefill(&mut caches, prompt)?;
        let mut next = sampler.choose(&logits);
        let mut margins = vec![top2_gap(&logits)];
        let prefill_time = t0.elapsed();
        let t1 = Instant::now();
        let mut tokens = Vec::new();
        while next != tk.eos_id && tokens.len() < settings.max_tokens {
            tokens.push(next);
            on_token(next);
            if tokens.len() == settings.max_tokens {
                // The reference decodes once more here and drops the result.
                break;
            }
            let emb = self.text.embed(&[next])?;
            let (_, mut logits) = self.step(&mut caches, &emb)?;
            logits[tk.answer_id as usize] = f32::NEG_INFINITY;
            next = sampler.choose(&logits);
            margins.push(top2_gap(&logits));
        }
        margins.truncate(tokens.len() + (next == tk.eos_id) as usize);
        Ok(Generation {
            tokens,
            margins,
            prompt_tokens: prompt.len(),
            prefill_time,
            decode_time: t1.elapsed(),
        })
    }

    /// `detect(image, object)` with `object_ids` = the tokenization of `" " + object`.
    pub fn detect(
        &self,
        img: &EncodedImage,
        object_ids: &[u32],
        max_objects: usize,
    ) -> Result<Regions<DetectedBox>> {
        let prompt = region_prompt(&self.config.tokenizer.templates.detect, object_ids);
        self.generate_points(img, &prompt, true, max_objects, |x, y, size| {
            let (w, h) = size.expect("detect decodes sizes");
            DetectedBox {
                x_min: x as f64 - w as f64 / 2.0,
                y_min: y as f64 - h as f64 / 2.0,
                x_max: x as f64 + w as f64 / 2.0,
                y_max: y as f64 + h as f64 / 2.0,
            }
        })
    }

    /// `point(image, object)` with `object_ids` = the tokenization of `" " + object`.
    pub fn point(
        &self,
        img: &EncodedImage,
        object_ids: &[u32],
        max_objects: usize,
    ) -> Result<Regions<DetectedPoint>> {
        let prompt = region_prompt(&self.config.tokenizer.templates.point, object_ids);
        self.generate_points(img, &prompt, false, max_objects, |x, y, _| DetectedPoint {
            x: x as f64,
            y: y as f64,
        })
    }

    /// `_generate_points`: x, y (and size) per object from the hidden state before `post_ln`.
    fn generate_points<T>(
        &self,
        img: &EncodedImage,
        prompt: &[u32],
        include_size: bool,
        max_objects: usize,
        make: impl Fn(f32, f32, Option<(f32, f32)>) -> T,
    ) -> Result<Regions<T>> {
        use mlx_rs::ops::indexing::IndexOp;
        let eos = self.config.tokenizer.eos_id;
        let mut caches = self.caches_for(img)?;
        let t0 = Instant::now();
        let (hidden, logits) = self.prefill(&mut caches, prompt)?;
        let mut hidden = hidden.index((.., -1.., ..));
        let mut next = argmax_first(&logits) as u32;
        let mut decisions = vec![((next != eos) as usize, continue_gap(&logits, eos))];
        let prefill_time = t0.elapsed();
        let t1 = Instant::now();
        let mut items = Vec::new();
        let mut steps = 0;
        while next != eos && items.len() < max_objects {
            let xd = self.region.decode_coordinate(&hidden)?;
            decisions.push(xd);
            let x = coordinate_of_bin(xd.0);
            let (h, _) = self.step(&mut caches, &self.region.encode_coordinate(x)?)?;
            let yd = self.region.decode_coordinate(&h)?;
            decisions.push(yd);
            let y = coordinate_of_bin(yd.0);
            let mut emb = self.region.encode_coordinate(y)?;
            steps += 1;
            let size = if include_size {
                let (h, _) = self.step(&mut caches, &emb)?;
                steps += 1;
                let (wd, hd) = self.region.decode_size(&h)?;
                decisions.push(wd);
                decisions.push(hd);
                let (w, hh) = (size_of_bin(wd.0), size_of_bin(hd.0));
                emb = self.region.encode_size(w, hh)?;
                Some((w, hh))
            } else {
                None
            };
            items.push(make(x, y, size));
            let (h, logits) = self.step(&mut caches, &emb)?;
            steps += 1;
            hidden = h;
            next = argmax_first(&logits) as u32;
            if items.len() < max_objects {
                decisions.push(((next != eos) as usize, continue_gap(&logits, eos)));
            }
        }
        Ok(Regions {
            items,
            decisions,
            prompt_tokens: prompt.len(),
            steps,
            prefill_time,
            decode_time: t1.elapsed(),
        })
    }
}

/// How far the continue/stop decision was from flipping: |best non-eos logit - eos logit|.
fn continue_gap(logits: &[f32], eos: u32) -> f32 {
    let best_other = logits
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != eos as usize)
        .map(|(_, &v)| v)
        .fold(f32::NEG_INFINITY, f32::max);
    (best_other - logits[eos as usize]).abs()
}

/// The caption template for `length`.
pub fn caption_prompt(cfg: &MoondreamConfig, length: CaptionLength) -> Result<Vec<u32>> {
    cfg.tokenizer
        .templates
        .caption
        .get(length.name())
        .cloned()
        .ok_or_else(|| {
            ModelError::Input(format!(
                "model does not support caption length `{}`",
                length.name()
            ))
        })
}

/// `prefix + question + suffix + suffix`: the reference's `query` appends the answer marker twice.
pub fn query_prompt(cfg: &MoondreamConfig, question_ids: &[u32]) -> Vec<u32> {
    let q = &cfg.tokenizer.templates.query;
    let mut p = q.prefix.clone();
    p.extend_from_slice(question_ids);
    p.extend_from_slice(&q.suffix);
    p.extend_from_slice(&q.suffix);
    p
}

/// `prefix + encode(" " + object) + suffix` for detect and point.
pub fn region_prompt(t: &config::PrefixSuffix, object_ids: &[u32]) -> Vec<u32> {
    let mut p = t.prefix.clone();
    p.extend_from_slice(object_ids);
    p.extend_from_slice(&t.suffix);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_size_layout_has_592_tensors() {
        let names = expected_tensor_names(&MoondreamConfig::default());
        assert_eq!(names.len(), 592);
        assert_eq!(
            names
                .iter()
                .filter(|n| n.starts_with("model.region."))
                .count(),
            14
        );
    }

    #[test]
    fn query_prompt_doubles_the_answer_marker() {
        let cfg = MoondreamConfig::default();
        assert_eq!(
            query_prompt(&cfg, &[100, 101]),
            vec![1, 15381, 2, 100, 101, 3, 3]
        );
        assert_eq!(
            region_prompt(&cfg.tokenizer.templates.detect, &[9]),
            vec![1, 7235, 476, 2, 9, 3]
        );
    }
}
