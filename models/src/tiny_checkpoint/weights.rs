//! Random weights for a parameter list: drawn with MLX's seeded generator, cast to bf16, and
//! affine-quantized with MLX's own `quantize` where the converter would quantize, then written
//! with MLX's safetensors writer.
//!
//! The draw follows the Python builder step for step (one key per parameter from
//! `split(key(seed), n)`, a float32 standard normal per parameter, the same float32 arithmetic,
//! then bf16), so on the same MLX and device both produce the same numbers. Everything runs on
//! the CPU device: the bits must not depend on which GPU, if any, is the default.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::ops::{abs, add, multiply, negative, quantize};
use mlx_rs::{random, Array, Device, Dtype, Stream};

use super::params::GROUP_SIZE;
use super::params::{Init, Param, Storage};
use super::TinyError;

/// The tensors to write, by name.
pub struct TinyTensors {
    pub tensors: BTreeMap<String, Array>,
    pub quantized_modules: usize,
}

/// Draws, casts and quantizes every parameter (lazily: nothing is computed until saved).
pub fn build_tensors(params: &[Param], seed: u64) -> Result<TinyTensors, TinyError> {
    mlx_rs::with_device(Device::cpu(), || build_on_current_stream(params, seed))
}

fn build_on_current_stream(params: &[Param], seed: u64) -> Result<TinyTensors, TinyError> {
    let keys = split_keys(seed, params.len())?;
    let mut tensors = BTreeMap::new();
    let mut quantized_modules = 0;
    for (i, param) in params.iter().enumerate() {
        let built = build_param(param, &keys.index(i as i32))?;
        quantized_modules += usize::from(built.len() == 3);
        tensors.extend(built);
    }
    Ok(TinyTensors {
        tensors,
        quantized_modules,
    })
}

/// One parameter as stored, lazily, on the current stream: `name -> bf16` or, quantized, its
/// `.weight` / `.scales` / `.biases` triple. `key` is the parameter's own PRNG key.
pub(super) fn build_param(param: &Param, key: &Array) -> Result<Vec<(String, Array)>, TinyError> {
    let mlx = |step: &'static str| {
        let tensor = param.name.clone();
        move |e: mlx_rs::error::Exception| TinyError::Mlx {
            step,
            tensor,
            message: e.what().to_string(),
        }
    };
    // One draw, as the Python builder makes it; a tensor beyond MLX's element limit in slices
    // of whole rows, each with its own key split off the parameter's in turn.
    let mut parts: Vec<Vec<Array>> = Vec::new();
    let (mut key, mut start) = (key.clone(), 0);
    let rows_per_slice = slice_rows(&param.shape);
    while start < param.shape.first().copied().unwrap_or(1) {
        let mut shape = param.shape.clone();
        let this = if rows_per_slice == param.shape.first().copied().unwrap_or(1) {
            key.clone()
        } else {
            let (this, next) = random::split(&key, 2).map_err(mlx("splitting the PRNG key"))?;
            key = next;
            shape[0] = rows_per_slice.min(param.shape[0] - start);
            this
        };
        start += shape.first().copied().unwrap_or(1);
        let r = random::normal::<f32>(&shape[..], None, None, &this).map_err(mlx("drawing"))?;
        let value = initialise(&r, param.init).map_err(mlx("scaling"))?;
        let value = value
            .as_dtype(Dtype::Bfloat16)
            .map_err(mlx("casting to bf16"))?;
        parts.push(match param.storage {
            Storage::Bf16 => vec![value],
            Storage::Quantized { bits } => {
                let (w, scales, biases) =
                    quantize(&value, GROUP_SIZE, bits).map_err(mlx("quantizing"))?;
                vec![w, scales, biases]
            }
        });
    }
    let joined = |i: usize| -> Result<Array, TinyError> {
        if parts.len() == 1 {
            return Ok(parts[0][i].clone());
        }
        let pieces: Vec<Array> = parts.iter().map(|p| p[i].clone()).collect();
        mlx_rs::ops::concatenate(&pieces, 0).map_err(mlx("joining slices"))
    };
    Ok(match param.storage {
        Storage::Bf16 => vec![(param.name.clone(), joined(0)?)],
        Storage::Quantized { .. } => {
            let module = param.module_path();
            vec![
                (format!("{module}.weight"), joined(0)?),
                (format!("{module}.scales"), joined(1)?),
                (format!("{module}.biases"), joined(2)?),
            ]
        }
    })
}

/// Elements one MLX draw (and cast and quantization) handles correctly: beyond 2^31 its
/// indices overflow and the tail comes out as garbage (Gemma 4 E2B's per-layer embedding table
/// has 2.35e9 values).
const MAX_SLICE: usize = 1 << 30;

/// Rows of the first axis per slice: all of them up to [`MAX_SLICE`] elements.
fn slice_rows(shape: &[i32]) -> i32 {
    let Some(&rows) = shape.first() else {
        return 1;
    };
    let total: usize = shape.iter().map(|&d| d as usize).product();
    if total <= MAX_SLICE {
        return rows;
    }
    let row = (total / rows.max(1) as usize).max(1);
    ((MAX_SLICE / row) as i32).max(1)
}

/// The float32 arithmetic of the Python builder, operation for operation (so the rounding is the
/// same), on a standard normal sample `r`.
fn initialise(r: &Array, init: Init) -> Result<Array, mlx_rs::error::Exception> {
    let scaled = |s: f32, x: &Array| multiply(Array::from_f32(s), x);
    match init {
        Init::Linear => scaled(0.08, r),
        Init::Embedding => scaled(0.05, r),
        Init::Small => scaled(0.1, r),
        Init::Position => scaled(0.5, r),
        Init::AroundOne => add(Array::from_f32(1.0), scaled(0.1, r)?),
        Init::ClipMax => add(Array::from_f32(1.5), scaled(0.5, &abs(r)?)?),
        Init::ClipMin => negative(add(Array::from_f32(1.5), scaled(0.5, &abs(r)?)?)?),
    }
}

/// `num` PRNG keys, `[num, 2]` uint32, from MLX's `random.split(key(seed), num)`.
///
/// mlx-rs 0.33's `split` returns only the first two rows of the split, so this calls mlx-c
/// directly.
pub(super) fn split_keys(seed: u64, num: usize) -> Result<Array, TinyError> {
    let mlx = |message: String| TinyError::Mlx {
        step: "splitting the PRNG key",
        tensor: format!("{num} keys"),
        message,
    };
    let count = i32::try_from(num).map_err(|_| mlx("too many parameters".into()))?;
    // Going through mlx-rs first also installs its MLX error handler on this thread, so a failing
    // mlx-c call below returns a status instead of ending the process.
    let key = random::key(seed).map_err(|e| mlx(e.what().to_string()))?;
    let stream = Stream::thread_local_or_default();
    // SAFETY: `res` is a fresh empty array handle that mlx-c fills in; `key` and `stream` are live
    // handles borrowed for the call. `Array::from_ptr` takes ownership of `res` (freed on drop),
    // also when the call failed and left it empty.
    let (status, keys) = unsafe {
        let mut res = mlx_sys::mlx_array_new();
        let status = mlx_sys::mlx_random_split_num(&mut res, key.as_ptr(), count, stream.as_ptr());
        (status, Array::from_ptr(res))
    };
    if status != 0 {
        return Err(mlx(format!("mlx_random_split_num returned {status}")));
    }
    if keys.shape() != [count, 2] {
        return Err(mlx(format!("split gave shape {:?}", keys.shape())));
    }
    Ok(keys)
}

/// Writes the tensors with metadata `{"format": "mlx"}` (what mlx-vlm's loader expects) and
/// returns each tensor's data size.
///
/// MLX's writer, like the converter's, lays the data out in its hash map's order: the bytes are
/// the same for the same tensors on one platform, but the data order differs from the
/// converter's file (same tensors, other offsets).
pub fn save(
    path: &Path,
    tensors: &BTreeMap<String, Array>,
) -> Result<Vec<(String, usize)>, TinyError> {
    let metadata = HashMap::from([("format".to_string(), "mlx".to_string())]);
    Array::save_safetensors(tensors.iter(), &metadata, path).map_err(|e| TinyError::Save {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // Saving evaluated every tensor, so their sizes are known now.
    Ok(tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.nbytes()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_beyond_mlxs_element_limit_are_drawn_in_slices_of_whole_rows_under_it() {
        // Gemma 4 E2B's per-layer embedding table: 2.35e9 values, one draw would overflow.
        let rows = slice_rows(&[262_144, 8_960]);
        assert!(rows > 0 && rows as usize * 8_960 <= MAX_SLICE, "{rows}");
        assert!(262_144 / rows as usize >= 2);
        // Anything under the limit is one draw, as the Python builder makes it.
        assert_eq!(slice_rows(&[262_144, 1_536]), 262_144);
        assert_eq!(slice_rows(&[64]), 64);
        assert_eq!(slice_rows(&[]), 1);
    }

    #[test]
    fn split_gives_one_distinct_key_per_parameter_and_matches_mlx_rs_split() {
        let keys = split_keys(7, 5).unwrap();
        assert_eq!(keys.shape(), &[5, 2]);
        assert_eq!(keys.dtype(), Dtype::Uint32);
        let rows: Vec<Vec<u32>> = (0..5)
            .map(|i| keys.index(i).as_slice::<u32>().to_vec())
            .collect();
        for i in 0..5 {
            for j in i + 1..5 {
                assert_ne!(rows[i], rows[j]);
            }
        }
        // mlx-rs's own split(key, 2) is the two-key case of the same MLX call.
        let (a, b) = random::split(random::key(7).unwrap(), 2).unwrap();
        let two = split_keys(7, 2).unwrap();
        assert_eq!(a.as_slice::<u32>(), two.index(0).as_slice::<u32>());
        assert_eq!(b.as_slice::<u32>(), two.index(1).as_slice::<u32>());
    }

    #[test]
    fn initialisers_have_the_documented_ranges() {
        let r = random::normal::<f32>(&[4096][..], None, None, &random::key(3).unwrap()).unwrap();
        let stats = |init| {
            let v = initialise(&r, init).unwrap();
            let v = v.as_slice::<f32>();
            let n = v.len() as f32;
            let mean = v.iter().sum::<f32>() / n;
            let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n).sqrt();
            let (lo, hi) = v
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
            (mean, std, lo, hi)
        };
        let (mean, std, _, _) = stats(Init::Linear);
        assert!(
            mean.abs() < 0.01 && (std - 0.08).abs() < 0.005,
            "{mean} {std}"
        );
        let (mean, std, _, _) = stats(Init::AroundOne);
        assert!(
            (mean - 1.0).abs() < 0.01 && (std - 0.1).abs() < 0.01,
            "{mean} {std}"
        );
        let (_, _, lo, hi) = stats(Init::ClipMax);
        assert!(lo >= 1.5 && hi > 2.0, "{lo} {hi}");
        let (_, _, lo, hi) = stats(Init::ClipMin);
        assert!(hi <= -1.5 && lo < -2.0, "{lo} {hi}");
    }
}
