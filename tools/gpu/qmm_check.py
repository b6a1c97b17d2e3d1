"""MLX's 4-bit quantized_matmul on the default device (the GPU on a CUDA build) against the CPU
stream, at the small shapes of the tiny checkpoints.

For the open PLE bug (charts/gpu/h100-paced/README.md). The tiny PLE checkpoint has one KV head of
32 dimensions on its sliding layers, so its k_proj and v_proj have 32 output rows, and its
per-layer projection reads 64 inputs (one quantization group); the dense tiny's products all have
64 or more output rows, and it decodes right on the GPU. Tensor parallelism splits the dense tiny's
two sliding-layer KV heads one per rank: 32 rows again, and wrong tokens again. This sweeps output
rows, inputs, activation rows and dtypes (each new shape costs a kernel build on CUDA, so few);
each case runs twice on the device.

    python3 qmm_check.py
"""
import itertools

import mlx.core as mx


def case(m, n, k, group, dtype, transpose=True):
    mx.random.seed(m * 7919 + n * 31 + k + group)
    w = mx.random.normal((n, k)) * 0.05
    x = (mx.random.normal((1, m, k))).astype(dtype)
    wq, scales, biases = mx.quantize(w, group_size=group, bits=4)
    scales, biases = scales.astype(dtype), biases.astype(dtype)

    def run(stream):
        return mx.quantized_matmul(x, wq, scales, biases, transpose=transpose, group_size=group, bits=4, stream=stream)

    want, first, second = run(mx.cpu), run(mx.default_device()), run(mx.default_device())
    mx.eval(want, first, second)
    scale = max(mx.abs(want.astype(mx.float32)).max().item(), 1e-6)
    err = mx.abs((first - want).astype(mx.float32)).max().item() / scale
    rerun = mx.abs((first - second).astype(mx.float32)).max().item()
    return err, rerun


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

    want, first, second = run(mx.cpu), run(mx.default_device()), run(mx.default_device())
    mx.eval(want, first, second)
    err = mx.abs((first - want).astype(mx.float32)).max().item()
    rerun = mx.abs((first - second).astype(mx.float32)).max().item()
    return err, rerun


def main():
    print(f"device {mx.default_device()}; relative max |device - cpu| and |device run 1 - run 2|")
    bad = 0
    # (inputs, group size): one group, two groups of 32, and from 96 to 256 inputs.
    inner = ((32, 32), (64, 32), (64, 64), (96, 32), (128, 64), (192, 64), (256, 64))
    for dtype, (k, group), n, m in itertools.product((mx.float32,), inner, (128,), (2, 63)):
        err, rerun = case(m, n, k, group, dtype)
        # bfloat16 results round to 8 bits; the CPU and the GPU also sum in different orders.
        tol = 1e-3 if dtype == mx.float32 else 5e-2
        flag = "" if err < tol and rerun == 0 else "  <-- WRONG"
        bad += bool(flag)
        print(f"qmm {dtype} group={group} N={n} K={k} M={m}: {err:.2e} {rerun:.2e}{flag}")
    for dtype, group, k, rows in itertools.product((mx.float32,), (64,), (64, 128), (1, 63)):
        err, rerun = gather_case(rows, k, group, dtype)
        flag = "" if err < 1e-2 and rerun == 0 else "  <-- WRONG"
        bad += bool(flag)
        print(f"embedding {dtype} group={group} K={k} rows={rows}: {err:.2e} {rerun:.2e}{flag}")
    print(f"{bad} wrong case(s)")


if __name__ == "__main__":
    main()
