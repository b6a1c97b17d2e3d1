#!/usr/bin/env python3
"""Build a tiny random Gemma 4 checkpoint (mlx-community 4-bit layout) for the text-decoder parity tests.

Adapted from shared/design/reference-scripts/build_tiny_gemma4.py, with one flag-set per variant family:
  dense  31B-like: k_eq_v full layers with their own KV head count, bidirectional vision attention
  moe    26B-A4B-like: dense flags + MoE block (router 8-bit, experts 4-bit via SwitchGLU)
  ple    E2B-like: per-layer embeddings, KV sharing (last 2 layers), double-wide MLP on shared layers

Usage: python build_tiny_gemma4_text.py VARIANT OUT_DIR
Writes OUT_DIR/bf16 (HF names) and OUT_DIR/q4 (converted by mlx_vlm.convert -q --q-bits 4 --q-group-size 64).
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

VARIANT = sys.argv[1]
OUT = Path(sys.argv[2])
BF16 = OUT / "bf16"
Q4 = OUT / "q4"
HERE = Path(__file__).parent

SPECIALS = [
    "<pad>", "<eos>", "<bos>", "<unk>", "<mask>",
    "<|turn>", "<turn|>",
    "<|image>", "<image|>", "<|image|>",
    "<|audio>", "<audio|>", "<|audio|>",
    "<|video|>",
    "<|channel>", "<channel|>", "<|think|>",
    "<|tool>", "<tool|>", "<|tool_call>", "<tool_call|>",
    "<|tool_response>", "<tool_response|>", '<|"|>',
]
VOCAB_SIZE = 384
EMBED_STD = 0.05


def build_tokenizer(path: Path):
    from transformers import GemmaTokenizer

    vocab = {}
    for t in SPECIALS:
        vocab[t] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for c in ["▁"] + [chr(c) for c in range(33, 127)]:
        if c not in vocab:
            vocab[c] = len(vocab)
    merges = [("▁", "t"), ("h", "e"), ("▁t", "he"), ("i", "n"), ("▁", "a"), ("e", "r"), ("o", "n"), ("a", "t")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    i = 0
    while len(vocab) < VOCAB_SIZE:
        vocab[f"<unused{i}>"] = len(vocab)
        i += 1
    chat_template = (HERE / "gemma4_chat_template.jinja").read_text()
    tok = GemmaTokenizer(
        vocab=vocab, merges=merges, add_bos_token=False, padding_side="left",
        extra_special_tokens={
            "image_token": "<|image|>", "boi_token": "<|image>", "eoi_token": "<image|>",
            "audio_token": "<|audio|>", "boa_token": "<|audio>", "eoa_token": "<audio|>",
            "sot_token": "<|turn>", "eot_token": "<turn|>",
            "soc_token": "<|channel>", "eoc_token": "<channel|>", "think_token": "<|think|>",
            "escape_token": '<|"|>', "str_token": "<|tool_response>", "etr_token": "<tool_response|>",
            "stc_token": "<|tool_call>", "etc_token": "<tool_call|>", "std_token": "<|tool>", "etd_token": "<tool|>",
        },
        chat_template=chat_template,
    )
    tok.add_special_tokens({"additional_special_tokens": ["<|video|>"]})
    tok.save_pretrained(str(path))
    (path / "chat_template.jinja").write_text(chat_template)
    return tok


def text_config(variant):
    S, F = "sliding_attention", "full_attention"
    tc = {
        "model_type": "gemma4_text",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 6,
        "layer_types": [S, S, F, S, S, F],
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_global_key_value_heads": 1,
        "head_dim": 16,
        "global_head_dim": 32,
        "attention_k_eq_v": True,
        "sliding_window": 16,
        "vocab_size": VOCAB_SIZE,
        "vocab_size_per_layer_input": VOCAB_SIZE,
        "hidden_size_per_layer_input": 0,
        "num_kv_shared_layers": 0,
        "use_double_wide_mlp": False,
        "enable_moe_block": False,
        "num_experts": None,
        "top_k_experts": None,
        "moe_intermediate_size": None,
        "final_logit_softcapping": 30.0,
        "hidden_activation": "gelu_pytorch_tanh",
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 4096,
        "use_bidirectional_attention": "vision",
        "rope_parameters": {
            "full_attention": {"partial_rotary_factor": 0.25, "rope_theta": 1000000.0, "rope_type": "proportional"},
            "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"},
        },
        "tie_word_embeddings": True,
        "attention_bias": False,
        "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 1,
    }
    if variant == "moe":
        tc.update({"enable_moe_block": True, "num_experts": 16, "top_k_experts": 4, "moe_intermediate_size": 64})
    elif variant == "ple":
        tc.update({
            "attention_k_eq_v": False, "num_global_key_value_heads": None, "num_key_value_heads": 1,
            "hidden_size_per_layer_input": 64, "num_kv_shared_layers": 2, "use_double_wide_mlp": True,
            "use_bidirectional_attention": None,
        })
    elif variant != "dense":
        raise SystemExit(f"unknown variant {variant}")
    return tc


def make_config(tok, variant):
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIALS}
    vision_config = {
        "model_type": "gemma4_vision", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 32, "global_head_dim": 32,
        "hidden_activation": "gelu_pytorch_tanh", "rms_norm_eps": 1e-6, "patch_size": 16, "pooling_kernel_size": 3,
        "position_embedding_size": 64, "default_output_length": 16,
        "use_clipped_linears": variant == "ple", "standardize": variant != "ple",
        "rope_parameters": {"rope_theta": 100.0, "rope_type": "default"},
    }
    return {
        "architectures": ["Gemma4ForConditionalGeneration"],
        "model_type": "gemma4",
        "text_config": text_config(variant),
        "vision_config": vision_config,
        "audio_config": None,
        "image_token_id": ids["<|image|>"], "boi_token_id": ids["<|image>"], "eoi_token_id": ids["<image|>"],
        "audio_token_id": ids["<|audio|>"], "boa_token_id": ids["<|audio>"], "eoa_token_id": ids["<audio|>"],
        "eoa_token_index": ids["<audio|>"], "video_token_id": ids["<|video|>"],
        "vision_soft_tokens_per_image": 16,
        "eos_token_id": [ids["<eos>"], ids["<turn|>"]],
        "pad_token_id": 0, "bos_token_id": 2, "tie_word_embeddings": True,
        "initializer_range": 0.02, "torch_dtype": "bfloat16",
    }


def build_params(config):
    from mlx_vlm.models import gemma4
    from mlx_vlm.utils import update_module_configs

    mc = gemma4.ModelConfig.from_dict(config)
    mc = update_module_configs(mc, gemma4, config, ["text", "vision", "audio"])
    model = gemma4.Model(mc)
    mx.random.seed({"dense": 0, "moe": 1, "ple": 2}[VARIANT])
    params = {}
    for k, v in tree_flatten(model.parameters()):
        if k.endswith("layer_scalar"):
            nv = 1.0 + 0.2 * mx.random.uniform(shape=v.shape)
        elif "norm" in k or "std_scale" in k or k.endswith("router.scale") or k.endswith("per_expert_scale"):
            nv = 1.0 + 0.1 * mx.random.normal(v.shape)
        elif "std_bias" in k:
            nv = 0.1 * mx.random.normal(v.shape)
        elif "position_embedding_table" in k or "embed_tokens" in k:
            nv = (0.5 if "position_embedding" in k else EMBED_STD) * mx.random.normal(v.shape)
        elif k.endswith("router.proj.weight"):
            nv = 0.5 * mx.random.normal(v.shape)
        else:
            nv = 0.08 * mx.random.normal(v.shape)
        params[k] = nv.astype(mx.bfloat16)
    return params


def to_hf_name(k: str) -> str:
    if k.startswith("language_model.model."):
        return "model.language_model." + k[len("language_model.model."):]
    return "model." + k


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    BF16.mkdir(parents=True)
    tok = build_tokenizer(BF16)
    config = make_config(tok, VARIANT)
    (BF16 / "config.json").write_text(json.dumps(config, indent=2))
    (BF16 / "generation_config.json").write_text(json.dumps({
        "bos_token_id": 2, "pad_token_id": 0, "eos_token_id": config["eos_token_id"] + [21],
        "do_sample": True, "temperature": 1.0, "top_k": 64, "top_p": 0.95,
    }, indent=2))
    (BF16 / "processor_config.json").write_text(json.dumps({
        "processor_class": "Gemma4Processor", "image_seq_length": 16, "audio_seq_length": 750,
        "image_processor": {
            "image_processor_type": "Gemma4ImageProcessor", "do_convert_rgb": True, "do_normalize": False,
            "do_rescale": True, "do_resize": True, "image_mean": [0.0, 0.0, 0.0], "image_std": [1.0, 1.0, 1.0],
            "rescale_factor": 1 / 255, "resample": 3, "patch_size": 16, "pooling_kernel_size": 3, "max_soft_tokens": 16,
        },
    }, indent=2))
    params = build_params(config)
    hf = {to_hf_name(k): v for k, v in params.items()}
    mx.save_safetensors(str(BF16 / "model.safetensors"), hf, metadata={"format": "pt"})
    cmd = [sys.executable, "-m", "mlx_vlm", "convert", "--hf-path", str(BF16), "--mlx-path", str(Q4),
           "-q", "--q-bits", "4", "--q-group-size", "64"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    print(f"[build] {VARIANT}: wrote {Q4}")


if __name__ == "__main__":
    main()
