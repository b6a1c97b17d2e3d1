#!/usr/bin/env python3
"""mlx-vlm's side of vlmbench's side-by-side benchmark: the same checkpoint, the same prompt
lengths and generation lengths, timed with the same clock points as vlmbench's engine, written as
a vlmbench results file (kind prompt_length_sweep) so `vlmbench compare` and `vlmbench chart`
read both.

    tools/reference/.venv/bin/python tools/reference/bench_reference.py --model DIR \
        --lengths 64,256,1024 --gen 32 [--dtype float32|bfloat16] [--seed 0] --out mlx-vlm.json

Prompts: random ordinary token ids drawn with SplitMix64 seeded as vlmbench's `PromptIds`
(src/bench/mod.rs): same seed, same vocabulary, same excluded added tokens, so both programs
see the same ids. Generation: greedy, EOS ignored (exact lengths), through mlx_vlm.stream_generate.
Clock points: start just before stream_generate; first token = first yield; last = final yield.
  prefill_tps = prompt_tokens / ttft;  decode_tps = (gen_tokens - 1) / (t_last - t_first)
mlx-vlm's own prompt_tps / generation_tps are stored beside them (reference_* fields).
A warm-up generation (same shape as the first point) runs before the measured ones; its time to first
token is kept as run.first_call_time_to_first_token_s (on a fresh GPU machine: includes kernel JIT).
Peak memory: mx.reset_peak_memory() before each point, mx.get_peak_memory() after.
--image PATH adds a point img+tgN ("Describe this image." through the chat template, after one unmeasured run
of it), as `vlmbench sweep --image`: its clock starts before the prompt is built and the image processed.
"""
import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import mlx.core as mx  # noqa: E402
from mlx.utils import tree_map  # noqa: E402

MASK = (1 << 64) - 1


class PromptIds:
    """vlmbench's SplitMix64 prompt generator, bit for bit."""

    def __init__(self, seed, vocab, special):
        self.state = (seed ^ 0x9E3779B97F4A7C15) & MASK
        self.vocab, self.special = vocab, special

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def next(self, n):
        ids = []
        while len(ids) < n:
            i = self.next_u64() % self.vocab
            if i not in self.special:
                ids.append(i)
        return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--lengths", required=True, help="comma-separated prompt lengths")
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                    help="float32: cast every floating parameter (as gemma4_run.py); default: as published")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", default="mlx-vlm")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--image", type=Path,
                    help="also measure 'Describe this image.' with this image (label img+tgN), as vlmbench sweep --image")
    a = ap.parse_args()
    lengths = [int(x) for x in a.lengths.split(",") if x.strip()]

    import mlx_vlm
    from mlx_vlm import load, stream_generate
    from mlx_vlm.prompt_utils import apply_chat_template

    model, processor = load(str(a.model))
    if a.dtype == "float32":
        model.update(tree_map(lambda p: p.astype(mx.float32) if mx.issubdtype(p.dtype, mx.floating) else p,
                              model.parameters()))
        mx.eval(model.parameters())
    tokenizer_json = json.loads((a.model / "tokenizer.json").read_text())
    special = {t["id"] for t in tokenizer_json.get("added_tokens", [])}
    config = json.loads((a.model / "config.json").read_text())
    vocab = (config.get("text_config") or config)["vocab_size"]
    prompts = PromptIds(a.seed, vocab, special)

    def run_one(ids=None, image=None):
        n_seen = [0]
        mx.reset_peak_memory()
        t0 = time.perf_counter()
        t_first = t_last = None
        last = None
        if image is None:
            inputs = dict(prompt="", input_ids=mx.array([ids], dtype=mx.int32))
        else:  # the chat template, tokenizing and image processing count, as in vlmbench's point
            prompt = apply_chat_template(processor, model.config, "Describe this image.", num_images=1)
            inputs = dict(prompt=prompt, image=[str(image)])
        for last in stream_generate(model, processor, max_tokens=a.gen, temperature=0.0,
                                    stopping_criteria=lambda token: False, **inputs):
            now = time.perf_counter() - t0
            # The stream ends with one more result that carries no new token; time token yields only.
            if last.generation_tokens > (0 if t_first is None else n_seen[0]):
                t_first = now if t_first is None else t_first
                t_last = now
                n_seen[0] = last.generation_tokens
        return t_first, t_last, last.generation_tokens, last, mx.get_peak_memory()

    dtype = a.dtype or "bfloat16 (as published)"
    # Warm-up, other ids. Its first-token time is the process's first call (cold kernels).
    first_call_ttft = run_one(prompts.__class__(a.seed + 1, vocab, special).next(lengths[0]))[0]
    print(f"first call (warm-up, pp{lengths[0]}): first token after {first_call_ttft:.2f} s", flush=True)
    measurements = []
    points = [(f"pp{n}", prompts.next(n), None) for n in lengths]
    if a.image:
        points.append((f"img+tg{a.gen}", None, a.image))
    for label, ids, image in points:
        if image is not None:
            run_one(image=image)  # warm-up of the vision tower's kernels, as vlmbench's sweep does
        t_first, t_last, n, last, peak = run_one(ids, image)
        length = len(ids) if ids is not None else int(last.prompt_tokens)
        decode_s = t_last - t_first
        m = {
            "label": label,
            "has_image": image is not None,
            "prompt_tokens": length,
            "gen_tokens": n,
            "prefill_tps": length / t_first,
            "decode_tps": (n - 1) / decode_s if n > 1 and decode_s > 0 else 0.0,
            "time_to_first_token_s": t_first,
            "vision_encode_s": 0.0,
            "total_s": t_last,
            "peak_memory_bytes": int(peak),
            "reference_prompt_tps": float(last.prompt_tps),
            "reference_generation_tps": float(last.generation_tps),
        }
        measurements.append(m)
        print(f"{label}: {m['prefill_tps']:.1f} tok/s prefill, {m['decode_tps']:.1f} tok/s decode", flush=True)
    device = mx.default_device()
    result = {
        "kind": "prompt_length_sweep",
        "run": {
            "label": a.label,
            "model": a.model.name,
            "backend": "cuda" if mx.cuda.is_available() else ("metal" if mx.metal.is_available() else "cpu"),
            "device": str(device),
            "dtype": "float32" if a.dtype == "float32" else "bfloat16",
            "mlx_version": mx.__version__,
            "vlmbench_version": f"mlx-vlm {getattr(mlx_vlm, '__version__', '?')} ({dtype})",
            "first_call_time_to_first_token_s": first_call_ttft,
        },
        "measurements": measurements,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
