//! The export on tiny random checkpoints: read back with vlmbench's own GGUF reader and lossless
//! import, every language-model tensor must be the source's (codes, scales and biases for Q4_1;
//! values for the rest), and scales that fp16 cannot hold must be refused or reported.

use std::path::{Path, PathBuf};

use mlx_rs::Array;

use super::source::{Dtype, Source};
use super::*;
use crate::gguf::affine::to_affine;
use crate::gguf::GgufFile;
use crate::tiny_checkpoint::{write_tiny_checkpoint, TinyVariant};

fn tiny(variant: TinyVariant) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    write_tiny_checkpoint(&ckpt, variant, 0).unwrap();
    (dir, ckpt)
}

fn opts(ty: GgufType) -> ExportOptions {
    ExportOptions {
        ty,
        allow_rounding: false,
        overwrite: false,
    }
}

/// MLX's own dequantization of a module (not this exporter's), with scales and biases in
/// float32 as vlmbench computes in float32 (bf16 ones would round the products to bf16).
fn mlx_dequantized(ckpt: &Checkpoint, module: &str) -> Vec<f32> {
    let q = ckpt.module_quantization(module).unwrap().unwrap();
    let t = |p: &str| ckpt.tensor(&format!("{module}.{p}")).unwrap().clone();
    let f32 = |a: Array| a.as_dtype(mlx_rs::Dtype::Float32).unwrap();
    let w = mlx_rs::ops::dequantize(
        t("weight"),
        f32(t("scales")),
        &f32(t("biases")),
        q.group_size,
        q.bits,
    )
    .unwrap();
    w.as_slice::<f32>().to_vec()
}

fn stored_f32(ckpt: &Checkpoint, name: &str) -> Vec<f32> {
    let a: Array = ckpt
        .tensor(name)
        .unwrap()
        .as_dtype(mlx_rs::Dtype::Float32)
        .unwrap();
    a.as_slice::<f32>().to_vec()
}

#[test]
fn q4_1_export_reads_back_identical_to_the_source() {
    for variant in [TinyVariant::Dense, TinyVariant::Moe] {
        let (dir, ckpt_dir) = tiny(variant);
        let out = dir.path().join("tiny.gguf");
        let report = export_gemma4(&ckpt_dir, &out, &opts(GgufType::Q4_1)).unwrap();
        assert_eq!(
            report.exactness().1,
            0,
            "{variant}: bf16 scales of the tiny model are fp16-exact"
        );
        assert!(
            report.notes.iter().any(|n| n.contains("vision_tower")),
            "{variant}"
        );

        let ckpt = Checkpoint::open(&ckpt_dir).unwrap();
        let src = Source::open(&ckpt).unwrap();
        let f = GgufFile::open(&out).unwrap();
        assert_eq!(f.get_str("general.architecture").unwrap(), Some("gemma4"));
        assert_eq!(f.get_int("gemma4.block_count").unwrap(), Some(6));
        assert_eq!(f.get_int("gemma4.attention.key_length").unwrap(), Some(64));
        assert_eq!(
            f.get_int("gemma4.attention.key_length_swa").unwrap(),
            Some(32)
        );
        assert_eq!(f.tensors.len(), report.tensors.len());
        let mut q4_1 = 0;
        for r in &report.tensors {
            let info = f.tensor(&r.name).unwrap_or_else(|| panic!("{}", r.name));
            assert_eq!(info.shape(), r.shape, "{}", r.name);
            assert_eq!(info.ggml_type, r.ty, "{}", r.name);
            let raw = f.read_raw(info).unwrap();
            let n = info.n_elements() as usize;
            if r.ty == GgmlType::Q4_1 {
                q4_1 += 1;
                // The lossless import: codes, scales and biases, each as stored.
                let a = to_affine(GgmlType::Q4_1, &raw, n).unwrap();
                let q = ckpt.module_quantization(&r.source).unwrap().unwrap();
                let w = src.get(&format!("{}.weight", r.source)).unwrap();
                let words = src
                    .read(&format!("{}.weight", r.source), 0, w.numel() * 4)
                    .unwrap();
                let mut codes = vec![];
                unpack(&words, 4, n, &mut codes);
                assert_eq!(a.codes, codes, "{}: codes", r.name);
                let per = (q.group_size / 32) as usize;
                for part in ["scales", "biases"] {
                    let want: Vec<f32> = src
                        .read_f32(&format!("{}.{part}", r.source))
                        .unwrap()
                        .iter()
                        .flat_map(|&v| std::iter::repeat_n(v, per))
                        .collect();
                    let got = if part == "scales" {
                        &a.scales
                    } else {
                        &a.biases
                    };
                    assert_eq!(got, &want, "{}: {part}", r.name);
                }
                // And the values ggml decodes are MLX's dequantized ones.
                assert_eq!(
                    f.dequantize(info).unwrap(),
                    mlx_dequantized(&ckpt, &r.source),
                    "{}",
                    r.name
                );
            } else if r.name == "rope_freqs.weight" {
                let v = f.dequantize(info).unwrap();
                // Tiny full layers: head 64, partial 0.25 -> 8 rotated pairs of 32.
                assert_eq!(v.len(), 32);
                assert!(v[..8].iter().all(|&x| x == 1.0) && v[8..].iter().all(|&x| x == 1e30));
            } else if ckpt.module_quantization(&r.source).ok().flatten().is_some() {
                // The 8-bit router: dequantized, exactly MLX's values.
                assert_eq!(r.ty, GgmlType::F32, "{}", r.name);
                assert_eq!(
                    f.dequantize(info).unwrap(),
                    mlx_dequantized(&ckpt, &r.source),
                    "{}",
                    r.name
                );
            } else {
                assert_eq!(
                    f.dequantize(info).unwrap(),
                    stored_f32(&ckpt, &r.source),
                    "{}",
                    r.name
                );
            }
        }
        assert!(q4_1 > 20, "{variant}: {q4_1} Q4_1 tensors");
        // Every language-model tensor of the checkpoint went into the file.
        let exported: std::collections::BTreeSet<&str> =
            report.tensors.iter().map(|r| r.source.as_str()).collect();
        for name in ckpt.tensor_names() {
            if name.starts_with("language_model.") {
                let module = name
                    .strip_suffix(".scales")
                    .or_else(|| name.strip_suffix(".biases"))
                    .or_else(|| {
                        ckpt.module_quantization(name.strip_suffix(".weight")?)
                            .ok()
                            .flatten()
                            .and(name.strip_suffix(".weight"))
                    })
                    .unwrap_or(name);
                assert!(exported.contains(module), "{variant}: {name} not exported");
            }
        }
        // The tokenizer arrays cover the vocabulary.
        let tokens = f
            .require("tokenizer.ggml.tokens")
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(tokens.len(), 384);
        assert_eq!(tokens[2].as_str(), Some("<bos>"));
        assert_eq!(f.get_int("tokenizer.ggml.bos_token_id").unwrap(), Some(2));
        assert!(!f
            .require("tokenizer.ggml.merges")
            .unwrap()
            .as_array()
            .unwrap()
            .is_empty());
    }
}

#[test]
fn moe_metadata_and_expert_tensors() {
    let (dir, ckpt_dir) = tiny(TinyVariant::Moe);
    let out = dir.path().join("moe.gguf");
    export_gemma4(&ckpt_dir, &out, &opts(GgufType::Q4_1)).unwrap();
    let f = GgufFile::open(&out).unwrap();
    assert_eq!(f.get_int("gemma4.expert_count").unwrap(), Some(4));
    assert_eq!(f.get_int("gemma4.expert_used_count").unwrap(), Some(2));
    let t = f.tensor("blk.0.ffn_gate_exps.weight").unwrap();
    assert_eq!(t.dims, vec![128, 64, 4]);
    assert_eq!(t.ggml_type, GgmlType::Q4_1);
    assert!(f.tensor("blk.0.ffn_down_exps.scale").is_some());
    assert!(f.tensor("blk.0.ffn_gate_inp.scale").is_some());
}

#[test]
fn q4_k_m_export_decodes_close_to_the_source() {
    let (dir, ckpt_dir) = tiny(TinyVariant::Dense);
    let out = dir.path().join("tiny-q4km.gguf");
    let report = export_gemma4(&ckpt_dir, &out, &opts(GgufType::Q4KM)).unwrap();
    let ckpt = Checkpoint::open(&ckpt_dir).unwrap();
    let f = GgufFile::open(&out).unwrap();
    for r in &report.tensors {
        let info = f.tensor(&r.name).unwrap();
        let got = f.dequantize(info).unwrap();
        let want = match ckpt.module_quantization(&r.source).ok().flatten() {
            Some(_) => mlx_dequantized(&ckpt, &r.source),
            None if r.source.is_empty() => continue,
            None => stored_f32(&ckpt, &r.source),
        };
        let range = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        // Rows of 128 are not whole Q4_K blocks: llama.cpp's fallbacks Q5_0 and Q8_0.
        match r.ty {
            GgmlType::Q4K => assert!(err <= range / 7.0, "{}: {err} of {range}", r.name),
            GgmlType::Q6K => assert!(err <= range / 30.0, "{}: {err} of {range}", r.name),
            GgmlType::Q5_0 => assert!(err <= range / 15.0, "{}: {err} of {range}", r.name),
            GgmlType::Q8_0 => assert!(err <= range / 100.0, "{}: {err} of {range}", r.name),
            GgmlType::F32 => assert_eq!(err, 0.0, "{}", r.name),
            other => panic!("{}: unexpected {other}", r.name),
        }
    }
    let ty = |n: &str| f.tensor(n).unwrap().ggml_type;
    assert_eq!(ty("token_embd.weight"), GgmlType::Q8_0, "Q6_K's fallback");
    assert_eq!(
        ty("blk.0.ffn_gate.weight"),
        GgmlType::Q5_0,
        "Q4_K's fallback"
    );
    // Rows of 256 (the MLP width): Q6_K on layers 2 and 5 of 6, as use_more_bits picks them.
    assert_eq!(ty("blk.0.ffn_down.weight"), GgmlType::Q4K);
    assert_eq!(ty("blk.2.ffn_down.weight"), GgmlType::Q6K);
    assert_eq!(ty("blk.5.ffn_down.weight"), GgmlType::Q6K);
    assert_eq!(ty("blk.0.attn_norm.weight"), GgmlType::F32);
    assert_eq!(f.get_int("general.file_type").unwrap(), Some(15));
}

#[test]
fn q4_k_m_types_follow_llama_cpp_on_e2b_rows() {
    // use_more_bits over 35 layers and 15 attn_v tensors, as llama.cpp's Q4_K_M picks them.
    let more: Vec<usize> = (0..35).filter(|&i| use_more_bits(i, 35)).collect();
    assert_eq!(
        more,
        [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 31, 32, 33, 34]
    );
    let v: Vec<usize> = (0..15).filter(|&i| use_more_bits(i, 15)).collect();
    assert_eq!(v, [0, 3, 6, 9, 12, 13, 14]);
    assert_eq!(fit(GgmlType::Q4K, 1536), GgmlType::Q4K);
    assert_eq!(fit(GgmlType::Q4K, 128), GgmlType::Q5_0);
    assert_eq!(fit(GgmlType::Q6K, 128), GgmlType::Q8_0);
    assert_eq!(fit(GgmlType::Q6K, 8960), GgmlType::Q6K);
}

/// Overwrite one bf16 scale of `module` in the tiny checkpoint's safetensors file.
fn patch_scale(ckpt_dir: &Path, module: &str, index: u64, value: f32) {
    use std::io::{Seek, SeekFrom, Write};
    let ckpt = Checkpoint::open(ckpt_dir).unwrap();
    let src = Source::open(&ckpt).unwrap();
    let e = src.get(&format!("{module}.scales")).unwrap();
    assert_eq!(e.dtype, Dtype::BF16);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&e.file)
        .unwrap();
    f.seek(SeekFrom::Start(e.start + 2 * index)).unwrap();
    f.write_all(&half::bf16::from_f32(value).to_bits().to_le_bytes())
        .unwrap();
}

#[test]
fn scales_fp16_cannot_hold_are_refused_or_rounded_and_counted() {
    let (dir, ckpt_dir) = tiny(TinyVariant::Dense);
    let module = "language_model.model.layers.1.mlp.down_proj";
    // 2^-30: a bf16 normal, below fp16's smallest subnormal.
    patch_scale(&ckpt_dir, module, 5, 2f32.powi(-30));
    let out = dir.path().join("x.gguf");
    let err = export_gemma4(&ckpt_dir, &out, &opts(GgufType::Q4_1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 scales/biases in 1 tensor are not exactly representable in fp16")
            && err.contains(module)
            && err.contains("--allow-rounding"),
        "{err}"
    );
    assert!(!out.exists() && !dir.path().join("x.gguf.partial").exists());

    let rounding = ExportOptions {
        allow_rounding: true,
        ..opts(GgufType::Q4_1)
    };
    let report = export_gemma4(&ckpt_dir, &out, &rounding).unwrap();
    let r = report.tensors.iter().find(|t| t.source == module).unwrap();
    assert_eq!((r.inexact, r.out_of_range), (1, 0));
    assert_eq!(report.exactness().1, 1);
    assert!(report.notes.iter().any(|n| n.contains("rounded")));
    // The other formats do not need fp16 scales.
    export_gemma4(
        &ckpt_dir,
        &dir.path().join("f32.gguf"),
        &opts(GgufType::F32),
    )
    .unwrap();

    // Beyond fp16's range: refused even with rounding allowed.
    patch_scale(&ckpt_dir, module, 6, 1.0e6);
    let err = export_gemma4(
        &ckpt_dir,
        &dir.path().join("y.gguf"),
        &ExportOptions {
            overwrite: true,
            ..rounding
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("1 out of its range;") && err.contains("q4_k_m or f32"),
        "{err}"
    );
    // NaN in the checkpoint: said so.
    patch_scale(&ckpt_dir, module, 6, f32::NAN);
    let err = export_gemma4(&ckpt_dir, &dir.path().join("z.gguf"), &rounding)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 of them NaN or infinite in the checkpoint"),
        "{err}"
    );
}

#[test]
fn kv_sharing_that_llama_cpp_would_read_from_other_layers_is_refused() {
    // The tiny PLE layers 5, 6, 7 reuse layers 2, 4, 2; llama.cpp would use 4, 3, 4.
    let (dir, ckpt_dir) = tiny(TinyVariant::Ple);
    let err = export_gemma4(&ckpt_dir, &dir.path().join("p.gguf"), &opts(GgufType::Q4_1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("KV-shared layer 5 (full_attention) reuses layer 2's KV")
            && err.contains("llama.cpp's gemma4 reuses layer 4"),
        "{err}"
    );
}

#[test]
fn an_existing_output_is_kept_without_overwrite() {
    let (dir, ckpt_dir) = tiny(TinyVariant::Dense);
    let out = dir.path().join("o.gguf");
    std::fs::write(&out, b"keep").unwrap();
    let err = export_gemma4(&ckpt_dir, &out, &opts(GgufType::F32)).unwrap_err();
    assert!(err.to_string().contains("pass --force"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep");
}

#[test]
fn unpack_reads_mlx_packing_of_every_width() {
    for bits in [2u32, 3, 4, 5, 6, 8] {
        let codes: Vec<u8> = (0..256u32)
            .map(|i| ((i * 37 + 11) % (1 << bits)) as u8)
            .collect();
        let words: Vec<u8> = crate::gguf::affine::pack_codes(&codes, bits as i32)
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        let mut got = vec![];
        unpack(&words, bits, codes.len(), &mut got);
        assert_eq!(got, codes, "{bits}-bit");
    }
}
