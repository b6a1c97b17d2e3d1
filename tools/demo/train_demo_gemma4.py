#!/usr/bin/env python3
"""Train vlmbench's built-in demo model: a tiny Gemma 4 (dense flavour) that answers the tasks' own
prompts about synthetic scenes (issue #27). Transformers' Gemma 4 trains it (PyTorch, CPU or CUDA);
mlx-vlm prepares its inputs and converts it, so it learns exactly what mlx-vlm and vlmbench feed it.

    tools/demo/.venv/bin/python tools/demo/train_demo_gemma4.py DATA_DIR OUT_DIR
        [--steps N] [--batch B] [--lr LR] [--seed S] [--time-budget SECONDS]

DATA_DIR is `vlmbench make-scenes DATA_DIR --training` (images/ and pairs.jsonl). Steps:
  1. tokenizer: Gemma-style BPE (byte fallback, every Gemma 4 special token at a small id, digits kept
     one per token) whose merges are learned from the pairs' prompts and answers;
  2. config: the dense (31B) flavour of tools/reference/build_tiny_gemma4.py at demo size;
  3. inputs as mlx-vlm makes them at inference (apply_chat_template, prepare_inputs: the processor's
     resize, the image tokens, mm_token_type_ids for the bidirectional image mask); pixels cut into
     transformers' patch layout. Before training, a random model's logits under transformers and under
     mlx-vlm (the same weights saved and loaded back) must agree: the two graphs are one;
  4. training: cross-entropy on the answer tokens and the closing <turn|>, AdamW with warm-up and
     cosine decay, batches of similar length; the loss curve goes to OUT_DIR.train-log.jsonl as it runs;
  5. the weights saved in bf16 under transformers' names (OUT_DIR.hf: --init continues from them), then
     mlx-vlm's converter:
     `python -m mlx_vlm convert -q --q-bits 4 --q-group-size 64` (the mlx-community recipe);
     OUT_DIR.train.json records the run (steps, time, losses, the check).
Everything is drawn from --seed: the same data, seed and library versions give the same checkpoint.
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
import numpy as np  # noqa: E402
import torch  # noqa: E402

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


def patches(pixels: np.ndarray, patch: int):
    """mlx-vlm's (3, H, W) pixels in transformers' layout: (patches, patch*patch*3) in row-major patch
    order, each patch's pixels row by row with channels last, and each patch's (x, y) grid position."""
    c, h, w = pixels.shape
    ph, pw = h // patch, w // patch
    x = pixels.reshape(c, ph, patch, pw, patch).transpose(1, 3, 2, 4, 0).reshape(ph * pw, -1)
    gx, gy = np.meshgrid(np.arange(pw), np.arange(ph), indexing="xy")
    return x, np.stack([gx, gy], axis=-1).reshape(ph * pw, 2)


class Data:
    """The pairs as the model sees them at inference (mlx-vlm's template and processor), answers as ids
    ending in <turn|>. Every scene has the same size, so a prompt expands to the same ids whatever the
    image: ids are made once per prompt, pixels once per image."""

    def __init__(self, data: Path, pairs, processor, config):
        from mlx_vlm.prompt_utils import apply_chat_template
        from mlx_vlm.utils import prepare_inputs

        tok = processor.tokenizer
        end = tok.convert_tokens_to_ids("<turn|>")
        patch = config.vision_config.patch_size
        prepared = {}

        def prepare(prompt, image):
            text = apply_chat_template(processor, config, prompt, num_images=1)
            inputs = prepare_inputs(processor, images=[str(data / image)], audio=None, videos=None,
                                    prompts=text, image_token_index=None, resize_shape=None,
                                    add_special_tokens=False)
            ids = [int(x) for x in np.array(inputs["input_ids"]).reshape(-1)]
            types = [int(x) for x in np.array(inputs["mm_token_type_ids"]).reshape(-1)]
            return ids, types, np.array(inputs["pixel_values"][0].astype(mx.float32))

        self.samples, self.pixels, self.mlx_pixels = [], {}, {}
        for p in pairs:
            if p["image"] not in self.pixels:
                raw = prepare(pairs[0]["prompt"], p["image"])[2]
                self.mlx_pixels[p["image"]] = raw
                x, pos = patches(raw, patch)
                self.pixels[p["image"]] = (torch.from_numpy(x.copy()), torch.from_numpy(pos))
            if p["prompt"] not in prepared:
                prepared[p["prompt"]] = prepare(p["prompt"], p["image"])[:2]
            ids, types = prepared[p["prompt"]]
            answer = tok.encode(p["answer"], add_special_tokens=False) + [end]
            self.samples.append((ids, types, answer, p["image"], p["task"]))

    def length(self, i):
        ids, _, answer, _, _ = self.samples[i]
        return len(ids) + len(answer)

    def batch(self, idx):
        rows = [self.samples[i] for i in idx]
        n = max(len(p) + len(a) for p, _, a, _, _ in rows)
        ids = torch.zeros((len(rows), n), dtype=torch.long)
        types = torch.zeros((len(rows), n), dtype=torch.long)
        weight = torch.zeros((len(rows), n))
        for r, (p, t, a, _, _) in enumerate(rows):
            seq = p + a
            ids[r, : len(seq)] = torch.tensor(seq)
            types[r, : len(t)] = torch.tensor(t)
            # Position j predicts token j+1: the answer's tokens are predicted from len(p)-1 on.
            weight[r, len(p) - 1 : len(seq) - 1] = 1.0
        pixels = torch.stack([self.pixels[img][0] for _, _, _, img, _ in rows])
        positions = torch.stack([self.pixels[img][1] for _, _, _, img, _ in rows])
        return ids, types, weight, pixels, positions


def logits_of(model, ids, types, pixels, positions):
    out = model(input_ids=ids, pixel_values=pixels, image_position_ids=positions, mm_token_type_ids=types)
    return out.logits


def loss_of(model, ids, types, weight, pixels, positions):
    logits = logits_of(model, ids[:, :-1], types[:, :-1], pixels, positions).float()
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    w = weight[:, :-1]
    return (ce * w).sum() / w.sum()


def save(model, d: Path, src: Path):
    """The weights under transformers' names; config.json stays ours (transformers 5.23 writes its own
    without global_head_dim, which mlx-vlm then reads as its default)."""
    model.save_pretrained(d, safe_serialization=True)
    shutil.copy(src / "config.json", d / "config.json")


def same_graph_check(model, data: Data, src: Path, work: Path) -> float:
    """Largest |logit difference| at the text positions of one sample between transformers and mlx-vlm
    (float32, the same random weights written and read back): what trains here is what mlx-vlm and
    vlmbench run."""
    from mlx_vlm import load

    d = work / "check"
    d.mkdir()
    for f in src.iterdir():
        shutil.copy(f, d / f.name)
    save(model, d, src)
    ref, _ = load(str(d))
    ids, types, _, pixels, positions = data.batch([0])
    with torch.no_grad():
        ours = logits_of(model, ids, types, pixels, positions).float().numpy()
    image = data.samples[0][3]
    theirs = ref(mx.array(ids.numpy()), pixel_values=mx.array(data.mlx_pixels[image][None]),
                 mm_token_type_ids=mx.array(types.numpy()))
    theirs = np.array((theirs.logits if hasattr(theirs, "logits") else theirs).astype(mx.float32))
    # Text positions only: the two libraries mask the image block of a full-attention layer differently
    # (bidirectional in one, causal in the other), which moves the image positions' own outputs of the
    # last layer, a full one here, and nothing else: they feed no later layer and are never trained on.
    text = types.numpy()[0] == 0
    return float(np.abs(ours - theirs)[0][text].max())


def batches(data: Data, batch: int, rng: random.Random, weights: dict):
    """Endless batches: each pass shuffled, cut into runs of 50 batches sorted by length (little padding).
    A task of weight w comes w times a pass."""
    while True:
        order = [i for i, sample in enumerate(data.samples) for _ in range(weights.get(sample[4], 1))]
        rng.shuffle(order)
        chunk = batch * 50
        for i in range(0, len(order) - batch + 1, chunk):
            part = sorted(order[i : i + chunk], key=data.length)
            group = [part[j : j + batch] for j in range(0, len(part) - batch + 1, batch)]
            rng.shuffle(group)
            yield from group


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--time-budget", type=float, default=0.0,
                    help="seconds since the start: fit the step count to it (measured over the first 20 "
                         "steps), keeping --save-seconds for saving and converting; 0: no limit")
    ap.add_argument("--save-seconds", type=float, default=30.0)
    ap.add_argument("--weights", default="",
                    help="how often a task comes a pass, as task=N,... (default 1 each; pairs.jsonl names the tasks)")
    ap.add_argument("--init", type=Path,
                    help="start from these weights (an earlier run's OUT_DIR.hf) instead of transformers' init")
    args = ap.parse_args()

    began = time.time()
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
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
    from transformers import AutoConfig, Gemma4ForConditionalGeneration

    mc = gemma4.ModelConfig.from_dict(config)
    mc = update_module_configs(mc, gemma4, config, ["text", "vision", "audio"])
    processor = load_processor(src, add_detokenizer=False)
    t0 = time.time()
    data = Data(args.data_dir, pairs, processor, mc)
    lens = [data.length(i) for i in range(len(data.samples))]
    hf_config = AutoConfig.from_pretrained(src)
    hf_config.torch_dtype = torch.float32
    if args.init:
        model = Gemma4ForConditionalGeneration.from_pretrained(args.init, config=hf_config, dtype=torch.float32)
    else:
        model = Gemma4ForConditionalGeneration(hf_config).float()
    model.eval()
    diff = same_graph_check(model, data, src, work)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[train] {n_params / 1e6:.2f} M parameters; {len(data.samples)} pairs on {len(data.pixels)} images "
          f"(sequence {min(lens)}-{max(lens)} tokens, mean {np.mean(lens):.0f}); prepared in {time.time() - t0:.0f} s; "
          f"transformers vs mlx-vlm logits: max |diff| {diff:.2e}", file=sys.stderr)
    if not diff < 1e-3:
        sys.exit(f"train_demo_gemma4.py: error: transformers and mlx-vlm disagree on the same weights "
                 f"(max |logit diff| {diff}): training here would not teach the model mlx-vlm runs")

    device = torch.device(args.device)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    total = args.steps

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        t = min(1.0, (step - args.warmup) / max(1, total - args.warmup))
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))

    log = out.with_name(out.name + ".train-log.jsonl")
    log.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: int(v) for k, v in (w.split("=") for w in args.weights.split(",") if w)}
    stream = batches(data, args.batch, rng, weights)
    started, smooth, s = time.time(), None, 0
    with log.open("w") as f:
        while s < total:
            for g in opt.param_groups:
                g["lr"] = lr_at(s)
            batch = [t.to(device) for t in data.batch(next(stream))]
            loss = loss_of(model, *batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss = loss.item()
            smooth = loss if smooth is None else 0.98 * smooth + 0.02 * loss
            elapsed = time.time() - started
            f.write(json.dumps({"step": s, "loss": round(loss, 5), "lr": lr_at(s), "grad_norm": round(norm.item(), 4),
                                "seconds": round(elapsed, 2)}) + "\n")
            if s % 50 == 0 or s == total - 1:
                f.flush()
                print(f"[train] step {s}/{total} loss {loss:.4f} (smoothed {smooth:.4f}) {elapsed:.0f} s", file=sys.stderr)
            s += 1
            if args.time_budget and s == 20:
                # The step count that fits the budget, fixed once so the schedule decays to its end; the
                # count goes into OUT_DIR.train.json (--steps N reproduces the run without a budget).
                left = args.time_budget - (time.time() - began) - args.save_seconds
                total = max(s, min(args.steps, s + int(left / (elapsed / s))))
                print(f"[train] {elapsed / s:.3f} s a step: {total} steps fit the budget", file=sys.stderr)

    model.to("cpu").eval()
    bf16 = work / "bf16"
    shutil.copytree(src, bf16)
    save(model.to(torch.bfloat16), bf16, src)
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "mlx_vlm", "convert", "--hf-path", str(bf16), "--mlx-path", str(out),
           "-q", "--q-bits", "4", "--q-group-size", "64"]
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    hf = out.with_name(out.name + ".hf")
    shutil.rmtree(hf, ignore_errors=True)
    shutil.copytree(bf16, hf)
    meta = {"steps": s, "init": str(args.init) if args.init else None, "weights": weights, "batch": args.batch, "lr": args.lr, "warmup": args.warmup, "seed": args.seed,
            "pairs": len(data.samples), "images": len(data.pixels), "parameters": n_params,
            "train_seconds": round(time.time() - started, 1), "final_loss_smoothed": smooth,
            "device": str(device), "torch": torch.__version__, "mlx": mx.__version__,
            "check_max_logit_diff": diff}
    (out.with_name(out.name + ".train.json")).write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(work)
    print(f"[train] done: {json.dumps(meta)}", file=sys.stderr)


if __name__ == "__main__":
    main()
