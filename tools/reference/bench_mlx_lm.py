#!/usr/bin/env python3
"""mlx-lm timed exactly as `vlmbench bench` times itself, written as vlmbench's bench rows.

    tools/reference/.venv/bin/python tools/reference/bench_mlx_lm.py --model DIR [-p 64] [-n 32] [-r 3]
        [--seed 0] [--no-warmup] [--dtype float32|bfloat16] [--out ROWS.json]

For models mlx-lm runs and mlx-vlm cannot load, such as vlmbench's import of Gemma 3 270M
(tools/llama/side_by_side.sh --mlx-lm). mlx-lm 0.32.2 on the same MLX (0.32.2) as vlmbench, loaded
with mlx_lm.utils.load_model and driven through its lower-level API (the model's __call__ with a
cache from mlx_lm.models.cache.make_prompt_cache, mx.eval / mx.async_eval, argmax), not through
mlx_lm.generate, so the clock points are vlmbench's own:
  - prompt ids: vlmbench's seeded generator (src/bench/mod.rs PromptIds, bench_reference.py's copy):
    same seed, vocabulary (config.json's vocab_size) and skipped ids (tokenizer.json's added tokens),
    one stream for the run, drawn in vlmbench's order (tests -p then -n; each test's warm-up, then
    each repetition).
  - prefill as mlx-lm's generate_step and vlmbench's Gemma 3 decoder: all but the last prompt token in
    chunks of at most 2048, the caches evaluated after each, then the last token alone, logits of it.
  - ppP: P prompt tokens / the time of that prefill up to its logits, evaluated (no sampling).
  - tgN: a 1-token prompt, then N tokens greedily (argmax of logits - logsumexp(logits)), EOS ignored;
    each step's graph is built and started (mx.async_eval) before the previous token is read back, as
    generate_step and vlmbench's engine do. Rate = (N - 1) / (time of the last token on the host -
    time of the first); time to first token from the start of the prefill.
  - each repetition from an empty cache (make_prompt_cache before the clock starts, as vlmbench makes
    its decoder); one warm-up per test unless --no-warmup; -r repetitions give mean and sample sd.
  - peak memory: mx.reset_peak_memory() before each repetition, mx.get_peak_memory() after (MLX's
    allocator peak, weights included, as vlmbench reports), the highest over the repetitions.
--dtype float32 (default, vlmbench's CPU default): right after loading, every floating-point parameter
(norm weights, quantization scales and biases, unquantized weights) is cast to float32, as
bench_reference.py does for mlx-vlm and models/tests/reference/gemma3_lm_ref.py for the parity test;
packed integer weights stay, so compute and logits are float32. bfloat16 casts them to bfloat16.
Output (stdout, or --out): a JSON list of the rows `vlmbench bench -o json` writes; progress on stderr.
"""
import argparse
import json
import sys
import time
from pathlib import Path

from bench_reference import PromptIds  # noqa: E402  (also sets HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)

import mlx.core as mx  # noqa: E402
from mlx.utils import tree_map  # noqa: E402

PREFILL_STEP = 2048  # mlx-lm's generate_step default, vlmbench's DEFAULT_PREFILL_STEP_SIZE


def lengths(flag, spec):
    """-p/-n: one length or a comma list ("0": none); vlmbench's ranges are not taken here."""
    if spec.strip() == "0":
        return []
    out = []
    for part in spec.split(","):
        if not part.strip().isdigit() or int(part) == 0:
            raise SystemExit(f"bench_mlx_lm.py: error: {flag} takes positive whole numbers, comma-separated (got {spec!r})")
        out.append(int(part))
    return out


def mean_sd(xs):
    if not xs:
        return 0.0, 0.0
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, 0.0
    return mean, (sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="the checkpoint directory (vlmbench's)")
    ap.add_argument("-p", "--n-prompt", default="512", help="prompt lengths (ppP tests), default 512")
    ap.add_argument("-n", "--n-gen", default="128", help="generation lengths after a 1-token prompt (tgN), default 128")
    ap.add_argument("-r", "--repetitions", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--out", type=Path, help="write the rows here (default: stdout)")
    a = ap.parse_args()
    tests = [("pp", n) for n in lengths("-p", a.n_prompt)] + [("tg", n) for n in lengths("-n", a.n_gen)]
    if not tests:
        raise SystemExit("bench_mlx_lm.py: error: nothing to run: -p 0 and -n 0")
    if a.repetitions < 1 or not 0 <= a.seed < 1 << 64:
        raise SystemExit("bench_mlx_lm.py: error: -r must be at least 1 and --seed a whole number below 2^64")
    if not (a.model / "config.json").is_file() or not (a.model / "tokenizer.json").is_file():
        raise SystemExit(f"bench_mlx_lm.py: error: {a.model} is not a checkpoint directory (config.json, tokenizer.json)")

    rows_out = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints stays out of the JSON

    import mlx_lm
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_lm.utils import load_model

    model, _ = load_model(a.model)
    dt = mx.float32 if a.dtype == "float32" else mx.bfloat16
    model.update(tree_map(lambda p: p.astype(dt) if mx.issubdtype(p.dtype, mx.floating) else p, model.parameters()))
    mx.eval(model.parameters())

    config = json.loads((a.model / "config.json").read_text())
    vocab = (config.get("text_config") or config)["vocab_size"]
    special = {t["id"] for t in json.loads((a.model / "tokenizer.json").read_text()).get("added_tokens", [])}
    prompts = PromptIds(a.seed, vocab, special)
    print(f"bench_mlx_lm.py: mlx-lm {mlx_lm.__version__}, MLX {mx.__version__}, {a.dtype}; prompt ids: vlmbench's "
          f"generator, seed {a.seed}, vocabulary {vocab}, {len(special)} ids skipped", flush=True)

    def prefill(ids, cache):
        prompt = mx.array(ids, dtype=mx.int32)[None]
        done = 0
        while len(ids) - done > 1:
            n = min(PREFILL_STEP, len(ids) - done - 1)
            model(prompt[:, done:done + n], cache=cache)
            mx.eval([c.state for c in cache])
            done += n
        return model(prompt[:, done:], cache=cache)[:, -1, :]

    def greedy(logits):
        return mx.argmax(logits - mx.logsumexp(logits, axis=-1, keepdims=True), axis=-1)

    def measure(kind, n):
        cache = make_prompt_cache(model)
        mx.reset_peak_memory()
        if kind == "pp":
            ids = prompts.next(n)
            start = time.perf_counter()
            logits = prefill(ids, cache)
            mx.eval(logits)
            return n / (time.perf_counter() - start), None, mx.get_peak_memory()
        ids = prompts.next(1)
        start = time.perf_counter()
        y = greedy(prefill(ids, cache))
        mx.async_eval(y)
        first = last = 0.0
        for i in range(n):
            if i + 1 < n:
                nxt = greedy(model(y[:, None], cache=cache)[:, -1, :])
                mx.async_eval(nxt)
            y.item()
            last = time.perf_counter() - start
            if i == 0:
                first = last
            if i + 1 < n:
                y = nxt
        decode = last - first
        return ((n - 1) / decode if n > 1 and decode > 0 else 0.0), first, mx.get_peak_memory()

    info = mx.device_info() if hasattr(mx, "device_info") else {}
    dev = mx.default_device()
    device = f"{dev.type.name}:0 {info.get('device_name', '')}".strip()
    backend = "cuda" if mx.cuda.is_available() else ("metal" if mx.metal.is_available() else "cpu")
    size = sum(f.stat().st_size for f in a.model.glob("*.safetensors"))
    rows = []
    for kind, n in tests:
        if not a.no_warmup:
            measure(kind, n)
        samples = [measure(kind, n) for _ in range(a.repetitions)]
        tps = [s[0] for s in samples]
        mean, sd = mean_sd(tps)
        ttfts = [s[1] for s in samples if s[1] is not None]
        row = {
            "model": a.model.name, "model_size_bytes": size, "backend": backend, "device": device,
            "dtype": a.dtype, "test": f"{kind}{n}", "n_prompt": n if kind == "pp" else 1,
            "n_gen": 0 if kind == "pp" else n, "tps_samples": tps, "tps_mean": mean, "tps_sd": sd,
            "ttft_s_mean": mean_sd(ttfts)[0] if ttfts else None,
            "peak_memory_bytes": int(max(s[2] for s in samples)), "mlx_version": mx.__version__,
            "vlmbench_version": f"mlx-lm {mlx_lm.__version__} ({a.dtype}: floating parameters cast)",
            "kernels": "mlx", "prefill": f"mlx-lm, chunks of {PREFILL_STEP} + the last token",
        }
        print(f"{row['test']}: {mean:.2f} ± {sd:.2f} t/s", flush=True)
        rows.append(row)
    text = json.dumps(rows, indent=2) + "\n"
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    else:
        rows_out.write(text)


if __name__ == "__main__":
    main()
