"""Reference values for vlmbench's numpy reproductions (tests/numpy_parity.rs).

Prints one JSON object: legacy RandomState draws (as IEEE-754 bit patterns, so nothing is lost in
decimal) and np.argsort results for tie-heavy float32 arrays. Run with NPY_DISABLE_CPU_FEATURES
set to switch numpy's SIMD sorts off (their tie order is machine-specific).
"""
import json
import struct
import sys

import numpy as np


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def main():
    out = {"rng": [], "argsort": []}
    for seed in [0, 1, 42, 12345, 2**32 - 1]:
        np.random.seed(seed)
        uniform = [bits(np.random.random()) for _ in range(2500)]
        # Odd counts, so the cached second gaussian carries across calls and into the next one.
        normal_a = [bits(v) for v in np.random.normal(0, 0.05, 1001)]
        normal_b = [bits(v) for v in np.random.normal(1.5, 0.08, 999)]
        tail = [bits(np.random.random()) for _ in range(500)]
        out["rng"].append({"seed": seed, "uniform": uniform, "normal_a": normal_a, "normal_b": normal_b, "tail": tail})
    gen = np.random.RandomState(7)
    for case in range(400):
        n = int(gen.randint(1, 300))
        levels = int(gen.randint(1, 6))
        values = (gen.randint(0, levels, size=n) / 4.0).astype(np.float32)
        out["argsort"].append({"values": [float(v) for v in values], "order": [int(i) for i in np.argsort(values)]})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
