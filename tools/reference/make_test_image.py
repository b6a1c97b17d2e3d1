#!/usr/bin/env python3
"""Write a deterministic synthetic RGB test image (PNG) for image-prompt parity runs.

    tools/reference/.venv/bin/python tools/reference/make_test_image.py OUT.png [--size 320x240] [--seed 0]

Content: smooth colour gradients, a few flat shapes with hard edges and mild seeded noise, so the
bicubic resize and the patch embedding see both smooth and sharp regions. Same pixels for the same
arguments (pure NumPy, no fonts).
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def make(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / max(width - 1, 1), y / max(height - 1, 1)
    img = np.stack([255 * u, 255 * v, 255 * (1 - u) * (0.5 + 0.5 * np.sin(6 * np.pi * v))], axis=-1)
    # a disc, a rectangle and a diagonal band with flat colours
    disc = (x - 0.3 * width) ** 2 + (y - 0.4 * height) ** 2 < (0.18 * min(width, height)) ** 2
    img[disc] = (230, 40, 40)
    rect = (x > 0.55 * width) & (x < 0.85 * width) & (y > 0.15 * height) & (y < 0.45 * height)
    img[rect] = (30, 200, 60)
    band = np.abs((x / width) - (y / height) - 0.2) < 0.04
    img[band] = (250, 250, 250)
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    w, h = (int(t) for t in a.size.lower().split("x"))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make(w, h, a.seed), "RGB").save(a.out)
    print(a.out)


if __name__ == "__main__":
    main()
