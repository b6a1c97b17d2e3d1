#!/usr/bin/env python3
"""Prefill's 4-bit matrix products on the GPU: MLX's quantized_matmul against dequantizing the
weight and multiplying in bfloat16 (cuBLAS), at Gemma-4-31B shapes and several prompt lengths.
Prints achieved TFLOP/s for both, so a prefill path can pick the faster per shape (issue #10).

    python3 tools/gpu/prefill_matmul.py [--lengths 512,1024,2048] [--json OUT]
"""
import argparse
import json
import time

import mlx.core as mx

# (K, N) of the 31B decoder's products: q, k/v (sliding), o, q (full), k (full), o (full), gate/up, down.
SHAPES = [(5376, 8192), (5376, 4096), (8192, 5376), (5376, 16384), (5376, 2048), (16384, 5376),
          (5376, 21504), (21504, 5376)]
REPS = 20


def timed(f):
    mx.eval(f())  # compile, warm caches
    start = time.perf_counter()
    outs = [f() for _ in range(REPS)]
    mx.eval(outs)
    return (time.perf_counter() - start) / REPS


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="512,1024,2048")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    print("| M x K x N | quantized_matmul ms | TFLOP/s | rel. error | dequantize + matmul ms | TFLOP/s | rel. error |")
    print("|---|---|---|---|---|---|---|")
    for m in (int(x) for x in args.lengths.split(",")):
        for k, n in SHAPES:
            x = mx.random.normal((m, k)).astype(mx.bfloat16)
            w = (mx.random.normal((n, k)) * 0.02).astype(mx.bfloat16)
            wq, s, b = mx.quantize(w, group_size=64, bits=4)
            mx.eval(x, wq, s, b)
            q = lambda: mx.quantized_matmul(x, wq, s, b, transpose=True, group_size=64, bits=4)
            d = lambda: x @ mx.dequantize(wq, s, b, group_size=64, bits=4).T
            tq, td = timed(q), timed(d)
            # Both against the float32 product of the same (rounded) operands.
            ref = x.astype(mx.float32) @ mx.dequantize(wq, s, b, group_size=64, bits=4).astype(mx.float32).T
            err = lambda y: (mx.abs(y.astype(mx.float32) - ref).max() / mx.abs(ref).max()).item()
            eq, ed = err(q()), err(d())
            flop = 2 * m * k * n
            rows.append({"m": m, "k": k, "n": n, "qmm_s": tq, "dequant_matmul_s": td, "qmm_rel_err": eq,
                         "dequant_matmul_rel_err": ed})
            print(f"| {m}x{k}x{n} | {tq * 1e3:.3f} | {flop / tq / 1e12:.0f} | {eq:.1e} | {td * 1e3:.3f} | "
                  f"{flop / td / 1e12:.0f} | {ed:.1e} |", flush=True)
    if args.json:
        json.dump({"device": str(mx.default_device()), "mlx": mx.__version__, "rows": rows},
                  open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
