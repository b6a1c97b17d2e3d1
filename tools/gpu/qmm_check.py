"""MLX's 4-bit quantized_matmul on the default device (the GPU on a CUDA build) against the CPU
stream, at the small shapes of the tiny checkpoints.

For the open PLE bug (charts/gpu/h100-paced/README.md). The tiny PLE checkpoint has one KV head of
32 dimensions on its sliding layers, so its k_proj and v_proj have 32 output rows, and its
per-layer projection reads 64 inputs (one quantization group); the dense tiny's products all have
64 or more output rows, and it decodes right on the GPU. Tensor parallelism splits the dense tiny's
two sliding-layer KV heads one per rank: 32 rows again, and wrong tokens again. This sweeps output
rows, inputs, activation rows and dtypes (each new shape costs a kernel build on CUDA, so few);
each case runs twice on the device.

    python3 qmm_check.py                 # the small shapes, against the CPU stream (quantized_matmul,
                                         # the quantized embedding lookup, gather_qmm for MoE experts)
    python3 qmm_check.py --model-shapes  # Gemma-4-31B's products at 2-2048 rows, bfloat16 operands,
                                         # against the float32 product on the device (run with
                                         # MLX_ENABLE_TF32=0): MLX's GEMM differed by 50-70% at four
                                         # of these shapes at 512 and 2048 rows (charts/gpu/h100-prefill,
                                         # h100-paced); are short prompts (under 256 rows, which
                                         # vlmbench leaves to MLX's GEMM) affected too?
                                         # (GPU only: MLX's CPU bfloat16 product is 12-14% off there.)
"""
import itertools
import sys

import mlx.core as mx


def against_cpu(run, relative=True):
    """`run(stream)` on the CPU stream and twice on the default device: the largest |device - CPU|
    (relative to the largest |CPU| value unless `relative` is false) and |device run 1 - run 2|."""
    want, first, second = run(mx.cpu), run(mx.default_device()), run(mx.default_device())
    mx.eval(want, first, second)
    scale = max(mx.abs(want.astype(mx.float32)).max().item(), 1e-6) if relative else 1.0
    err = mx.abs((first - want).astype(mx.float32)).max().item() / scale
    rerun = mx.abs((first - second).astype(mx.float32)).max().item()
    return err, rerun


def case(m, n, k, group, dtype, transpose=True):
    mx.random.seed(m * 7919 + n * 31 + k + group)
    w = mx.random.normal((n, k)) * 0.05
    x = (mx.random.normal((1, m, k))).astype(dtype)
    wq, scales, biases = mx.quantize(w, group_size=group, bits=4)
    scales, biases = scales.astype(dtype), biases.astype(dtype)

    def run(stream):
        return mx.quantized_matmul(x, wq, scales, biases, transpose=transpose, group_size=group, bits=4, stream=stream)

    return against_cpu(run)


def gather_case(rows, k, group, dtype):
    """A quantized embedding lookup as the models do it: take rows of the packed weight, then dequantize."""
    mx.random.seed(rows + k + group)
    w = mx.random.normal((384, k))
    wq, scales, biases = mx.quantize(w, group_size=group, bits=4)
    scales, biases = scales.astype(dtype), biases.astype(dtype)
    ids = mx.random.randint(0, 384, (1, rows))

    def run(stream):
        with mx.stream(stream):
            return mx.dequantize(wq[ids], scales[ids], biases[ids], group_size=group, bits=4)

    return against_cpu(run, relative=False)


def expert_case(m, k, group, dtype, sorted_indices):
    """MoE expert products as mlx-lm's SwitchGLU runs them: gather_qmm over 8 experts, top 2 per row,
    each row's expert ids as they come or (sorted_indices, as mlx-lm does for 64+ ids) sorted by expert."""
    mx.random.seed(m * 13 + k + group)
    experts, n, top = 8, 128, 2
    wq, scales, biases = mx.quantize(mx.random.normal((experts, n, k)) * 0.05, group_size=group, bits=4)
    scales, biases = scales.astype(dtype), biases.astype(dtype)
    x = mx.random.normal((1, m, 1, 1, k)).astype(dtype)
    ids = mx.random.randint(0, experts, (1, m, top)).astype(mx.uint32)
    if sorted_indices:
        order = mx.argsort(ids.flatten())
        ids = ids.flatten()[order]
        x = mx.broadcast_to(x, (1, m, top, 1, k)).reshape(-1, 1, k)[order]

    def run(stream):
        return mx.gather_qmm(x, wq, scales, biases, rhs_indices=ids, transpose=True, group_size=group, bits=4,
                             sorted_indices=sorted_indices, stream=stream)

    return against_cpu(run)


# (K, N) of the 31B decoder's products, as in tools/gpu/prefill_matmul.py.
MODEL_SHAPES = [(5376, 8192), (5376, 4096), (8192, 5376), (5376, 16384), (5376, 2048), (16384, 5376),
                (5376, 21504), (21504, 5376)]
ROWS = (2, 8, 32, 128, 255, 512, 2048)


def model_shapes():
    print(f"device {mx.default_device()}; bfloat16 MLX quantized_matmul against the float32 product of the same "
          "operands, relative max error, run 1 and run 2")
    bad = 0
    for m, (k, n) in itertools.product(ROWS, MODEL_SHAPES):
        mx.random.seed(m + k + n)
        x = mx.random.normal((m, k)).astype(mx.bfloat16)
        wq, s, b = mx.quantize((mx.random.normal((n, k)) * 0.02).astype(mx.bfloat16), group_size=64, bits=4)
        ref = x.astype(mx.float32) @ mx.dequantize(wq, s, b, group_size=64, bits=4).astype(mx.float32).T
        runs = [mx.quantized_matmul(x, wq, s, b, transpose=True, group_size=64, bits=4) for _ in range(2)]
        scale = mx.abs(ref).max()
        errs = [(mx.abs(y.astype(mx.float32) - ref).max() / scale).item() for y in runs]
        flag = "" if max(errs) < 1e-2 else "  <-- WRONG"
        bad += bool(flag)
        print(f"qmm bfloat16 {m}x{k}x{n}: {errs[0]:.1e} {errs[1]:.1e}{flag}")
    print(f"{bad} wrong case(s)")


def main():
    if "--model-shapes" in sys.argv[1:]:
        return model_shapes()
    print(f"device {mx.default_device()}; relative max |device - cpu| and |device run 1 - run 2|")
    bad = 0
    for label, tol, (err, rerun) in itertools.chain(small_cases(), embedding_cases(), expert_cases()):
        flag = "" if err < tol and rerun == 0 else "  <-- WRONG"
        bad += bool(flag)
        print(f"{label}: {err:.2e} {rerun:.2e}{flag}")
    print(f"{bad} wrong case(s)")


def small_cases():
    # (inputs, group size): one group, two groups of 32, and from 96 to 256 inputs.
    inner = ((32, 32), (64, 32), (64, 64), (96, 32), (128, 64), (192, 64), (256, 64))
    for dtype, (k, group), n, m in itertools.product((mx.float32,), inner, (128,), (2, 63)):
        # bfloat16 results round to 8 bits; the CPU and the GPU also sum in different orders.
        tol = 1e-3 if dtype == mx.float32 else 5e-2
        yield f"qmm {dtype} group={group} N={n} K={k} M={m}", tol, case(m, n, k, group, dtype)


def embedding_cases():
    for dtype, group, k, rows in itertools.product((mx.float32,), (64,), (64, 128), (1, 63)):
        yield f"embedding {dtype} group={group} K={k} rows={rows}", 1e-2, gather_case(rows, k, group, dtype)


def expert_cases():
    # vlmbench pads quantized_matmul's one-group products on CUDA but not gather_qmm's (the tiny MoE's
    # expert down-projections read 64 inputs and its GPU tokens matched the CPU's): checked op by op here.
    for k, m, sorted_indices in itertools.product((64, 128), (1, 63), (False, True)):
        yield (f"gather_qmm float32 group=64 K={k} rows={m} sorted={sorted_indices}", 1e-3,
               expert_case(m, k, 64, mx.float32, sorted_indices))


if __name__ == "__main__":
    main()
