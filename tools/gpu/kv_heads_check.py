"""MLX's fused attention, RoPE, RMS norm and mlx-lm's rotating KV cache on the default device (the
GPU on a CUDA build) against the CPU stream.

Two GPU failures share one trait: sliding-window layers with one KV head. The tiny PLE checkpoint
(one KV head everywhere) and tensor parallelism over NCCL (the tiny dense model's two sliding-layer
KV heads split one per rank) give wrong tokens on CUDA, while dense and MoE on one GPU (two KV heads
on sliding layers, one on full layers) match the CPU. With one head, a transposed [B, L, 1, D] ->
[B, 1, L, D] view counts as contiguous, so MLX may take other kernel paths than with two. This
sweeps `mx.fast.rope` and `mx.fast.rms_norm` on such views, mlx-lm's rotating KV cache (window 16),
and `mx.fast.scaled_dot_product_attention` over the shapes those models use: KV heads 1 and 2, head
dims 32 and 64, query lengths 1 and full, inputs as transposed views, keys also as a prefix of a
preallocated cache buffer (as KV caches hand them out), no mask, causal, an additive array, or a
boolean causal or windowed mask (as vlmbench passes them). Each case runs twice on the device; a
difference between the two runs is reported too.

    python3 kv_heads_check.py
"""
import itertools

import mlx.core as mx


def case(n_kv, head_dim, q_len, kv_len, sliced, mask_kind, seed):
    n_q = 4
    mx.random.seed(seed)
    # Transposed views of [B, L, heads, D], as the models build them.
    q = mx.random.normal((1, q_len, n_q, head_dim)).transpose(0, 2, 1, 3)
    k = mx.random.normal((1, kv_len, n_kv, head_dim)).transpose(0, 2, 1, 3)
    v = mx.random.normal((1, kv_len, n_kv, head_dim)).transpose(0, 2, 1, 3)
    if sliced:
        # A prefix view of a larger buffer, as a KV cache preallocated in steps of 256 returns it.
        alloc = ((kv_len + 255) // 256) * 256 + 256
        kb = mx.zeros((1, n_kv, alloc, head_dim))
        vb = mx.zeros((1, n_kv, alloc, head_dim))
        kb[:, :, :kv_len, :] = k
        vb[:, :, :kv_len, :] = v
        mx.eval(kb, vb)
        k, v = kb[:, :, :kv_len, :], vb[:, :, :kv_len, :]
    mask = None
    if mask_kind == "causal":
        mask = "causal"
    elif mask_kind in ("array", "bool", "window"):
        # Additive, or boolean as vlmbench's models pass it (causal; "window": the sliding
        # layers' 16-key window).
        offset = kv_len - q_len
        rows = mx.arange(offset, offset + q_len)[:, None]
        cols = mx.arange(kv_len)[None, :]
        allowed = cols <= rows
        if mask_kind == "window":
            allowed = allowed & (rows < cols + 16)
        mask = allowed if mask_kind != "array" else mx.where(allowed, 0.0, -1e9).astype(q.dtype)
    scale = head_dim**-0.5

    def run(stream):
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask, stream=stream)

    want = run(mx.cpu)
    first, second = run(mx.default_device()), run(mx.default_device())
    mx.eval(want, first, second)
    err = mx.abs(first - want).max().item()
    rerun = mx.abs(first - second).max().item()
    return err, rerun


def elementwise_cases():
    """RoPE (offset 0 and 37) and RMS norm on transposed head views, 1 and 2 heads."""
    for heads, head_dim, length in itertools.product((1, 2, 4), (32, 64), (1, 63, 602)):
        mx.random.seed(heads * 1000 + head_dim + length)
        x = mx.random.normal((1, length, heads, head_dim))
        w = mx.random.normal((head_dim,))
        views = {
            "rope@0": lambda st: mx.fast.rope(x.transpose(0, 2, 1, 3), head_dim, traditional=False,
                                              base=10000.0, scale=1.0, offset=0, stream=st),
            "rope@37": lambda st: mx.fast.rope(x.transpose(0, 2, 1, 3), head_dim, traditional=False,
                                               base=10000.0, scale=1.0, offset=37, stream=st),
            "rms_norm": lambda st: mx.fast.rms_norm(x, w, 1e-6, stream=st).transpose(0, 2, 1, 3),
        }
        for name, op in views.items():
            want, first, second = op(mx.cpu), op(mx.default_device()), op(mx.default_device())
            mx.eval(want, first, second)
            yield (f"{name} heads={heads} head_dim={head_dim} L={length}",
                   mx.abs(first - want).max().item(), mx.abs(first - second).max().item())


def rotating_cache_cases():
    """mlx-lm's RotatingKVCache (window 16): a 63-token prompt, then 4 single steps, per device."""
    from mlx_lm.models.cache import RotatingKVCache

    for heads, head_dim in itertools.product((1, 2), (32, 64)):
        mx.random.seed(heads + head_dim)
        steps = [mx.random.normal((1, n, heads, head_dim)).transpose(0, 2, 1, 3) for n in (63, 1, 1, 1, 1)]

        def run(device):
            with mx.stream(device):
                cache, outs = RotatingKVCache(max_size=16), []
                for x in steps:
                    k, v = cache.update_and_fetch(x * 1.0, x * 2.0)
                    outs += [k, v]
                mx.eval(outs)
                return outs

        want, first, second = run(mx.cpu), run(mx.default_device()), run(mx.default_device())
        err = max(mx.abs(a - b).max().item() for a, b in zip(first, want))
        rerun = max(mx.abs(a - b).max().item() for a, b in zip(first, second))
        yield f"RotatingKVCache heads={heads} head_dim={head_dim}", err, rerun


def attention_cases():
    for n_kv, head_dim, (q_len, kv_len), sliced, mask_kind in itertools.product(
        (1, 2), (32, 64), ((1, 63), (63, 63), (1, 602), (602, 602)), (False, True),
        ("none", "causal", "array", "bool", "window")
    ):
        err, rerun = case(n_kv, head_dim, q_len, kv_len, sliced, mask_kind, seed=n_kv * 100 + head_dim)
        yield (f"sdpa kv_heads={n_kv} head_dim={head_dim} q={q_len} kv={kv_len} sliced={sliced} mask={mask_kind}",
               err, rerun)


def main():
    print(f"device {mx.default_device()}; max |device - cpu| and |device run 1 - run 2|")
    bad = 0
    for label, err, rerun in itertools.chain(elementwise_cases(), rotating_cache_cases(), attention_cases()):
        flag = "" if err < 1e-3 and rerun == 0 else "  <-- WRONG"
        bad += bool(flag)
        print(f"{label}: {err:.2e} {rerun:.2e}{flag}")
    print(f"{bad} wrong case(s)")


if __name__ == "__main__":
    main()
