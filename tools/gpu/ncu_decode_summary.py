#!/usr/bin/env python3
"""Summarises Nsight Compute CSV records of a decode stretch (tools/gpu/profile-31b.sh writes them:
`ncu --csv --page raw --metrics gpu__time_duration.sum,dram__bytes_read.sum`): kernels per decoder
layer, GPU time per layer split into 4-bit products (MLX's qmv/qmm, vlmbench's qgemv4) and everything else, achieved DRAM read
bandwidth of the GEMVs, and the most frequent non-GEMV kernels.

Layers are counted by the MLP projections (the three ~65 MB qmv reads per layer of the 31B shapes).
ncu serialises kernels and may lock clocks, so absolute times are slower than in a normal run; use
the numbers to compare the two programs, not as a speed.

    tools/gpu/ncu_decode_summary.py ncu-vlmbench.csv ncu-mlx-vlm.csv
"""
import collections
import csv
import re
import sys

TIME = {"ns": 1, "nsecond": 1, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6}
BYTES = {"byte": 1, "B": 1, "Kbyte": 1e3, "KB": 1e3, "Mbyte": 1e6, "MB": 1e6, "Gbyte": 1e9, "GB": 1e9}


def kernels(path):
    rows = list(csv.reader(line for line in open(path) if line.startswith('"')))
    head, units, data = rows[0], rows[1], rows[2:]
    k, t, b = head.index("Kernel Name"), head.index("gpu__time_duration.sum"), head.index("dram__bytes_read.sum")
    return [(re.sub(r"<.*", "", d[k]).replace("void ", ""),
             float(d[t].replace(",", "")) * TIME[units[t]],
             float(d[b].replace(",", "")) * BYTES[units[b]]) for d in data]


def is_product(name):
    """A 4-bit matrix product: MLX's qmv / qmm kernels or vlmbench's qgemv4."""
    return any(p in name for p in ("qmv", "qmm", "qgemv"))


def summary(path):
    ks = kernels(path)
    layers = sum(1 for _, _, b in ks if 60e6 < b < 70e6) / 3
    if not layers:
        return f"{path}: no decoder-layer MLP GEMVs found"
    q = [x for x in ks if is_product(x[0])]
    other = [x for x in ks if not is_product(x[0])]
    qt, qb = sum(x[1] for x in q), sum(x[2] for x in q)
    ot = sum(x[1] for x in other)
    lines = [f"{path}: {len(ks)} kernels = {layers:.1f} decoder layers -> {len(ks) / layers:.1f} kernels per layer",
             f"  GPU time per layer {(qt + ot) / layers / 1e3:.0f} us: qmv {qt / layers / 1e3:.0f} us "
             f"({len(q) / layers:.1f} launches, {qb / qt:.0f} GB/s DRAM read), "
             f"other {ot / layers / 1e3:.0f} us ({len(other) / layers:.1f} launches)"]
    head = [x for x in ks if x[2] > 5e8]
    if head:
        lines.append(f"  LM head GEMV: {head[0][2] / 1e6:.0f} MB in {head[0][1] / 1e3:.0f} us = {head[0][2] / head[0][1]:.0f} GB/s")
    counts = collections.Counter(x[0].replace("mlx::", "")[:40] for x in other)
    times = collections.Counter()
    for name, t, _ in other:
        times[name.replace("mlx::", "")[:40]] += t
    lines.append("  other kernels per layer (launches, us): " + ", ".join(
        f"{n} {counts[n] / layers:.1f} {t / layers / 1e3:.1f}" for n, t in times.most_common(14)))
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for p in sys.argv[1:]:
        print(summary(p))
