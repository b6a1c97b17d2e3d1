#!/usr/bin/env python3
"""Build a tiny random Gemma 4 checkpoint in the mlx-community 4-bit layout.

    tools/reference/.venv/bin/python tools/reference/build_tiny_gemma4.py OUT_DIR --variant dense|moe|ple [--seed N]

Steps:
  1. tokenizer (Gemma-style BPE with byte fallback; every Gemma 4 special token at a small id),
     chat template, generation_config.json, processor_config.json;
  2. config.json for the variant (see VARIANTS below);
  3. random weights: the module tree of mlx_vlm.models.gemma4.Model, every parameter redrawn from a
     seeded MLX generator (norms, scalars and clip bounds perturbed so the model is not degenerate),
     written as an HF-named bf16 safetensors (MoE experts in HF's fused `experts.gate_up_proj` form);
  4. mlx-vlm's own converter: `python -m mlx_vlm convert --hf-path BF16 --mlx-path OUT_DIR -q
     --q-bits 4 --q-group-size 64` (the recipe of the mlx-community *-4bit repos).

The variants mirror the published families at toy size (all quantized Linear input dims are multiples
of 64, hidden 128 = two quantization groups per row):
  dense  31B flavour: sliding/full layers, global head dim, attention_k_eq_v, proportional RoPE 0.25 on
         full layers, use_bidirectional_attention "vision", vision tower with standardize.
  moe    26B-A4B flavour: the same attention plus enable_moe_block (4 experts, top-2, moe width 64);
         the converter quantizes router.proj at 8 bits.
  ple    E2B flavour: per-layer embeddings (hidden_size_per_layer_input 64), KV sharing (last 3 layers),
         use_double_wide_mlp, no k_eq_v, vision with clipped linears and no standardize, no audio.
sliding_window is 16 everywhere so short prompts wrap the rotating cache.
The output is deterministic for a given seed (same bytes on rerun).
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import mlx.core as mx  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

HERE = Path(__file__).resolve().parent

# ----------------------------------------------------------------------------------------------
# Tokenizer: Gemma-style BPE with the Gemma 4 special tokens at small ids (real ids in comments).
# ----------------------------------------------------------------------------------------------
SPECIALS = [
    "<pad>", "<eos>", "<bos>", "<unk>", "<mask>",          # 0..4 (same ids as real Gemma)
    "<|turn>", "<turn|>",                                   # 5, 6    (real 105, 106)
    "<|image>", "<image|>", "<|image|>",                    # 7, 8, 9 (real 255999, 258882, 258880)
    "<|audio>", "<audio|>", "<|audio|>",                    # 10..12  (real 256000, 258883, 258881)
    "<|video|>",                                            # 13      (real 258884)
    "<|channel>", "<channel|>", "<|think|>",                # 14..16  (real 100, 101, 98)
    "<|tool>", "<tool|>", "<|tool_call>", "<tool_call|>",   # 17..20
    "<|tool_response>", "<tool_response|>", '<|"|>',        # 21..23  (real <|tool_response> = 50)
]
VOCAB_SIZE = 384
MERGES = [("▁", "t"), ("h", "e"), ("▁t", "he"), ("i", "n"), ("▁", "a"), ("e", "r"), ("o", "n"), ("a", "t")]

SLIDING, FULL = "sliding_attention", "full_attention"
ROPE = {
    FULL: {"partial_rotary_factor": 0.25, "rope_theta": 1000000.0, "rope_type": "proportional"},
    SLIDING: {"rope_theta": 10000.0, "rope_type": "default"},
}

# Text config fields shared by all variants (toy sizes).
TEXT_BASE = {
    "model_type": "gemma4_text",
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_attention_heads": 4,
    "head_dim": 32,
    "global_head_dim": 64,
    "sliding_window": 16,
    "vocab_size": VOCAB_SIZE,
    "vocab_size_per_layer_input": VOCAB_SIZE,
    "final_logit_softcapping": 30.0,
    "hidden_activation": "gelu_pytorch_tanh",
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 4096,
    "rope_parameters": ROPE,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 1,
}

VARIANTS = {
    # 31B dense flavour
    "dense": {
        "text": {
            "num_hidden_layers": 6,
            "layer_types": [SLIDING, SLIDING, FULL, SLIDING, SLIDING, FULL],
            "num_key_value_heads": 2,
            "num_global_key_value_heads": 1,
            "attention_k_eq_v": True,
            "hidden_size_per_layer_input": 0,
            "num_kv_shared_layers": 0,
            "use_double_wide_mlp": False,
            "enable_moe_block": False,
            "use_bidirectional_attention": "vision",
        },
        "vision": {"use_clipped_linears": False, "standardize": True},
        "large_template": True,
    },
    # 26B-A4B flavour (MoE)
    "moe": {
        "text": {
            "num_hidden_layers": 6,
            "layer_types": [SLIDING, SLIDING, FULL, SLIDING, SLIDING, FULL],
            "intermediate_size": 128,           # the always-on dense MLP beside the experts
            "num_key_value_heads": 2,
            "num_global_key_value_heads": 1,
            "attention_k_eq_v": True,
            "hidden_size_per_layer_input": 0,
            "num_kv_shared_layers": 0,
            "use_double_wide_mlp": False,
            "enable_moe_block": True,
            "num_experts": 4,
            "top_k_experts": 2,
            "moe_intermediate_size": 64,
            "use_bidirectional_attention": "vision",
        },
        "vision": {"use_clipped_linears": False, "standardize": True},
        "large_template": True,
    },
    # E2B flavour (per-layer embeddings, KV sharing, double-wide MLP on shared layers)
    "ple": {
        "text": {
            "num_hidden_layers": 8,
            "layer_types": [SLIDING, SLIDING, FULL, SLIDING, SLIDING, FULL, SLIDING, FULL],
            "num_key_value_heads": 1,
            "num_global_key_value_heads": None,
            "attention_k_eq_v": False,
            "hidden_size_per_layer_input": 64,
            "num_kv_shared_layers": 3,          # layers 5,6,7 reuse the KV of layers 2,4,2
            "use_double_wide_mlp": True,
            "enable_moe_block": False,
            "use_bidirectional_attention": None,
        },
        "vision": {"use_clipped_linears": True, "standardize": False},
        "large_template": False,
    },
}

VISION_BASE = {
    "model_type": "gemma4_vision",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "global_head_dim": 32,
    "hidden_activation": "gelu_pytorch_tanh",
    "rms_norm_eps": 1e-6,
    "patch_size": 16,
    "pooling_kernel_size": 3,
    "position_embedding_size": 64,
    "default_output_length": 16,
    "rope_parameters": {"rope_theta": 100.0, "rope_type": "default"},
    "attention_bias": False,
}
MAX_SOFT_TOKENS = 16
EMBED_STD = 0.05


def chat_template(large: bool) -> str:
    """The compact Gemma 4 template. Large-model (26B/31B) semantics close the generation prompt with an
    empty thought channel when thinking is off; the E2B/E4B template ends at '<|turn>model\\n'."""
    text = (HERE / "gemma4_chat_template.jinja").read_text()
    if not large:
        marker = "{%- if not enable_thinking | default(false) -%}"
        assert marker in text
        text = text.replace(marker, "{%- if false -%}")
    return text


def base_vocab(alphabet=()) -> dict:
    """Specials, the 256 byte-fallback tokens, '▁', printable ASCII and `alphabet`, in id order."""
    vocab = {}
    for t in SPECIALS:
        vocab[t] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for c in ["▁"] + [chr(c) for c in range(33, 127)] + list(alphabet):
        if c not in vocab:
            vocab[c] = len(vocab)
    return vocab


def pad_vocab(vocab: dict, size: int) -> dict:
    i = 0
    while len(vocab) < size:
        vocab[f"<unused{i}>"] = len(vocab)
        i += 1
    return vocab


def build_tokenizer(path: Path, template: str, vocab=None, merges=None):
    """The Gemma-style tokenizer; by default this file's vocabulary and its eight merges."""
    from transformers import GemmaTokenizer

    if vocab is None:
        merges = MERGES
        vocab = base_vocab()
        for a, b in MERGES:
            vocab[a + b] = len(vocab)
        pad_vocab(vocab, VOCAB_SIZE)
    tok = GemmaTokenizer(
        vocab=vocab,
        merges=merges,
        add_bos_token=False,  # IT checkpoints: the chat template writes <bos>
        padding_side="left",
        extra_special_tokens={
            "image_token": "<|image|>", "boi_token": "<|image>", "eoi_token": "<image|>",
            "audio_token": "<|audio|>", "boa_token": "<|audio>", "eoa_token": "<audio|>",
            "sot_token": "<|turn>", "eot_token": "<turn|>",
            "soc_token": "<|channel>", "eoc_token": "<channel|>", "think_token": "<|think|>",
            "escape_token": '<|"|>', "str_token": "<|tool_response>", "etr_token": "<tool_response|>",
            "stc_token": "<|tool_call>", "etc_token": "<tool_call|>", "std_token": "<|tool>", "etd_token": "<tool|>",
        },
        chat_template=template,
    )
    tok.add_special_tokens({"additional_special_tokens": ["<|video|>"]})
    tok.save_pretrained(str(path))
    (path / "chat_template.jinja").write_text(template)
    return tok


def make_config(variant: str, tok) -> dict:
    v = VARIANTS[variant]
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIALS}
    text = {**TEXT_BASE, **v["text"]}
    vision = {**VISION_BASE, **v["vision"]}
    return {
        "architectures": ["Gemma4ForConditionalGeneration"],
        "model_type": "gemma4",
        "text_config": text,
        "vision_config": vision,
        "audio_config": None,
        "image_token_id": ids["<|image|>"],
        "boi_token_id": ids["<|image>"],
        "eoi_token_id": ids["<image|>"],
        "audio_token_id": ids["<|audio|>"],
        "boa_token_id": ids["<|audio>"],
        "eoa_token_id": ids["<audio|>"],
        "eoa_token_index": ids["<audio|>"],
        "video_token_id": ids["<|video|>"],
        "vision_soft_tokens_per_image": MAX_SOFT_TOKENS,
        "eos_token_id": [ids["<eos>"], ids["<turn|>"]],
        "pad_token_id": 0,
        "bos_token_id": 2,
        "tie_word_embeddings": True,
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
    }


def random_params(config: dict, seed: int):
    """Module tree of mlx-vlm's Gemma 4 with every parameter redrawn (bf16), in tree order."""
    from mlx_vlm.models import gemma4
    from mlx_vlm.utils import update_module_configs

    mc = gemma4.ModelConfig.from_dict(config)
    mc = update_module_configs(mc, gemma4, config, ["text", "vision", "audio"])
    model = gemma4.Model(mc)
    flat = tree_flatten(model.parameters())
    keys = mx.random.split(mx.random.key(seed), len(flat))  # one key per parameter, in tree order
    params = OrderedDict()
    for i, (k, v) in enumerate(flat):
        r = mx.random.normal(v.shape, key=keys[i])
        leaf = k.rsplit(".", 1)[-1]
        if leaf == "layer_scalar":
            nv = 1.0 + 0.1 * r                      # per-layer residual multiplier, not exactly 1
        elif leaf in ("input_min", "output_min"):    # ClippableLinear bounds: tight enough to clip sometimes
            nv = -(1.5 + 0.5 * mx.abs(r))
        elif leaf in ("input_max", "output_max"):
            nv = 1.5 + 0.5 * mx.abs(r)
        elif "norm" in k or k.endswith("std_scale") or k.endswith("router.scale") or leaf == "per_expert_scale":
            nv = 1.0 + 0.1 * r
        elif k.endswith("std_bias"):
            nv = 0.1 * r
        elif "position_embedding_table" in k:
            nv = 0.5 * r
        elif "embed_tokens" in k:                   # embed_tokens and embed_tokens_per_layer
            nv = EMBED_STD * r
        else:
            nv = 0.08 * r
        params[k] = nv.astype(mx.bfloat16)
    return params


def to_hf(params: "OrderedDict[str, mx.array]") -> "OrderedDict[str, mx.array]":
    """MLX module paths -> the names of a google/gemma-4-* safetensors (what the converter reads)."""
    out = OrderedDict()
    for k, v in params.items():
        if k.startswith("language_model.model."):
            name = "model.language_model." + k[len("language_model.model."):]
        else:
            name = "model." + k                      # vision_tower.*, embed_vision.*
        if ".experts.switch_glu." in name:
            base, proj = name.split(".switch_glu.")
            if proj == "gate_proj.weight":           # HF fuses gate and up: [E, 2*I, H], gate rows first
                up = params[k.replace("gate_proj", "up_proj")]
                out[base + ".gate_up_proj"] = mx.concatenate([v, up], axis=1)
            elif proj == "down_proj.weight":
                out[base + ".down_proj"] = v
            continue
        out[name] = v
    return out


def write_side_files(d: Path, config: dict, tok):
    (d / "config.json").write_text(json.dumps(config, indent=2))
    (d / "generation_config.json").write_text(json.dumps({
        "bos_token_id": 2, "pad_token_id": 0,
        "eos_token_id": config["eos_token_id"] + [tok.convert_tokens_to_ids("<|tool_response>")],
        "do_sample": True, "temperature": 1.0, "top_k": 64, "top_p": 0.95,
    }, indent=2))
    (d / "processor_config.json").write_text(json.dumps({
        "processor_class": "Gemma4Processor",
        "image_seq_length": MAX_SOFT_TOKENS,
        "audio_seq_length": 750,
        "image_processor": {
            "image_processor_type": "Gemma4ImageProcessor",
            "do_convert_rgb": True, "do_normalize": False, "do_rescale": True, "do_resize": True,
            "image_mean": [0.0, 0.0, 0.0], "image_std": [1.0, 1.0, 1.0],
            "rescale_factor": 1 / 255, "resample": 3,
            "patch_size": 16, "pooling_kernel_size": 3, "max_soft_tokens": MAX_SOFT_TOKENS,
        },
    }, indent=2))


def summarize(out: Path) -> str:
    """Key list of the converted checkpoint, layer indices folded: 'name  dtype shape  [layers]'."""
    import re

    cfg = json.loads((out / "config.json").read_text())
    w = mx.load(str(out / "model.safetensors"))
    groups = OrderedDict()
    for k in sorted(w):
        m = re.match(r"(.*\.layers\.)(\d+)(\..*)", k)
        name, idx = (m.group(1) + "*" + m.group(3), int(m.group(2))) if m else (k, None)
        sig = f"{str(w[k].dtype).replace('mlx.core.', ''):8s} {tuple(w[k].shape)}"
        groups.setdefault((name, sig), []).append(idx)
    lines = [f"{len(w)} tensors; quantization: {json.dumps(cfg.get('quantization'))}"]
    for (name, sig), idxs in groups.items():
        lay = "" if idxs == [None] else f"  layers {','.join(map(str, idxs))}"
        lines.append(f"  {name:78s} {sig}{lay}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep-bf16", action="store_true", help="keep the HF-named bf16 source as OUT_DIR.bf16")
    ap.add_argument("--quiet", action="store_true", help="do not print the key summary")
    args = ap.parse_args()

    out = args.out_dir.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tiny-gemma4-bf16-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        tok = build_tokenizer(src, chat_template(VARIANTS[args.variant]["large_template"]))
        config = make_config(args.variant, tok)
        write_side_files(src, config, tok)
        hf = to_hf(random_params(config, args.seed))
        mx.save_safetensors(str(src / "model.safetensors"), dict(hf), metadata={"format": "pt"})
        cmd = [sys.executable, "-m", "mlx_vlm", "convert", "--hf-path", str(src), "--mlx-path", str(out),
               "-q", "--q-bits", "4", "--q-group-size", "64"]
        print("[build] $", " ".join(cmd).replace(tmp, "$TMP"), file=sys.stderr)
        # The converter prints progress on stdout: keep our stdout for the summary.
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        if args.keep_bf16:
            dst = out.with_name(out.name + ".bf16")
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(src, dst)

    digest = hashlib.sha256()
    for f in sorted(out.iterdir()):
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    print(f"[build] {args.variant} seed={args.seed} -> {out}  (files sha256 {digest.hexdigest()[:16]})", file=sys.stderr)
    if not args.quiet:
        print(summarize(out))


if __name__ == "__main__":
    main()
