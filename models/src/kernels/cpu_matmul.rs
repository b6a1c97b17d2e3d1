//! Dense float32 matrix products on the CPU, `x @ W^T`: each block of weight rows multiplied
//! with a blocked SGEMM (`matrixmultiply`), the blocks across all cores. The vision tower's
//! linears use it directly; the quantized products of [`super::cpu_quant`] use it for many
//! activation rows, on blocks of weight rows dequantized once.
//!
//! Why: the CPU backend of the MLX 0.32 Linux wheel multiplies dense float32 matrices at about
//! 2 GFLOP/s on this project's 2-core machine, and MLX has no custom-kernel API for the CPU.
//!
//! Sums run in float32 in another order than MLX's, so results agree with MLX's to float32
//! rounding (see the tests), not bit for bit.

use std::ops::Range;

use rayon::prelude::*;

/// `x @ W^T` for `m` rows of `x` (`[m, k]`) and a dense `W` (`[n, k]`), both row-major: the
/// `[m, n]` product, row-major.
pub fn matmul_t(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
    assert!(
        x.len() == m * k && w.len() == n * k,
        "matmul_t: operands do not match their shapes"
    );
    if m == 0 || n == 0 {
        return Vec::new();
    }
    blocked_product(x, m, k, n, n, |rows, _| {
        Tile::Borrowed(&w[rows.start * k..rows.end * k])
    })
}

/// Where a block of weight rows comes from: borrowed as it is, or written into a buffer the
/// product lends (reused by each thread, so no block allocates).
pub(super) enum Tile<'w> {
    Borrowed(&'w [f32]),
    Filled,
}

thread_local! {
    /// The buffer each thread's blocks are written into.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The `[m, n]` row-major product of `x` (`[m, k]`) with the weight whose rows `weight(range,
/// buffer)` gives as a `[range.len(), k]` block: about two blocks per core (each SGEMM call packs `x`
/// again, so fewer and larger calls), at most `max_rows` rows each, run in parallel, each
/// writing its own columns of the result in place.
pub(super) fn blocked_product<'w>(
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    max_rows: usize,
    weight: impl Fn(Range<usize>, &mut [f32]) -> Tile<'w> + Sync,
) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    let out = Shared(y.as_mut_ptr());
    // At least two blocks per core, and a whole number of blocks per core (a last round that
    // keeps one core busy alone would cost as much as a full one).
    let threads = rayon::current_num_threads();
    let blocks = (2 * threads)
        .max(n.div_ceil(max_rows.max(1)))
        .next_multiple_of(threads);
    let per_block = n.div_ceil(blocks).max(1);
    let blocks: Vec<Range<usize>> = (0..n)
        .step_by(per_block)
        .map(|s| s..(s + per_block).min(n))
        .collect();
    blocks.into_par_iter().for_each(|rows| {
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.resize(scratch.len().max(rows.len() * k), 0.0);
            let tile = match weight(rows.clone(), &mut scratch[..rows.len() * k]) {
                Tile::Borrowed(t) => t,
                Tile::Filled => &scratch[..rows.len() * k],
            };
            multiply_block(x, m, k, n, rows, tile, &out);
        })
    });
    y
}

/// The result's buffer, shared by the blocks: each writes only its own columns.
struct Shared(*mut f32);
// SAFETY: the blocks write disjoint columns, and the buffer outlives the parallel loop.
unsafe impl Sync for Shared {}

/// Columns `rows` of `y` (`[m, n]` behind `out`) = `x` times `tile^T`.
fn multiply_block(
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    rows: Range<usize>,
    tile: &[f32],
    out: &Shared,
) {
    // C = X (m x k) times tile^T (k x rows), C at column rows.start of y (row stride n).
    // SAFETY: the pointers cover m*k and rows*k floats and m rows of n floats with the
    // strides given; no other block writes columns rows.start..rows.end.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            rows.len(),
            1.0,
            x.as_ptr(),
            k as isize,
            1,
            tile.as_ptr(),
            1,
            k as isize,
            0.0,
            out.0.add(rows.start),
            n as isize,
            1,
        );
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A deterministic pseudo-random stream for test operands.
    pub(in crate::kernels) fn lcg(state: &mut u64) -> u32 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*state >> 33) as u32
    }

    /// `m * k` values in [-1, 1].
    pub(in crate::kernels) fn activations(m: usize, k: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..m * k)
            .map(|_| (lcg(&mut s) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn the_dense_product_matches_float64_for_one_and_many_rows() {
        let (n, k) = (150, 96);
        let w = activations(n, k, 77);
        for m in [1usize, 7, 33] {
            let x = activations(m, k, 78 + m as u64);
            let got = matmul_t(&x, m, &w, n, k);
            let want: Vec<f64> = (0..m * n)
                .map(|e| {
                    (0..k)
                        .map(|c| x[e / n * k + c] as f64 * w[e % n * k + c] as f64)
                        .sum()
                })
                .collect();
            let scale = want.iter().fold(0f64, |a, v| a.max(v.abs()));
            let err = got
                .iter()
                .zip(&want)
                .fold(0f64, |a, (g, w)| a.max((*g as f64 - w).abs()))
                / scale;
            assert!(err < 1e-5, "{m} rows: relative error {err:e}");
        }
    }
}
