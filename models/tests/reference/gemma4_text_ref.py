#!/usr/bin/env python3
"""Reference run of mlx-vlm 0.7.10's Gemma 4 generation loop for the Rust parity tests.

Drives mlx_vlm.generate.ar.generate_step (the code path of mlx_vlm.generate) with a greedy
sampler on given token ids, never stopping on EOS, and records the logits the language model
returned at every sampled step (the first one comes from the prompt pass).

--dtype float32 casts every floating parameter of the loaded model (norm weights, layer scalars,
router scales, and the scales/biases of quantized layers) to float32; packed uint32 weights stay.
--dtype bfloat16 keeps the checkpoint's bf16 tensors as loaded.

--image-token-features N: replace the embeddings of the image-token positions by N x hidden random
features (seeded), given to mlx-vlm as cached image features; they are saved to --features-out so
the Rust side merges the same values.

Output JSON: {"tokens": [...], "logits": [[vocab floats] per step], "prompt_len": T}
"""
import argparse
import json

import mlx.core as mx
from mlx.utils import tree_map
from mlx_vlm.generate.ar import generate_step
from mlx_vlm.utils import load_model
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--ids", required=True, help="comma-separated prompt token ids")
ap.add_argument("--steps", type=int, required=True)
ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
ap.add_argument("--prefill-step-size", type=int, default=2048)
ap.add_argument("--mm-token-type-ids", default=None, help="comma-separated, same length as ids")
ap.add_argument("--image-features-out", default=None)
ap.add_argument("--out", required=True)
args = ap.parse_args()

model = load_model(Path(args.model))
if args.dtype == "float32":
    model.update(tree_map(lambda p: p.astype(mx.float32) if mx.issubdtype(p.dtype, mx.floating) else p,
                          model.parameters()))
    mx.eval(model.parameters())

ids = [int(t) for t in args.ids.split(",")]
input_ids = mx.array([ids])
kwargs = {}
if args.mm_token_type_ids:
    kwargs["mm_token_type_ids"] = mx.array([[int(t) for t in args.mm_token_type_ids.split(",")]])
pixel_values = None
if args.image_features_out:
    n_img = ids.count(model.config.image_token_id)
    mx.random.seed(7)
    hidden = model.config.text_config.hidden_size
    dt = mx.float32 if args.dtype == "float32" else mx.bfloat16
    feats = (0.5 * mx.random.normal((1, n_img, hidden))).astype(dt)
    mx.save_safetensors(args.image_features_out, {"features": feats})
    kwargs["cached_image_features"] = feats
    pixel_values = mx.zeros((1, 3, 48, 48))  # never encoded: the cached features are used

LM = type(model.language_model)
orig_call = LM.__call__
step_logits = []


def recording_call(self, *a, **k):
    out = orig_call(self, *a, **k)
    if "n_to_process" not in k:  # chunked-prefill calls discard their logits
        step_logits.append(out.logits[:, -1, :])
    return out


LM.__call__ = recording_call
tokens = []
for tok, _ in generate_step(input_ids, model, pixel_values, None, max_tokens=args.steps, temperature=0.0,
                            prefill_step_size=args.prefill_step_size, **kwargs):
    tokens.append(int(tok))
    if len(tokens) == args.steps:
        break
LM.__call__ = orig_call
logits = [step_logits[i].astype(mx.float32)[0].tolist() for i in range(len(tokens))]
Path(args.out).write_text(json.dumps({"tokens": tokens, "logits": logits, "prompt_len": len(ids)}))
print(f"ref: {len(tokens)} tokens: {tokens}")
