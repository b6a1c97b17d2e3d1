"""mlx-vlm's next-token top 3 for saved prompts, on MLX's default device (the GPU on a CUDA build).

For the open PLE bug (charts/gpu/h100-paced/README.md): vlmbench's GPU tokens on the tiny PLE
checkpoint differ from the CPU's. Run twice on the GPU: if mlx-vlm's top 1 also differs from the
CPU's (or between its own runs), MLX's CUDA backend is at fault, not vlmbench's model code.

    python3 ple_reference.py MODEL_DIR IDS_JSON...   (IDS_JSON: `vlmbench generate --json` output)
"""
import json
import sys

import mlx.core as mx
from mlx_vlm import load


def main() -> None:
    model, _ = load(sys.argv[1])
    model.set_dtype(mx.float32)
    for path in sys.argv[2:]:
        ids = mx.array([json.load(open(path))["prompt_ids"]])
        out = model.language_model(ids)
        logits = (out.logits if hasattr(out, "logits") else out)[0, -1].astype(mx.float32)
        top = mx.argsort(-logits)[:3].tolist()
        print(f"{path}: {ids.shape[1]} prompt tokens, mlx-vlm top 3 {top} "
              f"{[round(float(logits[i]), 4) for i in top]} on {mx.default_device()}")


if __name__ == "__main__":
    main()
