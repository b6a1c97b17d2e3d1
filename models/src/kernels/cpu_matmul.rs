//! vlmbench's own matrix products on the CPU: `x @ W^T` for MLX's affine 4-bit layout (`W`
//! packed 8 values per `u32`, lowest nibble first; one float scale and bias per group) and for
//! dense float32 weights (the vision tower's linears).
//!
//! Why: the CPU backend of the MLX 0.32 Linux wheel moves about 0.4 GB/s through
//! `quantized_matmul`, re-reads the weight for every activation row, and multiplies dense
//! float32 matrices at about 2 GFLOP/s on this project's 2-core machine; MLX has no custom-kernel
//! API for the CPU, so these products run here, on slices of evaluated arrays, across all cores:
//! - few rows (decode, the LM head): each weight row is read once and its nibbles turned into
//!   floats in registers against every activation row (AVX2/FMA where the CPU has them);
//! - many rows (prefill): a tile of weight rows is dequantized to float32 once and multiplied by
//!   a blocked SGEMM (`matrixmultiply`), so the weight's cost is shared by all rows; dense
//!   weights go to the same SGEMM directly.
//!
//! Sums run in float32 in another order than MLX's, so results agree with MLX's to float32
//! rounding (see the tests), not bit for bit.

use std::borrow::Cow;
use std::ops::Range;

use rayon::prelude::*;

/// Activation rows up to which the fused (read-once, dequantize-in-registers) path runs.
pub const FUSED_MAX_ROWS: usize = 8;
/// Floats of dequantized weight one block of the many-rows path holds at most (1 MB: the block
/// is still in the core's L2 cache when the SGEMM reads it).
const DEQUANTIZED_FLOATS: usize = 256 << 10;

/// A 4-bit weight `[n, k]` as slices of its packed words `[n, k/8]`, scales and biases
/// `[n, k/group_size]`.
#[derive(Clone, Copy, Debug)]
pub struct Quantized4<'a> {
    pub packed: &'a [u32],
    pub scales: &'a [f32],
    pub biases: &'a [f32],
    pub n: usize,
    pub k: usize,
    pub group_size: usize,
}

impl Quantized4<'_> {
    /// Whether the slices have the lengths `n`, `k` and `group_size` imply and the shape is one
    /// these kernels handle (`group_size` a multiple of 8 dividing `k`).
    pub fn is_consistent(&self) -> bool {
        let gs = self.group_size;
        gs >= 8
            && gs % 8 == 0
            && self.k > 0
            && self.k % gs == 0
            && self.packed.len() == self.n * self.k / 8
            && self.scales.len() == self.n * self.k / gs
            && self.biases.len() == self.n * self.k / gs
    }

    fn groups(&self) -> usize {
        self.k / self.group_size
    }

    /// Row `n`'s packed words, scales and biases.
    fn row(&self, n: usize) -> (&[u32], &[f32], &[f32]) {
        let (w, g) = (self.k / 8, self.groups());
        (
            &self.packed[n * w..(n + 1) * w],
            &self.scales[n * g..(n + 1) * g],
            &self.biases[n * g..(n + 1) * g],
        )
    }

    /// Row `n` as floats (`q * scale + bias`), written into `out` (`k` values).
    fn dequantize_row(&self, n: usize, out: &mut [f32]) {
        let (words, scales, biases) = self.row(n);
        let words_per_group = self.group_size / 8;
        for (g, (&s, &b)) in scales.iter().zip(biases).enumerate() {
            for (i, &word) in words[g * words_per_group..(g + 1) * words_per_group]
                .iter()
                .enumerate()
            {
                let base = (g * words_per_group + i) * 8;
                for (j, o) in out[base..base + 8].iter_mut().enumerate() {
                    *o = ((word >> (4 * j)) & 15) as f32 * s + b;
                }
            }
        }
    }
}

/// `x @ W^T` for `m` rows of `x` (`[m, k]`, row-major): the `[m, n]` product, row-major.
/// `w` must be [`Quantized4::is_consistent`] and `x.len() == m * k`.
pub fn qmatmul_t(x: &[f32], m: usize, w: &Quantized4) -> Vec<f32> {
    assert!(
        w.is_consistent() && x.len() == m * w.k,
        "qmatmul_t: operands do not match their shapes"
    );
    if m == 0 || w.n == 0 {
        return Vec::new();
    }
    let prepared = PreparedRows::new(x, m, w);
    if m > FUSED_MAX_ROWS {
        // Each block of weight rows is dequantized in the order of `prepared`'s rows (a
        // permutation of each row's values, the same for both operands: dot products unchanged).
        let max_rows = (DEQUANTIZED_FLOATS / w.k).max(1);
        return blocked_product(prepared.rows(), m, w.k, w.n, max_rows, |rows| {
            let mut tile = vec![0f32; rows.len() * w.k];
            for (n, dst) in rows.zip(tile.chunks_exact_mut(w.k)) {
                prepared.dequantize_row(w, n, dst);
            }
            Cow::Owned(tile)
        });
    }
    // Computed weight-row-major ([n, m]) so each task owns one contiguous piece; transposed after.
    let mut by_row = vec![0f32; w.n * m];
    let rows_per_task = (w.n / (rayon::current_num_threads() * 8)).clamp(16, 1024);
    by_row
        .par_chunks_mut(rows_per_task * m)
        .enumerate()
        .for_each(|(t, out)| {
            let first = t * rows_per_task;
            fused_rows(w, first..first + out.len() / m, &prepared, out);
        });
    if m == 1 {
        return by_row;
    }
    let mut y = vec![0f32; m * w.n];
    for (row, values) in by_row.chunks_exact(m).enumerate() {
        for (i, &v) in values.iter().enumerate() {
            y[i * w.n + row] = v;
        }
    }
    y
}

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
    blocked_product(x, m, k, n, n, |rows| {
        Cow::Borrowed(&w[rows.start * k..rows.end * k])
    })
}

/// The `[m, n]` row-major product of `x` (`[m, k]`) with the weight whose rows `weight(range)`
/// gives as a `[range.len(), k]` block: about two blocks per core (each SGEMM call packs `x`
/// again, so fewer and larger calls), at most `max_rows` rows each, run in parallel, each
/// writing its own columns of the result in place.
fn blocked_product<'w>(
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    max_rows: usize,
    weight: impl Fn(Range<usize>) -> Cow<'w, [f32]> + Sync,
) -> Vec<f32> {
    /// The result's buffer, shared by the blocks: each writes only its own columns.
    struct Shared(*mut f32);
    // SAFETY: the blocks write disjoint columns, and the buffer outlives the parallel loop.
    unsafe impl Sync for Shared {}
    let mut y = vec![0f32; m * n];
    let out = Shared(y.as_mut_ptr());
    let per_block = n
        .div_ceil(rayon::current_num_threads() * 2)
        .clamp(1, max_rows);
    let blocks: Vec<Range<usize>> = (0..n)
        .step_by(per_block)
        .map(|s| s..(s + per_block).min(n))
        .collect();
    blocks.into_par_iter().for_each(|rows| {
        let tile = weight(rows.clone());
        let out = &out;
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
    });
    y
}

/// The activation rows in the order the fused kernels read them, with each group's sum (the
/// bias term is `bias * sum(x over the group)`, added once per group).
struct PreparedRows<'x> {
    m: usize,
    /// `[m, k]`: within each 64-value block, value `8 * l + j` moved to `8 * j + l`, so that
    /// shifting 8 packed words by `4 * j` lines their nibbles up with 8 consecutive floats.
    /// Empty when the AVX2 kernel does not run.
    interleaved: Vec<f32>,
    /// The rows as given.
    plain: &'x [f32],
    /// `[m, k / group_size]`.
    group_sums: Vec<f32>,
}

impl<'x> PreparedRows<'x> {
    fn new(x: &'x [f32], m: usize, w: &Quantized4) -> Self {
        let group_sums = x
            .chunks_exact(w.group_size)
            .map(|g| g.iter().sum())
            .collect();
        let interleaved = if avx2_applies(w) {
            let mut out = vec![0f32; x.len()];
            for (src, dst) in x.chunks_exact(64).zip(out.chunks_exact_mut(64)) {
                for l in 0..8 {
                    for j in 0..8 {
                        dst[8 * j + l] = src[8 * l + j];
                    }
                }
            }
            out
        } else {
            Vec::new()
        };
        PreparedRows {
            m,
            interleaved,
            plain: x,
            group_sums,
        }
    }

    /// The rows in the order the kernels read them (interleaved when the AVX2 kernels run).
    fn rows(&self) -> &[f32] {
        if self.interleaved.is_empty() {
            self.plain
        } else {
            &self.interleaved
        }
    }

    /// Weight row `n` as floats in the order of [`PreparedRows::rows`].
    fn dequantize_row(&self, w: &Quantized4, n: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if !self.interleaved.is_empty() {
            // SAFETY: `interleaved` is only built when the CPU has AVX2 and FMA (avx2_applies).
            unsafe { avx2::dequantize_row_interleaved(w, n, out) };
            return;
        }
        w.dequantize_row(n, out);
    }
}

/// Whether the AVX2/FMA kernel runs for `w` on this CPU (groups of whole 64-value blocks).
fn avx2_applies(w: &Quantized4) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        w.group_size % 64 == 0
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = w;
        false
    }
}

/// Products of weight rows `rows` with every prepared activation row, into `out`
/// (`[rows.len(), m]`).
fn fused_rows(w: &Quantized4, rows: std::ops::Range<usize>, x: &PreparedRows, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if !x.interleaved.is_empty() {
        // Activation rows in chunks of up to 4 per pass over a task's weight rows (which stay in
        // the core's caches between passes).
        for first in (0..x.m).step_by(4) {
            let rows = rows.clone();
            // SAFETY: `interleaved` is only built when the CPU has AVX2 and FMA (avx2_applies).
            unsafe {
                match x.m - first {
                    1 => avx2::fused_rows::<1, 4>(w, rows, x, first, out),
                    2 => avx2::fused_rows::<2, 2>(w, rows, x, first, out),
                    3 => avx2::fused_rows::<3, 2>(w, rows, x, first, out),
                    _ => avx2::fused_rows::<4, 1>(w, rows, x, first, out),
                }
            }
        }
        return;
    }
    portable_fused_rows(w, rows, x, out);
}

/// The fused product in plain Rust, value order as stored (any CPU, any group size).
fn portable_fused_rows(
    w: &Quantized4,
    rows: std::ops::Range<usize>,
    x: &PreparedRows,
    out: &mut [f32],
) {
    let (k, groups, gs) = (w.k, w.groups(), w.group_size);
    for (r, n) in rows.enumerate() {
        let (words, scales, biases) = w.row(n);
        for i in 0..x.m {
            let xi = &x.plain[i * k..(i + 1) * k];
            let mut total = 0f32;
            for g in 0..groups {
                let mut dot = 0f32;
                for (wi, &word) in words[g * gs / 8..(g + 1) * gs / 8].iter().enumerate() {
                    let xs = &xi[g * gs + wi * 8..g * gs + wi * 8 + 8];
                    for (j, &xv) in xs.iter().enumerate() {
                        dot += ((word >> (4 * j)) & 15) as f32 * xv;
                    }
                }
                total += dot * scales[g] + biases[g] * x.group_sums[i * groups + g];
            }
            out[r * x.m + i] = total;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{PreparedRows, Quantized4};

    /// Nibble `J` of each of 8 packed words as 8 floats.
    #[inline(always)]
    unsafe fn nibbles<const SHIFT: i32>(words: __m256i, mask: __m256i) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32::<SHIFT>(words), mask))
    }

    /// Row `n` of `w` as floats, each 64-value block in the interleaved order of
    /// [`super::PreparedRows`] (value `8 * l + j` at `8 * j + l`).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dequantize_row_interleaved(w: &Quantized4, n: usize, out: &mut [f32]) {
        let (words, scales, biases) = w.row(n);
        let blocks_per_group = w.group_size / 64;
        let mask = _mm256_set1_epi32(15);
        for (g, (&s, &b)) in scales.iter().zip(biases).enumerate() {
            let (scale, bias) = (_mm256_set1_ps(s), _mm256_set1_ps(b));
            for block in g * blocks_per_group..(g + 1) * blocks_per_group {
                let packed = _mm256_loadu_si256(words.as_ptr().add(block * 8) as *const __m256i);
                let dst = out.as_mut_ptr().add(block * 64);
                _mm256_storeu_ps(
                    dst,
                    _mm256_fmadd_ps(nibbles::<0>(packed, mask), scale, bias),
                );
                _mm256_storeu_ps(
                    dst.add(8),
                    _mm256_fmadd_ps(nibbles::<4>(packed, mask), scale, bias),
                );
                _mm256_storeu_ps(
                    dst.add(16),
                    _mm256_fmadd_ps(nibbles::<8>(packed, mask), scale, bias),
                );
                _mm256_storeu_ps(
                    dst.add(24),
                    _mm256_fmadd_ps(nibbles::<12>(packed, mask), scale, bias),
                );
                _mm256_storeu_ps(
                    dst.add(32),
                    _mm256_fmadd_ps(nibbles::<16>(packed, mask), scale, bias),
                );
                _mm256_storeu_ps(
                    dst.add(40),
                    _mm256_fmadd_ps(nibbles::<20>(packed, mask), scale, bias),
                );
                _mm256_storeu_ps(
                    dst.add(48),
                    _mm256_fmadd_ps(nibbles::<24>(packed, mask), scale, bias),
                );
                _mm256_storeu_ps(
                    dst.add(56),
                    _mm256_fmadd_ps(nibbles::<28>(packed, mask), scale, bias),
                );
            }
        }
    }

    #[inline(always)]
    unsafe fn horizontal_sum(v: __m256) -> f32 {
        let pair = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let pair = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair)))
    }

    /// [`super::fused_rows`] for activation rows `first..first + M` of `x`, writing `out[r * m +
    /// first + i]`. Each 64-value block is 8 packed words, shifted by 0, 4, .. 28 bits to give 8
    /// vectors of 8 nibbles, each multiplied into the interleaved activations. `P` independent
    /// accumulators per activation row keep the FMA units busy (one chain would wait on each
    /// FMA's latency); per group their sum is scaled once.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fused_rows<const M: usize, const P: usize>(
        w: &Quantized4,
        rows: std::ops::Range<usize>,
        x: &PreparedRows,
        first: usize,
        out: &mut [f32],
    ) {
        let (k, groups, blocks_per_group) = (w.k, w.groups(), w.group_size / 64);
        let mask = _mm256_set1_epi32(15);
        let xs: [*const f32; M] =
            std::array::from_fn(|i| x.interleaved[(first + i) * k..].as_ptr());
        for (r, n) in rows.enumerate() {
            let (words, scales, biases) = w.row(n);
            let mut row_acc = [_mm256_setzero_ps(); M];
            let mut bias_part = [0f32; M];
            for g in 0..groups {
                let mut acc = [[_mm256_setzero_ps(); P]; M];
                for block in g * blocks_per_group..(g + 1) * blocks_per_group {
                    let packed =
                        _mm256_loadu_si256(words.as_ptr().add(block * 8) as *const __m256i);
                    let q = [
                        nibbles::<0>(packed, mask),
                        nibbles::<4>(packed, mask),
                        nibbles::<8>(packed, mask),
                        nibbles::<12>(packed, mask),
                        nibbles::<16>(packed, mask),
                        nibbles::<20>(packed, mask),
                        nibbles::<24>(packed, mask),
                        nibbles::<28>(packed, mask),
                    ];
                    for i in 0..M {
                        let xb = xs[i].add(block * 64);
                        for (j, qj) in q.iter().enumerate() {
                            acc[i][j % P] =
                                _mm256_fmadd_ps(*qj, _mm256_loadu_ps(xb.add(8 * j)), acc[i][j % P]);
                        }
                    }
                }
                let scale = _mm256_set1_ps(scales[g]);
                for i in 0..M {
                    let group_sum = acc[i][1..]
                        .iter()
                        .fold(acc[i][0], |a, b| _mm256_add_ps(a, *b));
                    row_acc[i] = _mm256_fmadd_ps(group_sum, scale, row_acc[i]);
                    bias_part[i] += biases[g] * x.group_sums[(first + i) * groups + g];
                }
            }
            for i in 0..M {
                out[r * x.m + first + i] = horizontal_sum(row_acc[i]) + bias_part[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random weight: packed words, scales and biases like MLX's.
    struct Weight {
        packed: Vec<u32>,
        scales: Vec<f32>,
        biases: Vec<f32>,
        n: usize,
        k: usize,
        gs: usize,
    }

    fn lcg(state: &mut u64) -> u32 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*state >> 33) as u32
    }

    fn weight(n: usize, k: usize, gs: usize, seed: u64) -> Weight {
        let mut s = seed;
        let packed = (0..n * k / 8).map(|_| lcg(&mut s)).collect();
        let scales = (0..n * k / gs)
            .map(|_| (lcg(&mut s) % 1000) as f32 / 20000.0 + 0.001)
            .collect();
        let biases = (0..n * k / gs)
            .map(|_| -((lcg(&mut s) % 1000) as f32) / 2000.0)
            .collect();
        Weight {
            packed,
            scales,
            biases,
            n,
            k,
            gs,
        }
    }

    impl Weight {
        fn view(&self) -> Quantized4<'_> {
            Quantized4 {
                packed: &self.packed,
                scales: &self.scales,
                biases: &self.biases,
                n: self.n,
                k: self.k,
                group_size: self.gs,
            }
        }
    }

    fn activations(m: usize, k: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..m * k)
            .map(|_| (lcg(&mut s) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// The product in float64 from the dequantized weight, value by value.
    fn reference(x: &[f32], m: usize, w: &Quantized4) -> Vec<f64> {
        let mut row = vec![0f32; w.k];
        let mut y = vec![0f64; m * w.n];
        for n in 0..w.n {
            w.dequantize_row(n, &mut row);
            for i in 0..m {
                y[i * w.n + n] = (0..w.k)
                    .map(|c| x[i * w.k + c] as f64 * row[c] as f64)
                    .sum();
            }
        }
        y
    }

    /// Largest |got - want| relative to the largest |want|.
    fn relative_error(got: &[f32], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(0f64, |a, v| a.max(v.abs()));
        got.iter()
            .zip(want)
            .fold(0f64, |a, (g, w)| a.max((*g as f64 - w).abs()))
            / scale
    }

    #[test]
    fn dequantize_row_reads_nibbles_lowest_first_with_the_groups_scale_and_bias() {
        let w = Weight {
            packed: vec![0x7654_3210, 0xFEDC_BA98],
            scales: vec![2.0, 0.5],
            biases: vec![1.0, -1.0],
            n: 1,
            k: 16,
            gs: 8,
        };
        let mut row = vec![0f32; 16];
        w.view().dequantize_row(0, &mut row);
        let want: Vec<f32> = (0..8)
            .map(|q| q as f32 * 2.0 + 1.0)
            .chain((8..16).map(|q| q as f32 * 0.5 - 1.0))
            .collect();
        assert_eq!(row, want);
    }

    #[test]
    fn every_path_matches_the_float64_product_for_each_row_count_and_group_size() {
        // Row counts on both sides of FUSED_MAX_ROWS; an n that leaves a partial last task/tile.
        for (gs, seed) in [(32usize, 1u64), (64, 2), (128, 3)] {
            let w = weight(200, 512, gs, seed);
            for m in [1usize, 2, 3, 4, 5, 17] {
                let x = activations(m, 512, seed * 100 + m as u64);
                let got = qmatmul_t(&x, m, &w.view());
                let err = relative_error(&got, &reference(&x, m, &w.view()));
                assert!(
                    err < 1e-5,
                    "group size {gs}, {m} rows: relative error {err:e}"
                );
            }
        }
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
            let err = relative_error(&got, &want);
            assert!(err < 1e-5, "{m} rows: relative error {err:e}");
        }
    }

    #[test]
    fn the_portable_and_avx2_kernels_agree() {
        let w = weight(37, 256, 64, 9);
        for m in 1..=FUSED_MAX_ROWS {
            let x = activations(m, 256, 40 + m as u64);
            let prepared = PreparedRows::new(&x, m, &w.view());
            let mut fast = vec![0f32; 37 * m];
            let mut plain = vec![0f32; 37 * m];
            fused_rows(&w.view(), 0..37, &prepared, &mut fast);
            portable_fused_rows(&w.view(), 0..37, &prepared, &mut plain);
            let want: Vec<f64> = plain.iter().map(|&v| v as f64).collect();
            let err = relative_error(&fast, &want);
            assert!(err < 1e-5, "{m} rows: relative difference {err:e}");
        }
    }

    #[test]
    fn inconsistent_operands_are_recognised() {
        let w = weight(4, 128, 64, 5);
        assert!(w.view().is_consistent());
        let short = Quantized4 {
            packed: &w.packed[1..],
            ..w.view()
        };
        assert!(!short.is_consistent());
        let odd_group = Quantized4 {
            group_size: 48,
            ..w.view()
        };
        assert!(!odd_group.is_consistent());
    }
}
