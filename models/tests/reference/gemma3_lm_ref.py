#!/usr/bin/env python3
"""Reference run of mlx-lm 0.32's generation loop for the Gemma 3 parity tests.

Loads the checkpoint with mlx_lm.utils.load_model, casts every floating parameter (norm weights,
dense weights, quantization scales/biases) to --dtype (packed uint32 weights stay), then for each
prompt runs mlx_lm.generate.generate_step with its default greedy sampler (argmax of the log-probs)
for --steps tokens, and with --score the log-probs of every position of each prompt in one pass.

Output: --out-json {"tokens": [[...] per prompt]}; --out-tensors (safetensors) "logprobs_<i>"
[steps, vocab] float32 per prompt (the vector each token was sampled from), "score_<i>" [L, vocab].
"""
import argparse
import json
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_map
from mlx_lm.generate import generate_step
from mlx_lm.utils import load_model

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--prompts", required=True, help="JSON list of token-id lists")
ap.add_argument("--steps", type=int, required=True)
ap.add_argument("--dtype", choices=["float32", "bfloat16"], required=True)
ap.add_argument("--prefill-step-size", type=int, default=2048)
ap.add_argument("--out-json", required=True)
ap.add_argument("--out-tensors", required=True)
args = ap.parse_args()

model, _ = load_model(Path(args.model))
dt = mx.float32 if args.dtype == "float32" else mx.bfloat16
model.update(tree_map(lambda p: p.astype(dt) if mx.issubdtype(p.dtype, mx.floating) else p, model.parameters()))
mx.eval(model.parameters())

prompts = json.loads(Path(args.prompts).read_text())
tokens, tensors = [], {}
for i, ids in enumerate(prompts):
    toks, lps = [], []
    for tok, lp in generate_step(mx.array(ids), model, max_tokens=args.steps, prefill_step_size=args.prefill_step_size):
        toks.append(int(tok))
        lps.append(lp.astype(mx.float32))
        if len(toks) == args.steps:
            break
    tokens.append(toks)
    tensors[f"logprobs_{i}"] = mx.stack(lps)
    logits = model(mx.array([ids]))[0]
    tensors[f"score_{i}"] = (logits - mx.logsumexp(logits, axis=-1, keepdims=True)).astype(mx.float32)
    print(f"ref prompt {i}: {toks}", flush=True)
mx.save_safetensors(args.out_tensors, tensors)
Path(args.out_json).write_text(json.dumps({"tokens": tokens}))
