#!/usr/bin/env python3
"""Greedy Gemma 4 generation with mlx-vlm 0.7.10, dumped as JSON for vlmbench's parity tests.

    tools/reference/.venv/bin/python tools/reference/gemma4_run.py --model DIR
        (--prompt TEXT | --prompt-ids 1,2,3) [--image PATH ...] [--max-tokens N]
        [--dtype float32|bfloat16] [--ignore-eos] [--out FILE.json]

What runs is mlx-vlm's own pipeline: mlx_vlm.load, mlx_vlm.prompt_utils.apply_chat_template (thinking
off, mlx-vlm's default), mlx_vlm.utils.prepare_inputs (the processor: image resize, prompt expansion,
tokenization) and mlx_vlm.generate at temperature 0 (argmax). The inputs are prepared here with the same
arguments generate() would use, recorded, and handed to generate() as input_ids/pixel_values/mask, so
the ids in the JSON are the ids the model saw. --prompt-ids skips the template and the processor: the ids
go to the model as they are (text only).

Logits: a pass-through logits processor (mlx-vlm's `logits_processors` hook, called with the raw model
logits of every step, after the final softcap, before log-softmax and sampling) keeps a reference to
each step's logits; it returns them unchanged, so generation is not altered.

Stopping: as mlx-vlm does (config eos ids + tokenizer eos ids; the stop token is counted in
generation_tokens and listed in token_ids but not decoded into text). --ignore-eos replaces the stopping
criteria by one that never fires, so exactly --max-tokens tokens are generated.

--dtype:
  bfloat16  the checkpoint as published (4-bit weights, bf16 scales/biases and unquantized tensors);
            mlx-vlm then computes in bf16.
  float32   FLOAT32_POLICY below: after load, every floating-point parameter of the model, quantization
            scales and biases included, is cast to float32 (the packed uint32 weights stay as they are).
            Activations then follow in float32 (mlx-vlm casts pixel values to the patch embedder's dtype).
"""
import argparse
import hashlib
import importlib.metadata as md
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten, tree_map  # noqa: E402

FLOAT32_POLICY = (
    "After mlx_vlm.load, every floating-point parameter in model.parameters() is cast to float32 with "
    "astype: quantization scales and biases, norm weights, layer_scalar, router scale/per_expert_scale, "
    "unquantized (vision/projector) weights, vision std_bias/std_scale, position tables and clip bounds. "
    "Packed quantized weights (uint32) are left as they are. Nothing is re-quantized; dequantized values "
    "are scales*q+biases in float32, i.e. the bf16 scales/biases widened exactly."
)
TOPK = 5


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--prompt", help="user message, rendered with the checkpoint's chat template")
    g.add_argument("--prompt-ids", help="comma-separated token ids fed as is (no template, no BOS added)")
    ap.add_argument("--image", action="append", default=[], help="image file (repeatable)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    ap.add_argument("--ignore-eos", action="store_true", help="never stop early: generate exactly --max-tokens")
    ap.add_argument("--out", type=Path, help="write the JSON here (default: stdout)")
    a = ap.parse_args()
    if a.prompt_ids is not None and a.image:
        ap.error("--image needs --prompt (the processor expands the image tokens)")
    if a.max_tokens < 1:
        ap.error("--max-tokens must be >= 1")
    return a


def cast_float32(model):
    """The float32 policy (see FLOAT32_POLICY). Returns a count of what was cast, by source dtype."""
    counts = {}

    def cast(p):
        if mx.issubdtype(p.dtype, mx.floating) and p.dtype != mx.float32:
            name = str(p.dtype).replace("mlx.core.", "")
            counts[name] = counts.get(name, 0) + 1
            return p.astype(mx.float32)
        return p

    model.update(tree_map(cast, model.parameters()))
    mx.eval(model.parameters())
    return counts


def param_dtypes(model):
    out = {}
    for _, p in tree_flatten(model.parameters()):
        name = str(p.dtype).replace("mlx.core.", "")
        out[name] = out.get(name, 0) + 1
    return out


def versions():
    v = {"python": platform.python_version(), "platform": platform.platform(), "mlx": mx.__version__}
    for pkg in ("mlx-vlm", "mlx-lm", "mlx-cpu", "mlx-metal", "transformers", "tokenizers", "numpy", "pillow"):
        try:
            v[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    v["mlx_default_device"] = str(mx.default_device())
    return v


def topk(row: np.ndarray, k=TOPK):
    order = np.argsort(-row, kind="stable")[:k]  # ties: lower id first
    return [int(i) for i in order], [float(row[i]) for i in order]


def pixel_record(pv):
    if isinstance(pv, list):
        return [pixel_record(p) for p in pv]
    a = np.array(pv)
    flat = a.reshape(-1)
    idx = np.linspace(0, flat.size - 1, 8).astype(np.int64)
    return {
        "shape": list(a.shape),
        "dtype": str(a.dtype),
        "sha256": hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest(),
        "sha256_of": "raw C-order bytes of pixel_values in the dtype above (little-endian)",
        "first_values": [float(x) for x in flat[:8]],
        "sample_indices": [int(i) for i in idx],
        "sample_values": [float(flat[i]) for i in idx],
        "mean": float(a.astype(np.float64).mean()),
    }


def main():
    args = parse_args()
    from mlx_vlm import generate, load
    from mlx_vlm.prompt_utils import apply_chat_template
    from mlx_vlm.utils import prepare_inputs, should_add_special_tokens

    t0 = time.perf_counter()
    model, processor = load(str(args.model))
    load_s = time.perf_counter() - t0
    tok = processor.tokenizer if hasattr(processor, "tokenizer") else processor
    cast_counts = cast_float32(model) if args.dtype == "float32" else {}

    rec = {
        "tool": "tools/reference/gemma4_run.py",
        "versions": versions(),
        "model": str(args.model),
        "model_type": model.config.model_type,
        "dtype": args.dtype,
        "float32_policy": FLOAT32_POLICY if args.dtype == "float32" else None,
        "float32_cast_counts": cast_counts if args.dtype == "float32" else None,
        "param_dtypes": param_dtypes(model),
        "sampling": {"temperature": 0.0, "sampler": "argmax"},
        "max_tokens": args.max_tokens,
        "ignore_eos": args.ignore_eos,
    }

    gen_kwargs = {}
    if args.prompt_ids is not None:
        ids = [int(x) for x in args.prompt_ids.replace(" ", "").split(",") if x]
        if not ids:
            sys.exit("gemma4_run.py: error: --prompt-ids is empty")
        rec.update(prompt_mode="ids", prompt=None, enable_thinking=None)
        input_ids = mx.array([ids], dtype=mx.int32)
        pixel_values, mask = None, None
    else:
        # mlx-vlm's default path (generate -> _prepare_generation_inputs), done here so it can be recorded.
        prompt = apply_chat_template(processor, model.config, args.prompt, num_images=len(args.image))
        rec.update(prompt_mode="chat_template", user_message=args.prompt, prompt=prompt, enable_thinking=False)
        inputs = prepare_inputs(
            processor,
            images=args.image or None,
            audio=None,
            videos=None,
            prompts=prompt,
            image_token_index=getattr(model.config, "image_token_index", None),
            resize_shape=None,
            add_special_tokens=should_add_special_tokens(model.config.model_type, processor),
        )
        input_ids = inputs["input_ids"]
        pixel_values = inputs.get("pixel_values")
        mask = inputs.get("attention_mask")
        gen_kwargs = {k: v for k, v in inputs.items() if k not in ("input_ids", "pixel_values", "attention_mask")}
        rec["add_special_tokens"] = should_add_special_tokens(model.config.model_type, processor)
    rec["input_ids"] = [int(x) for x in np.array(input_ids).reshape(-1)]
    rec["prompt_len"] = len(rec["input_ids"])
    rec["extra_model_inputs"] = {
        k: {"shape": list(v.shape), "sum": int(np.array(v).sum())} if hasattr(v, "shape") else repr(v)
        for k, v in gen_kwargs.items()
    }

    try:  # informative: how generate_step will prefill this prompt (mlx-vlm's own policy function)
        from mlx_vlm.generate.common import _chunked_prefill_enabled
        chunked = _chunked_prefill_enabled(model, input_ids=input_ids, prefill_kwargs=dict(gen_kwargs))
        rec["prefill"] = ("chunks of <= 2048 over prompt[:-1], then the last prompt token" if chunked
                          else "whole prompt in one forward pass")
    except Exception as e:  # noqa: BLE001
        rec["prefill"] = f"unknown ({type(e).__name__})"

    if args.image:
        cfg = model.config
        rec["images"] = [str(p) for p in args.image]
        rec["pixel_values"] = pixel_record(pixel_values)
        rec["image_token_id"] = int(cfg.image_token_id)
        rec["num_image_tokens"] = rec["input_ids"].count(int(cfg.image_token_id))

    captured = []

    def capture_logits(tokens, logits):  # pass-through: returns the logits unchanged
        captured.append(logits)
        return logits

    if args.ignore_eos:
        gen_kwargs["stopping_criteria"] = lambda token: False
    rec["stop_token_ids"] = None  # filled after the run (None with --ignore-eos)

    t1 = time.perf_counter()
    res = generate(
        model, processor, "",
        input_ids=input_ids, pixel_values=pixel_values, mask=mask,
        max_tokens=args.max_tokens, temperature=0.0,
        logits_processors=[capture_logits],
        verbose=False,
        **gen_kwargs,
    )
    wall_s = time.perf_counter() - t1
    if not args.ignore_eos:
        rec["stop_token_ids"] = [int(t) for t in tok.stopping_criteria.eos_token_ids]

    token_ids = [int(t) for t in (res.token_ids or [])]
    # The decode loop enqueues one step past the last yielded token; keep the steps that produced tokens.
    steps = captured[: len(token_ids)]
    rows = [np.array(l.astype(mx.float32)).reshape(-1) for l in steps]
    # mlx-vlm samples from logprobs = logits - logsumexp(logits), computed in the logits' dtype; the same
    # op on the same array is recomputed here. In bf16 that subtraction can round two close logits to the
    # same logprob, and argmax then takes the lower id: greedy = argmax(logprobs), not argmax(logits).
    lp_rows = [np.array((l - mx.logsumexp(l, axis=-1, keepdims=True)).astype(mx.float32)).reshape(-1) for l in steps]
    rec["logits_dtype"] = str(steps[0].dtype).replace("mlx.core.", "") if steps else None
    rec["generated_ids"] = token_ids
    rec["text"] = res.text  # as mlx_vlm.generate returns it (from its streaming detokenizer)
    rec["detokenizer"] = type(getattr(processor, "detokenizer", None)).__name__
    stop_ids = set(rec["stop_token_ids"] or [])
    body = token_ids[:-1] if (token_ids and res.finish_reason == "stop" and token_ids[-1] in stop_ids) else token_ids
    rec["decoded_text"] = tok.decode(body, skip_special_tokens=False)
    rec["finish_reason"] = res.finish_reason
    rec["first_step_logits"] = [float(x) for x in rows[0]] if rows else None
    rec["steps"] = []
    for i, (row, lp) in enumerate(zip(rows, lp_rows)):
        ids, vals = topk(row)
        lids, lvals = topk(lp)
        rec["steps"].append({"step": i, "token": token_ids[i], "top5_ids": ids, "top5_logits": vals,
                             "top5_logprob_ids": lids, "top5_logprobs": lvals})
        if lids[0] != token_ids[i]:
            rec.setdefault("warnings", []).append(f"step {i}: argmax(logprobs) {lids[0]} != generated {token_ids[i]}")
        elif ids[0] != token_ids[i]:
            rec.setdefault("notes", []).append(
                f"step {i}: argmax(logits) {ids[0]} != generated {token_ids[i]}: tie after logprob rounding")
    rec["stats"] = {
        "prompt_tokens": res.prompt_tokens,
        "generation_tokens": res.generation_tokens,
        "prompt_tps": res.prompt_tps,
        "generation_tps": res.generation_tps,
        "peak_memory": res.peak_memory,
        "peak_memory_unit": "GB (mx.get_peak_memory()/1e9, process-wide, as mlx-vlm reports)",
    }
    rec["timing"] = {"load_s": load_s, "generate_wall_s": wall_s}

    text = json.dumps(rec, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        print(f"gemma4_run.py: {args.dtype} {rec['prompt_len']} prompt ids -> {len(token_ids)} tokens "
              f"({res.finish_reason}) {token_ids[:12]}{'...' if len(token_ids) > 12 else ''} -> {args.out}",
              file=sys.stderr)
    else:
        print(text)


if __name__ == "__main__":
    main()
