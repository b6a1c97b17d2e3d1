"""Which module of mlx-vlm's Gemma 4 first differs between the GPU and the CPU stream?

For the open PLE bug (charts/gpu/h100-paced/README.md). Every module of the language model records
its output (each call, in call order) during one forward pass of a saved prompt on the CPU stream
and one on the default device; the first module whose output differs by more than a relative 1e-3,
with every module called before it in agreement, is where the GPU goes wrong. Run with and without
mlx-vlm's KV caches (the caches add the rotating-window update and the cache-offset RoPE).

    python3 ple_bisect.py MODEL_DIR IDS_JSON   (IDS_JSON: `vlmbench generate --json` output)
"""
import json
import sys

import mlx.core as mx
import mlx.nn as nn
from mlx_vlm import load

RECORD: list = []
NAMES: dict = {}


def arrays(out):
    if isinstance(out, mx.array):
        return [out]
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in arrays(o)]
    return []


def patch(module: nn.Module) -> None:
    for name, m in module.named_modules():
        NAMES[id(m)] = name or "language_model"
    for cls in {type(m) for _, m in module.named_modules()}:
        original = cls.__call__

        def wrapped(self, *args, __original=original, **kwargs):
            out = __original(self, *args, **kwargs)
            RECORD.append((NAMES.get(id(self), type(self).__name__), [a.astype(mx.float32) for a in arrays(out)]))
            return out

        cls.__call__ = wrapped


def forward(model, ids, device, with_cache: bool):
    RECORD.clear()
    with mx.stream(device):
        cache = model.language_model.make_cache() if with_cache else None
        out = model.language_model(ids, cache=cache)
        logits = out.logits if hasattr(out, "logits") else out
        trace = list(RECORD)
        mx.eval(logits, [a for _, outs in trace for a in outs])
    return logits[0, -1], trace


def compare(model, ids, with_cache: bool) -> None:
    want_logits, want = forward(model, ids, mx.cpu, with_cache)
    got_logits, got = forward(model, ids, mx.default_device(), with_cache)
    label = "with KV caches" if with_cache else "no cache"
    print(f"{label}: CPU top 1 {mx.argmax(want_logits).item()}, GPU top 1 {mx.argmax(got_logits).item()}, "
          f"{len(want)} module calls on the CPU, {len(got)} on the GPU")
    shown = 0
    for i, ((name, outs_c), (name_g, outs_g)) in enumerate(zip(want, got)):
        for j, (c, g) in enumerate(zip(outs_c, outs_g)):
            if c.shape != g.shape:
                print(f"  call {i} {name}[{j}]: shape {c.shape} on the CPU, {g.shape} on the GPU")
                shown += 1
                continue
            scale = max(mx.abs(c).max().item(), 1e-6)
            err = mx.abs(c - g).max().item() / scale
            if err > 1e-3:
                print(f"  call {i} {name}[{j}] shape {tuple(c.shape)}: max |gpu - cpu| / max |cpu| = {err:.2e}"
                      + ("" if name == name_g else f" (GPU call is {name_g})"))
                shown += 1
        if shown >= 12:
            print("  (stopping after 12 differences)")
            break
    if shown == 0:
        print("  every module output agrees within 1e-3")


def main() -> None:
    model, _ = load(sys.argv[1])
    model.set_dtype(mx.float32)
    patch(model.language_model)
    ids = mx.array([json.load(open(sys.argv[2]))["prompt_ids"]])
    print(f"{ids.shape[1]} prompt tokens, default device {mx.default_device()}")
    for with_cache in (False, True):
        compare(model, ids, with_cache)


if __name__ == "__main__":
    main()
