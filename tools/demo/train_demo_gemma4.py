#!/usr/bin/env python3
"""Train vlmbench's built-in demo model: a tiny Gemma 4 (dense flavour) that answers the tasks' own
prompts about synthetic scenes (issue #27), with mlx-vlm's Gemma 4 module tree and MLX.

    tools/reference/.venv/bin/python tools/demo/train_demo_gemma4.py DATA_DIR OUT_DIR
        [--steps N] [--batch B] [--lr LR] [--seed S] [--bf16-only]

DATA_DIR is `vlmbench make-scenes DATA_DIR --training` (images/ and pairs.jsonl). Steps:
  1. tokenizer: Gemma-style BPE (byte fallback, every Gemma 4 special token at a small id, digits kept
     one per token) whose merges are learned from the pairs' prompts and answers;
  2. config: the dense (31B) flavour of tools/reference/build_tiny_gemma4.py at demo size;
  3. training: mlx_vlm.models.gemma4.Model in float32, fed exactly what mlx-vlm's own pipeline feeds at
     inference (apply_chat_template, prepare_inputs: the processor's resize, the bidirectional image
     mask through mm_token_type_ids), cross-entropy on the answer tokens and the closing <turn|>,
     AdamW with warm-up and cosine decay; the loss curve goes to OUT_DIR.train-log.jsonl as it runs;
  4. the weights saved under Hugging Face names in bf16, then mlx-vlm's converter:
     `python -m mlx_vlm convert -q --q-bits 4 --q-group-size 64` (the mlx-community recipe).
Everything is drawn from --seed: the same data, seed and MLX build give the same checkpoint.
"""
import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import mlx.optimizers as optim  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten, tree_map  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "reference"))
import build_tiny_gemma4 as tiny  # noqa: E402

VOCAB_SIZE = 1024
SOFT_TOKENS = 36  # a 320x240 scene becomes 288x240 pixels, 30 soft tokens
SLIDING, FULL = tiny.SLIDING, tiny.FULL

TEXT = {
    **tiny.TEXT_BASE,
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_attention_heads": 4,
    "head_dim": 64,
    "global_head_dim": 128,
    "sliding_window": 512,
    "vocab_size": VOCAB_SIZE,
    "vocab_size_per_layer_input": VOCAB_SIZE,
    **tiny.VARIANTS["dense"]["text"],
    "num_hidden_layers": 4,
    "layer_types": [SLIDING, SLIDING, SLIDING, FULL],
}
VISION = {
    **tiny.VISION_BASE,
    **tiny.VARIANTS["dense"]["vision"],
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "head_dim": 32,
    "global_head_dim": 32,
    "default_output_length": SOFT_TOKENS,
}


def read_pairs(data: Path):
    pairs = [json.loads(line) for line in (data / "pairs.jsonl").read_text().splitlines() if line]
    if not pairs:
        sys.exit(f"train_demo_gemma4.py: error: {data}/pairs.jsonl is empty (make-scenes --training writes it)")
    return pairs


def learn_merges(texts, vocab_size: int):
    """BPE merges learned from `texts` as Gemma's tokenizer sees them (spaces as '▁'), never joining a
    digit to anything: numbers stay one digit per token, as in Gemma's own vocabulary."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE(byte_fallback=True))
    tk.normalizer = normalizers.Replace(" ", "▁")
    tk.pre_tokenizer = pre_tokenizers.Digits(individual_digits=True)
    budget = vocab_size - len(tiny.SPECIALS) - 256
    trainer = trainers.BpeTrainer(vocab_size=budget, show_progress=False, special_tokens=[])
    tk.train_from_iterator(texts, trainer)
    model = json.loads(tk.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    alphabet = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1]) if len(t) == 1]
    return alphabet, merges


def build_tokenizer(path: Path, texts, template: str):
    """tools/reference/build_tiny_gemma4.py's tokenizer with merges learned from `texts`."""
    alphabet, merges = learn_merges(texts, VOCAB_SIZE)
    vocab = tiny.base_vocab(alphabet)
    kept = []
    for a, b in merges:
        if len(vocab) >= VOCAB_SIZE:
            break
        if a in vocab and b in vocab and a + b not in vocab:
            vocab[a + b] = len(vocab)
            kept.append((a, b))
    return tiny.build_tokenizer(path, template, tiny.pad_vocab(vocab, VOCAB_SIZE), kept)


def make_config(tok) -> dict:
    config = tiny.make_config("dense", tok)
    config["text_config"] = dict(TEXT)
    config["vision_config"] = dict(VISION)
    config["vision_soft_tokens_per_image"] = SOFT_TOKENS
    return config


def write_side_files(d: Path, config: dict, tok):
    tiny.write_side_files(d, config, tok)
    p = d / "processor_config.json"
    proc = json.loads(p.read_text())
    proc["image_seq_length"] = SOFT_TOKENS
    proc["image_processor"]["max_soft_tokens"] = SOFT_TOKENS
    p.write_text(json.dumps(proc, indent=2))
    gen = json.loads((d / "generation_config.json").read_text())
    gen.update(do_sample=False)  # a demo answers greedily, as the notebook asks
    for k in ("temperature", "top_k", "top_p"):
        gen.pop(k, None)
    (d / "generation_config.json").write_text(json.dumps(gen, indent=2))


def init_params(model, seed: int):
    """Fresh weights: normal(0, 1/sqrt(fan_in)) for matrices, the module's own values for norms and
    scalars, small embeddings (the embedding is multiplied by sqrt(hidden) and tied to the head)."""
    flat = tree_flatten(model.parameters())
    keys = mx.random.split(mx.random.key(seed), len(flat))
    new = []
    for i, (k, v) in enumerate(flat):
        leaf = k.rsplit(".", 1)[-1]
        if "embed_tokens" in k:
            v = mx.random.normal(v.shape, key=keys[i]) * (1.0 / math.sqrt(v.shape[-1]))
        elif "position_embedding_table" in k:
            v = 0.02 * mx.random.normal(v.shape, key=keys[i])
        elif leaf == "weight" and v.ndim == 2 and "norm" not in k:
            v = mx.random.normal(v.shape, key=keys[i]) * (1.0 / math.sqrt(v.shape[-1]))
        new.append((k, v.astype(mx.float32)))
    from mlx.utils import tree_unflatten

    model.update(tree_unflatten(new))
    mx.eval(model.parameters())


class Data:
    """The pairs as the model sees them at inference (mlx-vlm's template and processor), answers as ids
    ending in <turn|>. Every scene has the same size, so a prompt expands to the same ids whatever the
    image: ids are made once per prompt, pixel values once per image."""

    def __init__(self, data: Path, pairs, processor, config):
        from mlx_vlm.prompt_utils import apply_chat_template
        from mlx_vlm.utils import prepare_inputs

        tok = processor.tokenizer
        end = tok.convert_tokens_to_ids("<turn|>")
        prepared = {}

        def prepare(prompt, image):
            text = apply_chat_template(processor, config, prompt, num_images=1)
            inputs = prepare_inputs(processor, images=[str(data / image)], audio=None, videos=None,
                                    prompts=text, image_token_index=None, resize_shape=None,
                                    add_special_tokens=False)
            ids = [int(x) for x in np.array(inputs["input_ids"]).reshape(-1)]
            types = [int(x) for x in np.array(inputs["mm_token_type_ids"]).reshape(-1)]
            return ids, types, inputs["pixel_values"][0].astype(mx.float16)

        self.samples, self.pixels = [], {}
        for p in pairs:
            if p["image"] not in self.pixels:
                self.pixels[p["image"]] = prepare(pairs[0]["prompt"], p["image"])[2]
            if p["prompt"] not in prepared:
                prepared[p["prompt"]] = prepare(p["prompt"], p["image"])[:2]
            ids, types = prepared[p["prompt"]]
            answer = tok.encode(p["answer"], add_special_tokens=False) + [end]
            self.samples.append((ids, types, answer, p["image"], p["task"]))
        mx.eval(list(self.pixels.values()))

    def batch(self, idx):
        rows = [self.samples[i] for i in idx]
        n = max(len(p) + len(a) for p, _, a, _, _ in rows)
        ids = np.zeros((len(rows), n), np.int32)
        types = np.zeros((len(rows), n), np.int32)
        weight = np.zeros((len(rows), n), np.float32)
        for r, (p, t, a, _, _) in enumerate(rows):
            seq = p + a
            ids[r, : len(seq)] = seq
            types[r, : len(t)] = t
            # Position j predicts token j+1: the answer's tokens are predicted from len(p)-1 on.
            weight[r, len(p) - 1 : len(seq) - 1] = 1.0
        pixels = mx.stack([self.pixels[img] for _, _, _, img, _ in rows]).astype(mx.float32)
        return mx.array(ids), mx.array(types), mx.array(weight), pixels


def loss_fn(model, ids, types, weight, pixels):
    out = model(ids[:, :-1], pixel_values=pixels, mm_token_type_ids=types[:, :-1])
    logits = out.logits if hasattr(out, "logits") else out
    ce = nn.losses.cross_entropy(logits.astype(mx.float32), ids[:, 1:], reduction="none")
    w = weight[:, :-1]
    return (ce * w).sum() / w.sum()


def save_hf(model, src: Path):
    params = dict(tree_flatten(model.parameters()))
    from collections import OrderedDict

    hf = tiny.to_hf(OrderedDict((k, v.astype(mx.bfloat16)) for k, v in params.items()))
    mx.save_safetensors(str(src / "model.safetensors"), dict(hf), metadata={"format": "pt"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-budget", type=float, default=0.0,
                    help="seconds since the start: stop training (and save) when the next step would pass "
                         "it, keeping --save-seconds for saving and converting; 0: no limit")
    ap.add_argument("--save-seconds", type=float, default=30.0)
    args = ap.parse_args()

    began = time.time()
    random.seed(args.seed)
    mx.random.seed(args.seed)
    out = args.out_dir.resolve()
    work = Path(tempfile.mkdtemp(prefix="demo-gemma4-"))
    src = work / "src"
    src.mkdir()
    pairs = read_pairs(args.data_dir)
    texts = sorted({p["prompt"] for p in pairs}) + [p["answer"] for p in pairs]
    tok = build_tokenizer(src, texts, tiny.chat_template(True))
    config = make_config(tok)
    write_side_files(src, config, tok)

    from mlx_vlm.models import gemma4
    from mlx_vlm.utils import load_processor, update_module_configs

    mc = gemma4.ModelConfig.from_dict(config)
    mc = update_module_configs(mc, gemma4, config, ["text", "vision", "audio"])
    model = gemma4.Model(mc)
    init_params(model, args.seed)
    n_params = sum(v.size for _, v in tree_flatten(model.parameters()))
    processor = load_processor(src, add_detokenizer=False)
    t0 = time.time()
    data = Data(args.data_dir, pairs, processor, model.config)
    lens = [len(p) + len(a) for p, _, a, _, _ in data.samples]
    print(f"[train] {n_params / 1e6:.2f} M parameters; {len(data.samples)} pairs on {len(data.pixels)} images "
          f"(sequence {min(lens)}-{max(lens)} tokens, mean {np.mean(lens):.0f}); prepared in {time.time() - t0:.0f} s",
          file=sys.stderr)

    total = args.steps

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        t = min(1.0, (step - args.warmup) / max(1, total - args.warmup))
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))

    opt = optim.AdamW(learning_rate=args.lr, weight_decay=0.01)
    grad_fn = nn.value_and_grad(model, loss_fn)

    def step(ids, types, weight, pixels):
        loss, grads = grad_fn(model, ids, types, weight, pixels)
        grads, norm = optim.clip_grad_norm(grads, 1.0)
        opt.update(model, grads)
        return loss, norm

    log = out.with_name(out.name + ".train-log.jsonl")
    log.parent.mkdir(parents=True, exist_ok=True)
    order, pos = list(range(len(data.samples))), len(data.samples)
    started, smooth = time.time(), None
    with log.open("w") as f:
        s = 0
        while s < total:
            if pos + args.batch > len(order):
                random.shuffle(order)
                pos = 0
            idx = order[pos : pos + args.batch]
            pos += args.batch
            opt.learning_rate = lr_at(s)
            loss, norm = step(*data.batch(idx))
            mx.eval(loss, norm, model.parameters(), opt.state)
            loss = loss.item()
            smooth = loss if smooth is None else 0.98 * smooth + 0.02 * loss
            elapsed = time.time() - started
            f.write(json.dumps({"step": s, "loss": loss, "lr": lr_at(s), "grad_norm": norm.item(),
                                "seconds": round(elapsed, 2)}) + "\n")
            if s % 50 == 0 or s == total - 1:
                f.flush()
                print(f"[train] step {s} loss {loss:.4f} (smoothed {smooth:.4f}) {elapsed:.0f} s", file=sys.stderr)
            s += 1
            if args.time_budget and s == 20:
                # The step count that fits the budget, fixed once so the schedule decays to its end; the
                # count goes into OUT_DIR.train.json (--steps N reproduces the run without a budget).
                left = args.time_budget - (time.time() - began) - args.save_seconds
                total = max(s, min(args.steps, s + int(left / (elapsed / s))))
                print(f"[train] {elapsed / s:.3f} s a step: {total} steps fit the budget", file=sys.stderr)
        done = s

    save_hf(model, src)
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "mlx_vlm", "convert", "--hf-path", str(src), "--mlx-path", str(out),
           "-q", "--q-bits", "4", "--q-group-size", "64"]
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    shutil.copytree(src, out.with_name(out.name + ".bf16"), dirs_exist_ok=True)
    meta = {"steps": done, "batch": args.batch, "lr": args.lr, "seed": args.seed, "pairs": len(data.samples),
            "images": len(data.pixels), "parameters": n_params, "seconds": round(time.time() - started, 1),
            "final_loss_smoothed": smooth, "device": str(mx.default_device()), "mlx": mx.__version__}
    (out.with_name(out.name + ".train.json")).write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(work)
    print(f"[train] done: {json.dumps(meta)}", file=sys.stderr)


if __name__ == "__main__":
    main()
