#!/usr/bin/env python3
"""Image-side reference for vlmbench's vision parity tests (mlx-vlm 0.7.10 + Pillow on MLX 0.32.2).

    gemma4_vision_ref.py encode --model DIR --image P [--image P ...] [--dtype float32|bfloat16]
        --prompt TEXT --out DIR
        mlx-vlm's own pipeline (apply_chat_template, prepare_inputs, Model.encode_image). Writes
        DIR/ref.json (prompt, input_ids, mm_token_type_ids sum, per-image pixel_values shape and
        sha256 of the float32 C-order bytes) and DIR/tensors.safetensors (pixel_values_<i> float32,
        features: the projected soft tokens cast to float32).

    gemma4_vision_ref.py resize --image P --size WxH [--size WxH ...] --out DIR
        Pillow's Image.open(P).convert("RGB").resize((W, H), Image.BICUBIC) for each size; writes
        DIR/<W>x<H>.rgb (raw interleaved RGB bytes).

    gemma4_vision_ref.py load --image P --out FILE.rgb
        mlx-vlm's load_image (EXIF transpose, RGB); writes WxH as 8 bytes (two little-endian
        uint32) followed by the raw RGB bytes.

    gemma4_vision_ref.py samples --image SRC.png --out DIR
        Files in the layouts and formats vlmbench must load like Pillow, made by Pillow from SRC:
        EXIF-oriented PNG (orientations 3, 6, 8) and JPEG (6), JPEG (4:2:0 and 4:4:4, grayscale), WebP
        (lossless, lossy), palette PNG, RGBA PNG, LA PNG, 16-bit grayscale PNG. Prints the names.

    gemma4_vision_ref.py photo --out FILE.png
        skimage/data/chelsea.png (451x300 photo) from the scikit-image 0.26.0 wheel, downloaded with
        pip into $VLMBENCH_CACHE_DIR/wheels when not there yet.
"""
import argparse
import hashlib
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")


def cmd_encode(a):
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_map
    from mlx_vlm import load
    from mlx_vlm.prompt_utils import apply_chat_template
    from mlx_vlm.utils import prepare_inputs, should_add_special_tokens

    model, processor = load(str(a.model))
    if a.dtype == "float32":  # the same float32 policy as gemma4_run.py
        model.update(tree_map(lambda p: p.astype(mx.float32) if mx.issubdtype(p.dtype, mx.floating) else p,
                              model.parameters()))
    prompt = apply_chat_template(processor, model.config, a.prompt, num_images=len(a.image))
    inputs = prepare_inputs(processor, images=a.image, prompts=prompt,
                            add_special_tokens=should_add_special_tokens(model.config.model_type, processor))
    pv = inputs["pixel_values"]
    pvs = list(pv) if isinstance(pv, list) else [pv[i] for i in range(pv.shape[0])]
    feats = model.encode_image(pv)
    tensors = {"features": feats.astype(mx.float32)}
    images = []
    for i, p in enumerate(pvs):
        p = mx.array(p) if not isinstance(p, mx.array) else p
        arr = np.array(p.astype(mx.float32))
        tensors[f"pixel_values_{i}"] = p.astype(mx.float32)
        images.append({"shape": list(arr.shape),
                       "sha256": hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()})
    a.out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(a.out / "tensors.safetensors"), tensors)
    ids = [int(x) for x in np.array(inputs["input_ids"]).reshape(-1)]
    rec = {
        "prompt": prompt,
        "input_ids": ids,
        "batched": not isinstance(pv, list),
        "images": images,
        "mm_token_type_ids_sum": int(np.array(inputs["mm_token_type_ids"]).sum()),
        "features_shape": list(feats.shape),
    }
    (a.out / "ref.json").write_text(json.dumps(rec, indent=1) + "\n")


def cmd_resize(a):
    from PIL import Image

    a.out.mkdir(parents=True, exist_ok=True)
    im = Image.open(a.image).convert("RGB")
    for s in a.size:
        w, h = (int(t) for t in s.lower().split("x"))
        (a.out / f"{w}x{h}.rgb").write_bytes(im.resize((w, h), resample=Image.BICUBIC).tobytes())


def cmd_load(a):
    from mlx_vlm.utils import load_image

    im = load_image(str(a.image))
    a.out.write_bytes(struct.pack("<II", im.width, im.height) + im.tobytes())


def exif_with_orientation(o):
    from PIL import Image

    ex = Image.Exif()
    ex[0x0112] = o
    return ex.tobytes()


def cmd_samples(a):
    import numpy as np
    from PIL import Image

    a.out.mkdir(parents=True, exist_ok=True)
    src = Image.open(a.image).convert("RGB")
    made = []

    def save(name, im, **kw):
        im.save(a.out / name, **kw)
        made.append(name)

    for o in (3, 6, 8):
        save(f"exif{o}.png", src, exif=exif_with_orientation(o))
    save("exif6.jpg", src, quality=90, exif=exif_with_orientation(6))
    save("q90_420.jpg", src, quality=90, subsampling=2)
    save("q95_444.jpg", src, quality=95, subsampling=0)
    save("gray.jpg", src.convert("L"), quality=90)
    save("lossless.webp", src, lossless=True)
    save("lossy.webp", src, quality=80)
    save("palette.png", src.convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    rgba = src.copy()
    rgba.putalpha(Image.fromarray((np.arange(src.width * src.height) % 251).astype(np.uint8).reshape(src.height, src.width)))
    save("rgba.png", rgba)
    save("la.png", rgba.convert("LA"))
    g16 = (np.array(src.convert("L"), dtype=np.uint16) * 3).astype(np.uint16)
    save("gray16.png", Image.fromarray(g16))
    print("\n".join(made))


def cmd_photo(a):
    cache = Path(os.environ.get("VLMBENCH_CACHE_DIR", Path.home() / ".cache" / "vlmbench")) / "wheels"
    name = "scikit_image-0.26.0"
    wheels = sorted(cache.glob(f"{name}-*.whl"))
    if not wheels:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "scikit-image==0.26.0", "-d", str(cache)], check=True)
        wheels = sorted(cache.glob(f"{name}-*.whl"))
    if not wheels:
        sys.exit(f"gemma4_vision_ref.py: no {name} wheel in {cache}")
    with zipfile.ZipFile(wheels[0]) as z:
        data = z.read("skimage/data/chelsea.png")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_bytes(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encode")
    e.add_argument("--model", required=True, type=Path)
    e.add_argument("--image", action="append", required=True)
    e.add_argument("--prompt", default="Describe this image.")
    e.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    e.add_argument("--out", required=True, type=Path)
    r = sub.add_parser("resize")
    r.add_argument("--image", required=True, type=Path)
    r.add_argument("--size", action="append", required=True)
    r.add_argument("--out", required=True, type=Path)
    lo = sub.add_parser("load")
    lo.add_argument("--image", required=True, type=Path)
    lo.add_argument("--out", required=True, type=Path)
    sm = sub.add_parser("samples")
    sm.add_argument("--image", required=True, type=Path)
    sm.add_argument("--out", required=True, type=Path)
    p = sub.add_parser("photo")
    p.add_argument("--out", required=True, type=Path)
    a = ap.parse_args()
    {"encode": cmd_encode, "resize": cmd_resize, "load": cmd_load, "samples": cmd_samples,
     "photo": cmd_photo}[a.cmd](a)


if __name__ == "__main__":
    main()
