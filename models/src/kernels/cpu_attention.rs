//! Scaled dot-product attention on the CPU in float32, for the same reason as
//! [`super::cpu_matmul`]: MLX 0.32's CPU backend composes it from matmuls that run at about
//! 2 GFLOP/s on this project's machine, which made a vision tower's bidirectional attention over
//! a few thousand patches take minutes. Here each (batch, head, block of queries) computes its
//! scores and weighted values with `matrixmultiply`'s SGEMM, masks and softmaxes them in
//! between, and the blocks run across cores.

/// Queries per task: bounds the scores buffer (`QUERY_BLOCK x keys` floats) for long inputs.
const QUERY_BLOCK: usize = 256;

/// Operand shapes: queries `[batch, heads, queries, dim]`, keys `[batch, kv_heads, keys, dim]`,
/// values `[batch, kv_heads, keys, value_dim]`; `heads` a multiple of `kv_heads` (grouped
/// queries share a key/value head, as in MLX).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub queries: usize,
    pub keys: usize,
    pub dim: usize,
    pub value_dim: usize,
}

/// Which keys each query sees. Array masks have shape `[mask_batch, mask_heads, queries, keys]`
/// with `mask_batch` 1 or `batch` and `mask_heads` 1 or `heads` (size-1 axes broadcast).
#[derive(Clone, Copy, Debug)]
pub enum Mask<'a> {
    /// Every key.
    All,
    /// Query `i` sees keys `0..=i + keys - queries` (MLX's `"causal"`, aligned to the last keys).
    Causal,
    /// `true` = attend.
    Bool {
        values: &'a [bool],
        batch: usize,
        heads: usize,
    },
    /// Added to the scaled scores.
    Additive {
        values: &'a [f32],
        batch: usize,
        heads: usize,
    },
}

impl Mask<'_> {
    /// Whether an array mask's length and broadcast axes fit `shape`.
    pub fn fits(&self, shape: &Shape) -> bool {
        let fits = |len: usize, b: usize, h: usize| {
            (b == 1 || b == shape.batch)
                && (h == 1 || h == shape.heads)
                && len == b * h * shape.queries * shape.keys
        };
        match *self {
            Mask::All => true,
            Mask::Causal => shape.keys >= shape.queries,
            Mask::Bool {
                values,
                batch,
                heads,
            } => fits(values.len(), batch, heads),
            Mask::Additive {
                values,
                batch,
                heads,
            } => fits(values.len(), batch, heads),
        }
    }
}

/// `softmax(scale * q k^T + mask) v` per head, row-major operands of [`Shape`]; the result is
/// `[batch, heads, queries, value_dim]`. The mask must [`Mask::fits`] the shape.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: Shape,
    scale: f32,
    mask: Mask,
) -> Vec<f32> {
    let Shape {
        batch,
        heads,
        kv_heads,
        queries,
        keys,
        dim,
        value_dim,
    } = shape;
    assert!(
        kv_heads > 0
            && heads % kv_heads == 0
            && q.len() == batch * heads * queries * dim
            && k.len() == batch * kv_heads * keys * dim
            && v.len() == batch * kv_heads * keys * value_dim
            && mask.fits(&shape),
        "attention: operands do not match their shapes"
    );
    let mut out = vec![0f32; batch * heads * queries * value_dim];
    if out.is_empty() {
        return out;
    }
    let blocks_per_head = queries.div_ceil(QUERY_BLOCK);
    // One task per (batch, head, query block); its output rows are contiguous.
    let mut tasks: Vec<(usize, &mut [f32])> = Vec::with_capacity(batch * heads * blocks_per_head);
    for (bh, head_out) in out.chunks_mut(queries * value_dim).enumerate() {
        for (blk, rows) in head_out.chunks_mut(QUERY_BLOCK * value_dim).enumerate() {
            tasks.push((bh * blocks_per_head + blk, rows));
        }
    }
    super::cpu_team::for_each(tasks, |(task, out_rows)| {
        let (bh, blk) = (task / blocks_per_head, task % blocks_per_head);
        let (b, h) = (bh / heads, bh % heads);
        let kvh = b * kv_heads + h / (heads / kv_heads);
        let first = blk * QUERY_BLOCK;
        let rows = out_rows.len() / value_dim;
        let q_rows = &q[(bh * queries + first) * dim..][..rows * dim];
        let k_head = &k[kvh * keys * dim..][..keys * dim];
        let v_head = &v[kvh * keys * value_dim..][..keys * value_dim];
        let mut scores = vec![0f32; rows * keys];
        // scores = scale * q_rows (rows x dim) times k_head^T (dim x keys).
        // SAFETY: every pointer covers its matrix with the strides given.
        unsafe {
            matrixmultiply::sgemm(
                rows,
                dim,
                keys,
                scale,
                q_rows.as_ptr(),
                dim as isize,
                1,
                k_head.as_ptr(),
                1,
                dim as isize,
                0.0,
                scores.as_mut_ptr(),
                keys as isize,
                1,
            );
        }
        for (r, row) in scores.chunks_exact_mut(keys).enumerate() {
            apply_mask(row, &mask, &shape, b, h, first + r);
            softmax_in_place(row);
        }
        // out_rows = scores (rows x keys) times v_head (keys x value_dim).
        // SAFETY: as above.
        unsafe {
            matrixmultiply::sgemm(
                rows,
                keys,
                value_dim,
                1.0,
                scores.as_ptr(),
                keys as isize,
                1,
                v_head.as_ptr(),
                value_dim as isize,
                1,
                0.0,
                out_rows.as_mut_ptr(),
                value_dim as isize,
                1,
            );
        }
    });
    out
}

/// Masks query `i`'s scores of batch `b`, head `h` in place (-inf where it may not look).
fn apply_mask(row: &mut [f32], mask: &Mask, shape: &Shape, b: usize, h: usize, i: usize) {
    let at = |batch: usize, heads: usize| {
        let (mb, mh) = (
            if batch == 1 { 0 } else { b },
            if heads == 1 { 0 } else { h },
        );
        ((mb * heads + mh) * shape.queries + i) * shape.keys
    };
    match *mask {
        Mask::All => {}
        Mask::Causal => {
            let last = i + shape.keys - shape.queries;
            row[last + 1..].fill(f32::NEG_INFINITY);
        }
        Mask::Bool {
            values,
            batch,
            heads,
        } => {
            for (s, &ok) in row.iter_mut().zip(&values[at(batch, heads)..]) {
                if !ok {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
        Mask::Additive {
            values,
            batch,
            heads,
        } => {
            for (s, &add) in row.iter_mut().zip(&values[at(batch, heads)..]) {
                *s += add;
            }
        }
    }
}

/// Softmax of one row in place, max-subtracted; a row with every score -inf becomes zeros.
fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    let mut sum = 0f32;
    for s in row.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|s| *s *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// Attention in float64, one score at a time, `visible(b, h, i, j)` deciding the mask.
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        s: Shape,
        scale: f64,
        visible: impl Fn(usize, usize, usize, usize) -> bool,
    ) -> Vec<f64> {
        let mut out = vec![0f64; s.batch * s.heads * s.queries * s.value_dim];
        for b in 0..s.batch {
            for h in 0..s.heads {
                let kvh = b * s.kv_heads + h / (s.heads / s.kv_heads);
                for i in 0..s.queries {
                    let qi = &q[((b * s.heads + h) * s.queries + i) * s.dim..][..s.dim];
                    let scores: Vec<f64> = (0..s.keys)
                        .map(|j| {
                            let kj = &k[(kvh * s.keys + j) * s.dim..][..s.dim];
                            let dot: f64 =
                                qi.iter().zip(kj).map(|(a, b)| *a as f64 * *b as f64).sum();
                            if visible(b, h, i, j) {
                                dot * scale
                            } else {
                                f64::NEG_INFINITY
                            }
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    for d in 0..s.value_dim {
                        let o: f64 = (0..s.keys)
                            .map(|j| {
                                weights[j] / total * v[(kvh * s.keys + j) * s.value_dim + d] as f64
                            })
                            .sum();
                        out[((b * s.heads + h) * s.queries + i) * s.value_dim + d] = o;
                    }
                }
            }
        }
        out
    }

    fn max_error(got: &[f32], want: &[f64]) -> f64 {
        got.iter()
            .zip(want)
            .fold(0f64, |a, (g, w)| a.max((*g as f64 - w).abs()))
    }

    fn operands(s: Shape) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        (
            values(s.batch * s.heads * s.queries * s.dim, 1),
            values(s.batch * s.kv_heads * s.keys * s.dim, 2),
            values(s.batch * s.kv_heads * s.keys * s.value_dim, 3),
        )
    }

    #[test]
    fn grouped_causal_attention_matches_float64_including_a_cached_prefix_and_several_query_blocks()
    {
        // 300 queries span two query blocks; 40 cached keys shift the causal diagonal.
        let s = Shape {
            batch: 2,
            heads: 4,
            kv_heads: 2,
            queries: 300,
            keys: 340,
            dim: 16,
            value_dim: 8,
        };
        let (q, k, v) = operands(s);
        let got = attention(&q, &k, &v, s, 0.25, Mask::Causal);
        let want = reference(&q, &k, &v, s, 0.25, |_, _, i, j| j <= i + 40);
        assert!(max_error(&got, &want) < 1e-5, "{}", max_error(&got, &want));
    }

    #[test]
    fn boolean_and_additive_masks_broadcast_over_batch_and_heads() {
        let s = Shape {
            batch: 2,
            heads: 2,
            kv_heads: 1,
            queries: 5,
            keys: 7,
            dim: 8,
            value_dim: 8,
        };
        let (q, k, v) = operands(s);
        // Boolean mask per batch, shared by heads: batch b hides keys j with (i + j + b) % 3 == 0.
        let bools: Vec<bool> = (0..2 * 5 * 7)
            .map(|e| (e / 35 + e % 35 / 7 + e % 7) % 3 != 0)
            .collect();
        let got = attention(
            &q,
            &k,
            &v,
            s,
            1.0,
            Mask::Bool {
                values: &bools,
                batch: 2,
                heads: 1,
            },
        );
        let want = reference(&q, &k, &v, s, 1.0, |b, _, i, j| (b + i + j) % 3 != 0);
        assert!(
            max_error(&got, &want) < 1e-5,
            "bool: {}",
            max_error(&got, &want)
        );
        // An additive mask of zeros and -inf is the same mask.
        let additive: Vec<f32> = bools
            .iter()
            .map(|&ok| if ok { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        let got = attention(
            &q,
            &k,
            &v,
            s,
            1.0,
            Mask::Additive {
                values: &additive,
                batch: 2,
                heads: 1,
            },
        );
        assert!(
            max_error(&got, &want) < 1e-5,
            "additive: {}",
            max_error(&got, &want)
        );
    }

    #[test]
    fn masks_of_the_wrong_size_do_not_fit() {
        let s = Shape {
            batch: 2,
            heads: 2,
            kv_heads: 1,
            queries: 5,
            keys: 7,
            dim: 8,
            value_dim: 8,
        };
        let bools = vec![true; 5 * 7];
        assert!(Mask::Bool {
            values: &bools,
            batch: 1,
            heads: 1
        }
        .fits(&s));
        assert!(!Mask::Bool {
            values: &bools,
            batch: 2,
            heads: 1
        }
        .fits(&s));
        assert!(!Mask::Additive {
            values: &[0.0; 3],
            batch: 1,
            heads: 1
        }
        .fits(&s));
    }
}
