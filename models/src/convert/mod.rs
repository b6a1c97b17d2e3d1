//! GGUF → MLX checkpoint conversion (`vlmbench convert`), for the Gemma 3 text family.
//!
//! Output, in the mlx-community layout mlx-lm loads: `config.json` (`model_type: gemma3_text`,
//! hyperparameters from the GGUF metadata, the `quantization` block), `model.safetensors`
//! (metadata `{"format": "mlx"}`), `tokenizer.json`, `tokenizer_config.json` and
//! `generation_config.json`.

pub mod config;
mod error;
pub mod names;
pub mod tokenizer;
pub mod weights;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use mlx_rs::{Array, Dtype};
use serde_json::{json, Map, Value};

pub use config::Gemma3Params;
pub use error::{ConvertError, Result};
pub use tokenizer::VocabCheck;
pub use weights::{NormStats, QuantMode};

use crate::checkpoint::QuantParams;
use crate::gguf::{GgufFile, TensorInfo};
use error::io;

/// Bumped whenever the converter's output for the same input changes (caches key on it).
pub const FORMAT_VERSION: u32 = 1;

pub const SUPPORTED_ARCHITECTURES: &str = "gemma3";

#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub quant: QuantMode,
    /// dtype of the dense tensors and of quantization scales/biases.
    pub dtype: Dtype,
    /// Directory with `tokenizer.json` + `tokenizer_config.json` (default: the GGUF's directory).
    pub tokenizer_dir: Option<PathBuf>,
    /// Write into a non-empty output directory.
    pub overwrite: bool,
}

/// What a conversion did.
#[derive(Debug, Clone)]
pub struct ConvertSummary {
    pub out: PathBuf,
    pub params: Gemma3Params,
    /// Tensors per conversion kind (`Q5_0 -> affine 5-bit g32 (exact)` -> 81).
    pub kinds: BTreeMap<String, usize>,
    pub vocab: VocabCheck,
    pub norms: NormStats,
    pub notes: Vec<String>,
}

fn check_out_dir(out: &Path, overwrite: bool) -> Result<()> {
    if out.exists() {
        if !out.is_dir() {
            return Err(ConvertError::Output {
                path: out.into(),
                reason: "exists and is not a directory".into(),
            });
        }
        let non_empty = std::fs::read_dir(out).map_err(io(out))?.next().is_some();
        if non_empty && !overwrite {
            return Err(ConvertError::Output {
                path: out.into(),
                reason: "exists and is not empty (pass --force to write into it)".into(),
            });
        }
    }
    std::fs::create_dir_all(out).map_err(io(out))
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).expect("JSON values serialize");
    std::fs::write(path, text + "\n").map_err(io(path))
}

/// The `quantization` block: the most common parameters as the default, per-module entries for
/// the modules quantized otherwise. `None` when nothing is quantized.
fn quantization_block(modules: &BTreeMap<String, QuantParams>) -> Option<Value> {
    let mut counts: BTreeMap<(i32, i32), usize> = BTreeMap::new();
    for q in modules.values() {
        *counts.entry((q.bits, q.group_size)).or_default() += 1;
    }
    let (&(bits, group_size), _) = counts.iter().max_by_key(|(k, n)| (**n, **k))?;
    let mut block = Map::new();
    block.insert("group_size".into(), json!(group_size));
    block.insert("bits".into(), json!(bits));
    block.insert("mode".into(), json!("affine"));
    for (m, q) in modules {
        if (q.bits, q.group_size) != (bits, group_size) {
            block.insert(
                m.clone(),
                json!({"group_size": q.group_size, "bits": q.bits, "mode": "affine"}),
            );
        }
    }
    Some(Value::Object(block))
}

/// Convert the GGUF at `src` into an MLX checkpoint directory `out`.
pub fn convert_gguf(src: &Path, out: &Path, opts: &ConvertOptions) -> Result<ConvertSummary> {
    if !matches!(
        opts.dtype,
        Dtype::Float32 | Dtype::Bfloat16 | Dtype::Float16
    ) {
        return Err(ConvertError::Options(format!(
            "dtype {:?} is not a float dtype (float32, bfloat16, float16)",
            opts.dtype
        )));
    }
    let f = GgufFile::open(src)?;
    let arch = f.get_str("general.architecture")?.unwrap_or("");
    if arch != "gemma3" {
        return Err(ConvertError::UnsupportedArchitecture {
            path: src.into(),
            arch: arch.into(),
            supported: SUPPORTED_ARCHITECTURES,
        });
    }
    let embd = f
        .tensor("token_embd.weight")
        .ok_or_else(|| ConvertError::Tensor {
            path: src.into(),
            tensor: "token_embd.weight".into(),
            reason: "missing".into(),
        })?;
    let vocab_size = embd.shape()[0];
    let params = Gemma3Params::from_gguf(&f, vocab_size, f.tensor("output.weight").is_some())?;

    // Tokenizer first: a mismatch should fail before minutes of weight conversion.
    let tok_dir = tokenizer::find_dir(opts.tokenizer_dir.as_deref(), src)?;
    let tok_path = tok_dir.join("tokenizer.json");
    let tok = tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| ConvertError::Tokenizer {
        path: tok_path.clone(),
        reason: e.to_string(),
    })?;
    let vocab = tokenizer::check_vocab(&f, &tok, &tok_path)?;
    let mut notes = vec![];
    let tok_config =
        tokenizer::tokenizer_config(&f, &tok_dir.join("tokenizer_config.json"), &mut notes)?;
    let end_of_turn = tok
        .token_to_id("<end_of_turn>")
        .map(i64::from)
        .filter(|&id| (id as u64) < vocab_size);
    let stop_ids = params.stop_ids(end_of_turn);

    check_out_dir(out, opts.overwrite)?;

    let mapped = map_tensors(&f, src, &params)?;
    let mut arrays: Vec<(String, Array)> = vec![];
    let mut quantized: BTreeMap<String, QuantParams> = BTreeMap::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut norms = NormStats::default();
    for (t, m, shape) in &mapped {
        let c = weights::convert(&f, t, m, shape, opts.quant, opts.dtype, &mut norms)?;
        if let Some(q) = c.quant {
            quantized.insert(m.module.clone(), q);
        }
        *kinds.entry(c.how).or_default() += 1;
        arrays.extend(c.arrays);
    }
    notes.push(format!(
        "norm weights: 1 subtracted (llama.cpp stores Gemma's 1 + w); after it {}/{} values are bf16-exact (stored: {})",
        norms.bf16_exact_minus_one, norms.values, norms.bf16_exact_stored
    ));

    let weights_path = out.join("model.safetensors");
    let meta = HashMap::from([("format".to_string(), "mlx".to_string())]);
    Array::save_safetensors(
        arrays.iter().map(|(k, a)| (k.as_str(), a)),
        &meta,
        &weights_path,
    )
    .map_err(|e| ConvertError::Save {
        path: weights_path.clone(),
        reason: e.to_string(),
    })?;
    drop(arrays);

    let mut cfg = params.config_json(&stop_ids);
    cfg.insert(
        "torch_dtype".into(),
        json!(crate::dtype::dtype_name(opts.dtype)),
    );
    if let Some(q) = quantization_block(&quantized) {
        cfg.insert("quantization".into(), q.clone());
        cfg.insert("quantization_config".into(), q);
    }
    write_json(&out.join("config.json"), &Value::Object(cfg))?;
    write_json(
        &out.join("generation_config.json"),
        &params.generation_config_json(&stop_ids),
    )?;
    write_json(&out.join("tokenizer_config.json"), &tok_config)?;
    std::fs::copy(&tok_path, out.join("tokenizer.json")).map_err(io(&tok_path))?;
    if vocab.space_spelling > 0 {
        notes.push(format!(
            "tokenizer: {} GGUF pieces spell spaces as ' ' where tokenizer.json has '\u{2581}' (same tokens)",
            vocab.space_spelling
        ));
    }
    Ok(ConvertSummary {
        out: out.into(),
        params,
        kinds,
        vocab,
        norms,
        notes,
    })
}

/// Every tensor of `f` with where it goes and its shape there: an error for a tensor that does
/// not map, or has the wrong shape, and for a tensor of the model that the file lacks.
fn map_tensors<'f>(
    f: &'f GgufFile,
    src: &Path,
    params: &Gemma3Params,
) -> Result<Vec<(&'f TensorInfo, names::Mapped, Vec<u64>)>> {
    let tensor_error = |tensor: &str, reason: String| ConvertError::Tensor {
        path: src.into(),
        tensor: tensor.into(),
        reason,
    };
    let mut mapped = vec![];
    for t in &f.tensors {
        let m = names::gemma3(&t.name).ok_or_else(|| ConvertError::UnknownTensor {
            path: src.into(),
            tensor: t.name.clone(),
            arch: "gemma3",
        })?;
        if m.layer
            .is_some_and(|l| l as u64 >= params.num_hidden_layers)
        {
            let blocks = params.num_hidden_layers;
            let reason = format!("layer index beyond block_count {blocks}");
            return Err(tensor_error(&t.name, reason));
        }
        let want = names::expected_shape(&m, params);
        if t.shape() != want {
            let reason = format!(
                "shape {:?} (GGML dims {:?}), expected {want:?}",
                t.shape(),
                t.dims
            );
            return Err(tensor_error(&t.name, reason));
        }
        mapped.push((t, m, want));
    }
    let have: std::collections::HashSet<&str> =
        mapped.iter().map(|(t, _, _)| t.name.as_str()).collect();
    let layers = (0..params.num_hidden_layers).flat_map(|l| {
        LAYER_TENSORS
            .iter()
            .map(move |leaf| format!("blk.{l}.{leaf}.weight"))
    });
    let mut required = ["token_embd.weight", "output_norm.weight"]
        .map(String::from)
        .into_iter()
        .chain(layers);
    if let Some(missing) = required.find(|r| !have.contains(r.as_str())) {
        return Err(tensor_error(&missing, "missing".into()));
    }
    Ok(mapped)
}

/// The tensors every Gemma 3 block of a GGUF has (`blk.N.<name>.weight`).
const LAYER_TENSORS: [&str; 13] = [
    "attn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "attn_q_norm",
    "attn_k_norm",
    "post_attention_norm",
    "ffn_norm",
    "post_ffw_norm",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

#[cfg(test)]
mod tests;
