#!/usr/bin/env python3
"""Golden outputs of the upstream Moondream2 PyTorch code on tiny random weights.

The reference code is NOT part of this repository. Point --ref at a directory that contains
`moondream/torch/*.py` from vikhyat/moondream (now m87-labs/moondream) at commit
44146f139242dacdf7c02b799e68097424a31036, the code of the 2025-06-21 Hugging Face release.
This script imports it from there, builds a tiny model with random weights in the published
`model.safetensors` layout (`model.{vision,text,region}.*`), and writes:

  <out>/config.json          HF-style config; `config` carries the tiny dimensions
  <out>/model.safetensors    the tiny weights (bf16)
  <out>/golden.json          crops, features, and caption/query/detect/point outputs

The tiny dimensions keep every quirk that the reference hard-codes: 378 px crops of 14 px
patches (a 27x27 grid), `enc_n_layers == 27` (the code uses it as the grid size), 730 prefix
positions, 1024 coordinate bins, 2x1024 size bins, a 2048-position context and 64-wide text
heads (the rotary code rotates exactly 32 channels). The vocabulary is 1024 ids, so the prompt
templates are remapped below 1024; that is a config field the reference reads (`tokenizer.templates`).

The tokenizer is a stub (the real one, moondream/starmie-v1, is not reachable offline): text is
encoded to ids by a fixed byte formula, and ids decode to one CJK code point each, so the
reference's streaming detokenizer flushes every token and the ids can be read back exactly.

Usage:
  python generate_fixtures.py --ref /path/to/moondream-checkout --out models/tests/fixtures/moondream2
"""

import argparse
import hashlib
import json
import math
import sys
import types
from pathlib import Path

import numpy as np

VOCAB = 1024
CJK_BASE = 0x4E00


class StubTokenizer:
    """Ids only: a byte formula in, one CJK character per id out."""

    class _Encoding:
        def __init__(self, ids):
            self.ids = ids

    def encode(self, text):
        return self._Encoding(stub_encode(text))

    def decode(self, ids):
        return "".join(chr(CJK_BASE + int(i)) for i in ids)


def stub_encode(text):
    # Ids 16..(16+255): clear of the special ids 0..9 and below the tiny vocabulary.
    return [16 + b for b in text.encode("utf-8")]


def install_stub_tokenizers_module():
    """The reference does `from tokenizers import Tokenizer` and `Tokenizer.from_pretrained(...)`
    (a hub download); give it a module whose `from_pretrained` returns the stub instead."""
    mod = types.ModuleType("tokenizers")

    class Tokenizer:
        @staticmethod
        def from_pretrained(name):
            return StubTokenizer()

    mod.Tokenizer = Tokenizer
    sys.modules["tokenizers"] = mod


TINY = {
    "text": {
        "dim": 64,
        "ff_dim": 128,
        "n_layers": 2,
        "vocab_size": VOCAB,
        "max_context": 2048,
        "n_heads": 1,
        "n_kv_heads": 1,
        "prefix_attn": 730,
    },
    "vision": {
        "enc_dim": 32,
        "enc_patch_size": 14,
        "enc_n_layers": 27,
        "enc_ff_dim": 64,
        "enc_n_heads": 2,
        "proj_out_dim": 64,
        "crop_size": 378,
        "in_channels": 3,
        "max_crops": 12,
        "overlap_margin": 4,
        "proj_inner_dim": 128,
    },
    "region": {
        "dim": 64,
        "coord_feat_dim": 64,
        "coord_out_dim": 1024,
        "size_feat_dim": 128,
        "size_out_dim": 2048,
        "inner_dim": 128,
    },
    "tokenizer": {
        "templates": {
            "caption": {
                "short": [1, 708, 2, 492, 3],
                "normal": [1, 708, 2, 382, 3],
                "long": [1, 708, 2, 59, 3],
            },
            "query": {"prefix": [1, 381, 2], "suffix": [3]},
            "detect": {"prefix": [1, 235, 476, 2], "suffix": [3]},
            "point": {"prefix": [1, 581, 2], "suffix": [3]},
        }
    },
}

# (width, height): square, landscape, portrait, very wide, tiny (upsampled), large, 3x4 and 4x2 tilings.
IMAGE_SIZES = [
    (378, 378), (640, 480), (300, 900), (1000, 300), (200, 150), (1920, 1080), (1024, 768), (800, 1400),
]


def test_image(width, height):
    """Deterministic RGB test pattern: gradients, a checkerboard and hard edges (ringing)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    r = (x * 255) // max(1, width - 1)
    g = (y * 255) // max(1, height - 1)
    b = np.where(((x // 9) + (y // 7)) % 2 == 0, 230, 20)
    b = (b + (x * y) % 37).clip(0, 255)
    img = np.stack([r, g, b], axis=-1).astype(np.uint8)
    return img


def bf16_bits(t):
    import torch

    return t.detach().to(torch.bfloat16).contiguous().view(torch.int16).numpy().astype(np.uint16)


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def random_state_dict(cfg, seed):
    """Random weights in the published layout (names as in `model.safetensors`)."""
    import torch

    g = torch.Generator().manual_seed(seed)

    def randn(*shape, std=1.0, mean=0.0):
        return torch.randn(*shape, generator=g) * std + mean

    def linear(prefix, out_dim, in_dim, sd):
        sd[f"{prefix}.weight"] = randn(out_dim, in_dim, std=1.0 / math.sqrt(in_dim))
        sd[f"{prefix}.bias"] = randn(out_dim, std=0.05)

    def ln(prefix, dim, sd):
        sd[f"{prefix}.weight"] = randn(dim, std=0.1, mean=1.0)
        sd[f"{prefix}.bias"] = randn(dim, std=0.1)

    v, t, r = cfg["vision"], cfg["text"], cfg["region"]
    sd = {}
    p = "model.vision"
    patch_dim = v["enc_patch_size"] ** 2 * v["in_channels"]
    grid = v["crop_size"] // v["enc_patch_size"]
    linear(f"{p}.patch_emb", v["enc_dim"], patch_dim, sd)
    sd[f"{p}.pos_emb"] = randn(1, grid * grid, v["enc_dim"], std=0.5)
    for i in range(v["enc_n_layers"]):
        b = f"{p}.blocks.{i}"
        ln(f"{b}.ln1", v["enc_dim"], sd)
        linear(f"{b}.attn.qkv", 3 * v["enc_dim"], v["enc_dim"], sd)
        linear(f"{b}.attn.proj", v["enc_dim"], v["enc_dim"], sd)
        ln(f"{b}.ln2", v["enc_dim"], sd)
        linear(f"{b}.mlp.fc1", v["enc_ff_dim"], v["enc_dim"], sd)
        linear(f"{b}.mlp.fc2", v["enc_dim"], v["enc_ff_dim"], sd)
    ln(f"{p}.post_ln", v["enc_dim"], sd)
    linear(f"{p}.proj_mlp.fc1", v["proj_inner_dim"], 2 * v["enc_dim"], sd)
    linear(f"{p}.proj_mlp.fc2", v["proj_out_dim"], v["proj_inner_dim"], sd)

    p = "model.text"
    sd[f"{p}.wte"] = randn(t["vocab_size"], t["dim"], std=1.0)
    qkv_dim = t["dim"] * (1 + 2 * t["n_kv_heads"] // t["n_heads"])
    for i in range(t["n_layers"]):
        b = f"{p}.blocks.{i}"
        ln(f"{b}.ln", t["dim"], sd)
        linear(f"{b}.attn.qkv", qkv_dim, t["dim"], sd)
        linear(f"{b}.attn.proj", t["dim"], t["dim"], sd)
        linear(f"{b}.mlp.fc1", t["ff_dim"], t["dim"], sd)
        linear(f"{b}.mlp.fc2", t["dim"], t["ff_dim"], sd)
    ln(f"{p}.post_ln", t["dim"], sd)
    linear(f"{p}.lm_head", t["vocab_size"], t["dim"], sd)
    # A bias towards eos (id 0) so that some detect/point loops and captions stop by themselves.
    sd[f"{p}.lm_head.bias"][0] += 2.0

    p = "model.region"
    sd[f"{p}.coord_features"] = randn(1, r["coord_feat_dim"] // 2, std=2.0)
    sd[f"{p}.size_features"] = randn(2, r["size_feat_dim"] // 2, std=2.0)
    linear(f"{p}.coord_encoder", r["dim"], r["coord_feat_dim"], sd)
    linear(f"{p}.coord_decoder.fc1", r["inner_dim"], r["dim"], sd)
    linear(f"{p}.coord_decoder.fc2", r["coord_out_dim"], r["inner_dim"], sd)
    linear(f"{p}.size_encoder", r["dim"], r["size_feat_dim"], sd)
    linear(f"{p}.size_decoder.fc1", r["inner_dim"], r["dim"], sd)
    linear(f"{p}.size_decoder.fc2", r["size_out_dim"], r["inner_dim"], sd)
    return {k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", required=True, help="directory containing moondream/torch/*.py")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20250621)
    args = ap.parse_args()

    install_stub_tokenizers_module()
    sys.path.insert(0, str(Path(args.ref).resolve()))
    import torch
    import PIL
    from PIL import Image
    from safetensors.torch import save_file
    from moondream.torch import image_crops
    from moondream.torch.config import MoondreamConfig
    from moondream.torch.moondream import MoondreamModel
    from moondream.torch.image_crops import overlap_crop_image, reconstruct_from_crops
    from moondream.torch.vision import prepare_crops

    assert not image_crops.HAS_VIPS, "pyvips is installed: the reference would not use PIL LANCZOS"
    torch.manual_seed(0)
    torch.set_num_threads(1)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = MoondreamConfig.from_dict(TINY)
    sd = random_state_dict(TINY, args.seed)
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["HfMoondream"],
                "model_type": "moondream1",
                "torch_dtype": "bfloat16",
                "config": TINY,
            },
            indent=2,
        )
        + "\n"
    )

    model = MoondreamModel(cfg, dtype=torch.bfloat16, setup_caches=True)
    missing, unexpected = model.load_state_dict(
        {k[len("model.") :]: v for k, v in sd.items()}, strict=False
    )
    # kv caches and freqs_cis/attn_mask are buffers the checkpoint does not carry.
    assert not unexpected, unexpected
    assert all("kv_cache" in m for m in missing), missing
    model.eval()

    golden = {
        "reference_commit": "44146f139242dacdf7c02b799e68097424a31036",
        "torch_version": torch.__version__,
        "pillow_version": PIL.__version__,
        "seed": args.seed,
        "feature_row_stride": 4,
        "images": [],
    }
    v = cfg.vision
    for idx, (w, h) in enumerate(IMAGE_SIZES):
        np_img = test_image(w, h)
        pil = Image.fromarray(np_img, "RGB")
        crops = overlap_crop_image(np_img, max_crops=v.max_crops, overlap_margin=v.overlap_margin)
        tiling = [int(x) for x in crops["tiling"]]
        crop_arr = crops["crops"]
        entry = {
            "width": w,
            "height": h,
            "tiling": tiling,
            "crop_fnv1a64": [f"{fnv1a64(c.tobytes()):016x}" for c in crop_arr],
            "crop_sums": [int(c.astype(np.int64).sum()) for c in crop_arr],
            "crop_first_rows": [c[0].reshape(-1).tolist() for c in crop_arr],
        }
        with torch.inference_mode():
            all_crops, _ = prepare_crops(pil, v, device="cpu")
            entry["normalized_crop0_row0_bits"] = bf16_bits(all_crops[0, :, 0, :].reshape(-1)).tolist()
            enc = model._vis_enc(all_crops)
            glob = enc[0]
            local = enc[1:].view(-1, v.enc_n_layers, v.enc_n_layers, v.enc_dim)
            rec = reconstruct_from_crops(local, crops["tiling"], patch_size=1, overlap_margin=v.overlap_margin)
            pooled = torch.nn.functional.adaptive_avg_pool2d(rec.permute(2, 0, 1), (27, 27))
            pooled = pooled.permute(1, 2, 0).reshape(729, v.enc_dim)
            proj = model._vis_proj(glob, rec)
            stride = golden["feature_row_stride"]
            entry["global_features_bits"] = bf16_bits(glob[::stride]).reshape(-1).tolist()
            entry["pooled_features_bits"] = bf16_bits(pooled[::stride]).reshape(-1).tolist()
            entry["projected_features_bits"] = bf16_bits(proj[::stride]).reshape(-1).tolist()
            # All 729 rows, as big-endian hex of the bf16 bits (4 characters a value): lets the
            # text-side test start from the reference's own image embeddings.
            entry["projected_full_hex"] = bf16_bits(proj).reshape(-1).astype(">u2").tobytes().hex()

        # Encode once and pass the EncodedImage: the reference's encode_image indexes
        # settings["variant"] whenever settings are given, so caption(pil, settings=...) fails.
        encoded = model.encode_image(pil)
        tasks = []
        lengths = ["short", "normal", "long"]
        greedy = {"temperature": 0, "max_tokens": 32}
        cap = model.caption(encoded, length=lengths[idx % 3], stream=True, settings=greedy)["caption"]
        cap_ids = [ord(c) - CJK_BASE for c in "".join(cap)]
        tasks.append({"task": "caption", "length": lengths[idx % 3], "max_tokens": 32, "tokens": cap_ids})

        question = ["What is in this image?", "How many squares?", "Describe the colors."][idx % 3]
        ans = model.query(encoded, question, stream=True, settings=greedy)["answer"]
        ans_ids = [ord(c) - CJK_BASE for c in "".join(ans)]
        tasks.append(
            {
                "task": "query",
                "question": question,
                "question_ids": stub_encode(question),
                "max_tokens": 32,
                "tokens": ans_ids,
            }
        )

        obj = ["person", "red square", "dog"][idx % 3]
        max_objects = [50, 3, 50][idx % 3]
        det = model.detect(encoded, obj, settings={"max_objects": max_objects})["objects"]
        tasks.append(
            {
                "task": "detect",
                "object": obj,
                "object_ids": stub_encode(" " + obj),
                "max_objects": max_objects,
                "objects": det,
            }
        )
        pts = model.point(encoded, obj, settings={"max_objects": max_objects})["points"]
        tasks.append(
            {
                "task": "point",
                "object": obj,
                "object_ids": stub_encode(" " + obj),
                "max_objects": max_objects,
                "points": pts,
            }
        )
        entry["tasks"] = tasks
        golden["images"].append(entry)
        print(
            f"{w}x{h}: tiling {tiling}, caption {len(cap_ids)} tokens, answer {len(ans_ids)} tokens, "
            f"{len(det)} boxes, {len(pts)} points",
            flush=True,
        )

    (out / "golden.json").write_text(json.dumps(golden) + "\n")


if __name__ == "__main__":
    main()
