//! Affine-quantized matrices on the CPU, every bit width and group size MLX writes, in two code
//! layouts the AVX2 kernels read without shuffles:
//! - nibbles: MLX's own 4-bit layout (8 codes per `u32`, lowest first), read in place;
//! - bytes: MLX's 8-bit layout (4 codes per `u32`), read in place for 8-bit weights; 2-, 3-, 5-
//!   and 6-bit weights are unpacked into it once, and dense float32 matrices whose every
//!   16-value group is exactly `scale * integer` (llama.cpp's Q6_K blocks, imported dense
//!   because MLX has no group size of 16) are recovered into it losslessly.
//!
//! A product `x @ W^T` is `sum_g scale_g * (codes_g . x_g) + bias_g * sum(x_g)`: codes are turned
//! into floats in registers and multiplied into the activations, scaled once per load of codes.
//! One to four activation rows read each weight row once (decode, the LM head); more rows
//! dequantize a block of weight rows to float32 once and multiply it with the SGEMM of
//! [`super::cpu_matmul`] (prefill). Both spread the weight's rows over all cores.
//!
//! Sums run in float32 in another order than MLX's: results agree with MLX's to float32
//! rounding, not bit for bit (see the tests).

use std::ops::{Deref, Range};

use mlx_rs::{Array, ArrayElement, Dtype};
use rayon::prelude::*;

use super::cpu_matmul::{blocked_product, Tile};
use super::CpuActivations;

/// Activation rows up to which each weight row is read once for all of them (decode, the LM
/// head); more rows multiply blocks of dequantized weight rows (prefill).
pub const FUSED_MAX_ROWS: usize = 8;

/// A slice that is either owned or an evaluated MLX array's own buffer, kept alive by holding a
/// reference to the array (MLX never moves an evaluated array's data).
pub enum Buf<T: 'static> {
    Owned(Vec<T>),
    Shared {
        _array: Array,
        ptr: *const T,
        len: usize,
    },
}

// SAFETY: the shared buffer is only read, and MLX arrays' data is immutable once evaluated.
unsafe impl<T: Sync> Send for Buf<T> {}
unsafe impl<T: Sync> Sync for Buf<T> {}

impl<T: ArrayElement + 'static> Buf<T> {
    /// The array's elements in place, or `None` when they are not a row-contiguous `T` buffer.
    pub fn of(array: &Array) -> Option<Self> {
        array.eval().ok()?;
        let slice = array.try_as_slice::<T>().ok()?;
        Some(Buf::Shared {
            _array: array.clone(),
            ptr: slice.as_ptr(),
            len: slice.len(),
        })
    }
}

impl<T> Deref for Buf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Buf::Owned(v) => v,
            // SAFETY: `ptr`/`len` came from a live slice of `_array`, which this value holds.
            Buf::Shared { ptr, len, .. } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }
}

/// How codes are stored in `u32` words, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// 4-bit codes, 8 per word (MLX's 4-bit layout).
    Nibbles,
    /// 5-bit codes: the low 4 bits as [`Layout::Nibbles`], the fifth in a plane of one byte
    /// per word (bit `j` of byte `w` is the fifth bit of word `w`'s `j`-th code).
    Nibbles5,
    /// 8-bit codes, 4 per word (MLX's 8-bit layout); narrower codes are widened into it.
    Bytes,
}

impl Layout {
    /// Bits per code in the words.
    fn bits(self) -> usize {
        match self {
            Layout::Nibbles | Layout::Nibbles5 => 4,
            Layout::Bytes => 8,
        }
    }
    /// Codes per word.
    fn per_word(self) -> usize {
        32 / self.bits()
    }
    /// Values one 256-bit load of 8 words holds.
    fn chunk(self) -> usize {
        8 * self.per_word()
    }
}

/// Per-group floats: float32, or float16 when every value converts to it exactly.
pub enum Floats {
    F32(Buf<f32>),
    F16(Vec<u16>),
}

impl Floats {
    /// `values` as float16 when each one is exactly a float16, else as they are.
    fn compact(values: Buf<f32>) -> Self {
        let exact = values
            .par_iter()
            .all(|&v| half::f16::from_f32(v).to_f32().to_bits() == v.to_bits());
        if exact {
            Floats::F16(
                values
                    .iter()
                    .map(|&v| half::f16::from_f32(v).to_bits())
                    .collect(),
            )
        } else {
            Floats::F32(values)
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Floats::F32(v) => 4 * v.len(),
            Floats::F16(v) => 2 * v.len(),
        }
    }

    fn get(&self, i: usize) -> f32 {
        match self {
            Floats::F32(v) => v[i],
            Floats::F16(v) => half::f16::from_bits(v[i]).to_f32(),
        }
    }
}

/// Per-group biases: stored, or the same multiple of every group's scale (llama.cpp's Q4_0,
/// Q5_0 and Q8_0 blocks, and recovered groups: nothing to read).
pub enum Biases {
    Stored(Floats),
    TimesScale(f32),
}

/// A matrix `W` `[n, k]` for products `x @ W^T`: affine codes or dense float32.
pub enum CpuMatrix {
    Affine(Affine),
    Dense { w: Buf<f32>, n: usize, k: usize },
}

/// `W[r, c] = scale[r, c / group] * code(r, c) + bias[r, c / group]`.
pub struct Affine {
    pub layout: Layout,
    pub words: Buf<u32>,
    /// The fifth bits of [`Layout::Nibbles5`] (empty otherwise).
    pub high: Vec<u8>,
    pub scales: Floats,
    pub biases: Biases,
    pub n: usize,
    pub k: usize,
    pub group: usize,
}

/// Why a matrix cannot be taken.
pub type Refusal = String;

impl CpuMatrix {
    /// MLX's quantized triplet (`w` `[n, k * bits / 32]` uint32, float32 `scales`/`biases`
    /// `[n, k / group]`): 4- and 8-bit codes read in place, 5-bit ones split into nibbles and a
    /// plane of fifth bits, other widths widened into bytes; scales and biases as float16 where
    /// that is exact, biases not stored where each is the same multiple of its scale.
    pub fn from_mlx(
        w: &Array,
        scales: &Array,
        biases: &Array,
        bits: i32,
        group: i32,
    ) -> Result<Self, Refusal> {
        if w.ndim() != 2 || w.dtype() != Dtype::Uint32 {
            return Err(format!(
                "a 2-D uint32 weight, got {:?} {:?}",
                w.shape(),
                w.dtype()
            ));
        }
        if scales.dtype() != Dtype::Float32 || biases.dtype() != Dtype::Float32 {
            return Err("float32 scales and biases".into());
        }
        let (bits, group) = (bits as usize, group as usize);
        let n = w.shape()[0] as usize;
        let k = w.shape()[1] as usize * 32 / bits.max(1);
        let layout = match bits {
            4 => Layout::Nibbles,
            5 => Layout::Nibbles5,
            _ => Layout::Bytes,
        };
        if !(1..=8).contains(&bits) || group == 0 || k % layout.chunk() != 0 || k % group != 0 {
            return Err(format!(
                "{bits}-bit codes in groups of {group} over {k} inputs"
            ));
        }
        if group % layout.chunk() != 0 && 2 * group != layout.chunk() {
            return Err(format!("groups of {group} for {bits}-bit codes"));
        }
        let packed = Buf::<u32>::of(w).ok_or("a contiguous weight")?;
        let (words, high) = match bits {
            4 | 8 => (packed, Vec::new()),
            5 => {
                let (words, high) = split_fifth_bits(&packed, n, k);
                (Buf::Owned(words), high)
            }
            _ => (Buf::Owned(widen_to_bytes(&packed, n, k, bits)), Vec::new()),
        };
        let scales = Buf::<f32>::of(scales).ok_or("contiguous scales")?;
        let biases = Buf::<f32>::of(biases).ok_or("contiguous biases")?;
        if scales.len() != n * k / group || biases.len() != n * k / group {
            return Err("scales and biases of [n, k / group]".into());
        }
        let biases = match multiple_of_scales(&scales, &biases) {
            Some(z) => Biases::TimesScale(z),
            None => Biases::Stored(Floats::compact(biases)),
        };
        Ok(CpuMatrix::Affine(Affine {
            layout,
            words,
            high,
            scales: Floats::compact(scales),
            biases,
            n,
            k,
            group,
        }))
    }

    /// MLX's 4- or 8-bit triplet read in place as it is (no compaction, no copy), for a product
    /// computed once: `None` for other widths and shapes.
    pub fn view_mlx(
        w: &Array,
        scales: &Array,
        biases: &Array,
        bits: i32,
        group: i32,
    ) -> Option<Self> {
        let layout = match bits {
            4 => Layout::Nibbles,
            8 => Layout::Bytes,
            _ => return None,
        };
        let group = usize::try_from(group).ok()?;
        if w.ndim() != 2 || scales.dtype() != Dtype::Float32 || biases.dtype() != Dtype::Float32 {
            return None;
        }
        let n = w.shape()[0] as usize;
        let k = w.shape()[1] as usize * layout.per_word();
        let fits = group > 0
            && k % layout.chunk() == 0
            && k % group == 0
            && (group % layout.chunk() == 0 || 2 * group == layout.chunk());
        let a = Affine {
            layout,
            words: Buf::of(w).filter(|_| fits)?,
            high: Vec::new(),
            scales: Floats::F32(Buf::of(scales)?),
            biases: Biases::Stored(Floats::F32(Buf::of(biases)?)),
            n,
            k,
            group,
        };
        (a.scales.bytes() == 4 * n * k / group).then_some(CpuMatrix::Affine(a))
    }

    /// A dense float32 `[n, k]` matrix: recovered into 8-bit codes with groups of 16 when every
    /// group is exactly a float32 scale times integers in -128..=127 (checked value by value),
    /// else kept dense.
    pub fn from_dense(w: &Array) -> Result<Self, Refusal> {
        if w.ndim() != 2 || w.dtype() != Dtype::Float32 {
            return Err(format!(
                "a 2-D float32 weight, got {:?} {:?}",
                w.shape(),
                w.dtype()
            ));
        }
        let (n, k) = (w.shape()[0] as usize, w.shape()[1] as usize);
        let values = Buf::<f32>::of(w).ok_or("a contiguous weight")?;
        if k % 32 == 0 {
            if let Some(a) = recover_groups_of_16(&values, n, k) {
                return Ok(CpuMatrix::Affine(a));
            }
        }
        Ok(CpuMatrix::Dense { w: values, n, k })
    }

    pub fn rows(&self) -> usize {
        match self {
            CpuMatrix::Affine(a) => a.n,
            CpuMatrix::Dense { n, .. } => *n,
        }
    }

    pub fn inputs(&self) -> usize {
        match self {
            CpuMatrix::Affine(a) => a.k,
            CpuMatrix::Dense { k, .. } => *k,
        }
    }

    /// Row `r` as floats (an embedding lookup).
    pub fn row(&self, r: usize, out: &mut [f32]) {
        match self {
            CpuMatrix::Affine(a) => a.dequantize_row(r, out, false),
            CpuMatrix::Dense { w, k, .. } => out.copy_from_slice(&w[r * k..(r + 1) * k]),
        }
    }

    /// `x @ W^T` for `m` rows of `x` (`[m, k]` row-major): `[m, n]` row-major.
    pub fn matmul_t(&self, x: &[f32], m: usize) -> Vec<f32> {
        Self::matmul_t_each(&[self], x, m)
            .pop()
            .expect("one product")
    }

    /// `x @ W^T` for each matrix (all with `k` inputs) and the same `m` rows of `x`. Up to
    /// [`FUSED_MAX_ROWS`] rows, the rows of all the matrices are spread over the cores at once
    /// (one parallel loop, not one per matrix: a decode step's products are small).
    pub fn matmul_t_each(matrices: &[&CpuMatrix], x: &[f32], m: usize) -> Vec<Vec<f32>> {
        // A bad VLMBENCH_CPU_ACTIVATIONS was refused when the model loaded (`check_choices`).
        let activations = super::cpu_activations_choice().unwrap_or(CpuActivations::Float32);
        Self::matmul_t_each_with(matrices, x, m, activations)
    }

    /// [`CpuMatrix::matmul_t_each`] with the activations taken as `activations` says (4-bit
    /// codes, one row, groups of 32 or more; float32 otherwise).
    fn matmul_t_each_with(
        matrices: &[&CpuMatrix],
        x: &[f32],
        m: usize,
        activations: CpuActivations,
    ) -> Vec<Vec<f32>> {
        let affine: Vec<&Affine> = matrices
            .iter()
            .filter_map(|w| match w {
                CpuMatrix::Affine(a) => Some(a),
                CpuMatrix::Dense { .. } => None,
            })
            .collect();
        if m > FUSED_MAX_ROWS || affine.len() < matrices.len() {
            return matrices.iter().map(|w| w.product(x, m)).collect();
        }
        for a in &affine {
            assert_eq!(x.len(), m * a.k, "matmul_t: x is not [m, k]");
        }
        let prepared: Vec<Prepared> = affine
            .iter()
            .map(|a| Prepared::new(a, x, m, activations))
            .collect();
        // Each product's result by weight row (`[n, m]`), in tasks of whole rows.
        let mut by_row: Vec<Vec<f32>> = affine.iter().map(|a| vec![0f32; a.n * m]).collect();
        let threads = rayon::current_num_threads();
        let mut tasks = Vec::new();
        for (i, out) in by_row.iter_mut().enumerate() {
            let per_task = (affine[i].n / (threads * 8)).clamp(16, 1024);
            for (t, chunk) in out.chunks_mut(per_task * m).enumerate() {
                tasks.push((i, t * per_task, chunk));
            }
        }
        super::cpu_team::for_each(tasks, |(i, first, out)| {
            affine[i].rows_into(first..first + out.len() / m, &prepared[i], out);
        });
        if m == 1 {
            return by_row;
        }
        by_row
            .iter()
            .zip(&affine)
            .map(|(values, a)| {
                let mut y = vec![0f32; m * a.n];
                for (r, row) in values.chunks_exact(m).enumerate() {
                    for (i, &v) in row.iter().enumerate() {
                        y[i * a.n + r] = v;
                    }
                }
                y
            })
            .collect()
    }

    /// One product by the path its shape takes: dense SGEMM, or many rows against blocks of
    /// dequantized weight rows, or the fused few-rows kernels.
    fn product(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.rows(), self.inputs());
        assert_eq!(x.len(), m * k, "matmul_t: x is not [m, k]");
        match self {
            CpuMatrix::Dense { w, .. } => super::cpu_matmul::matmul_t(x, m, w, n, k),
            CpuMatrix::Affine(a) if m > FUSED_MAX_ROWS => {
                let xp = a.permuted(x);
                let max_rows = ((256 << 10) / k).max(1);
                blocked_product(&xp, m, k, n, max_rows, |rows, tile| {
                    for (r, dst) in rows.zip(tile.chunks_exact_mut(k)) {
                        a.dequantize_row(r, dst, true);
                    }
                    Tile::Filled
                })
            }
            CpuMatrix::Affine(_) => Self::matmul_t_each(&[self], x, m)
                .pop()
                .expect("one product"),
        }
    }
}

/// `Some(z)` when every bias is exactly `z` times its group's scale (`z` read off the first
/// group with a non-zero scale).
fn multiple_of_scales(scales: &[f32], biases: &[f32]) -> Option<f32> {
    let (s, b) = scales.iter().zip(biases).find(|(s, _)| **s != 0.0)?;
    let z = b / s;
    let exact = scales
        .par_iter()
        .zip(biases.par_iter())
        .all(|(s, b)| (z * s).to_bits() == b.to_bits() || (*s == 0.0 && *b == 0.0));
    exact.then_some(z)
}

/// Code `i` of a row in MLX's `bits`-bit bit stream (value `i` at bits `i*bits..`).
fn stream_code(row: &[u32], i: usize, bits: usize) -> u32 {
    let pos = i * bits;
    let (w, s) = (pos / 32, pos % 32);
    let lo = row[w] as u64;
    let hi = if s + bits > 32 { row[w + 1] as u64 } else { 0 };
    ((((hi << 32) | lo) >> s) & ((1u64 << bits) - 1)) as u32
}

/// `n` rows of `k` codes of MLX's `bits`-bit bit stream, one code per byte in MLX's 8-bit layout.
fn widen_to_bytes(packed: &[u32], n: usize, k: usize, bits: usize) -> Vec<u32> {
    let mut out = vec![0u32; n * k / 4];
    out.par_chunks_mut(k / 4)
        .zip(packed.par_chunks(k * bits / 32))
        .for_each(|(dst, src)| {
            for i in 0..k {
                dst[i / 4] |= stream_code(src, i, bits) << (8 * (i % 4));
            }
        });
    out
}

/// `n` rows of `k` 5-bit codes of MLX's bit stream as [`Layout::Nibbles5`]: nibble words and
/// one byte of fifth bits per word.
fn split_fifth_bits(packed: &[u32], n: usize, k: usize) -> (Vec<u32>, Vec<u8>) {
    let mut words = vec![0u32; n * k / 8];
    let mut high = vec![0u8; n * k / 8];
    words
        .par_chunks_mut(k / 8)
        .zip(high.par_chunks_mut(k / 8))
        .zip(packed.par_chunks(k * 5 / 32))
        .for_each(|((w, h), src)| {
            for i in 0..k {
                let code = stream_code(src, i, 5);
                w[i / 8] |= (code & 15) << (4 * (i % 8));
                h[i / 8] |= ((code >> 4) as u8) << (i % 8);
            }
        });
    (words, high)
}

/// The 8-bit, groups-of-16 form of a dense matrix whose every group of 16 values is exactly
/// `scale * q` for integers `|q| <= 127` (codes stored as `q + 128`, bias `-128 * scale`), or
/// `None` at the first group that is not.
fn recover_groups_of_16(values: &[f32], n: usize, k: usize) -> Option<Affine> {
    let groups = n * k / 16;
    let mut scales = vec![0f32; groups];
    let mut codes = vec![0u32; n * k / 4];
    let ok = scales
        .par_chunks_mut(k / 16)
        .zip(codes.par_chunks_mut(k / 4))
        .zip(values.par_chunks(k))
        .all(|((s_row, c_row), v_row)| {
            for (g, v) in v_row.chunks_exact(16).enumerate() {
                let Some((scale, q)) = integer_multiples(v) else {
                    return false;
                };
                s_row[g] = scale;
                for (i, q) in q.iter().enumerate() {
                    let c = g * 16 + i;
                    c_row[c / 4] |= ((*q + 128) as u32) << (8 * (c % 4));
                }
            }
            true
        });
    if !ok {
        return None;
    }
    Some(Affine {
        layout: Layout::Bytes,
        words: Buf::Owned(codes),
        high: Vec::new(),
        scales: Floats::compact(Buf::Owned(scales)),
        biases: Biases::TimesScale(-128.0),
        n,
        k,
        group: 16,
    })
}

/// A scale `s` and integers `q` (`|q| <= 127`) with `s * q == v` exactly for every value, the
/// largest magnitude taking the smallest such integer; `None` when there is none.
fn integer_multiples(v: &[f32]) -> Option<(f32, [i32; 16])> {
    let top = v.iter().fold(0f32, |a, x| a.max(x.abs()));
    if !top.is_finite() {
        return None;
    }
    if top == 0.0 {
        return Some((1.0, [0; 16]));
    }
    'candidates: for t in 1..=127 {
        let s = top / t as f32;
        let mut q = [0i32; 16];
        for (qi, &x) in q.iter_mut().zip(v) {
            let r = (x / s).round();
            if r.abs() > 127.0 || s * r != x {
                continue 'candidates;
            }
            *qi = r as i32;
        }
        return Some((s, q));
    }
    None
}

impl Affine {
    fn groups(&self) -> usize {
        self.k / self.group
    }

    fn scale(&self, g: usize) -> f32 {
        self.scales.get(g)
    }

    fn bias(&self, g: usize) -> f32 {
        match &self.biases {
            Biases::Stored(b) => b.get(g),
            Biases::TimesScale(z) => z * self.scale(g),
        }
    }

    /// `x` (`m` rows of `k`) with each chunk's values in the order the kernels read codes:
    /// value `per_word * l + j` of a chunk at `8 * j + l` (lane `l` of the `j`-th code vector).
    fn permuted(&self, x: &[f32]) -> Vec<f32> {
        let (c, pw) = (self.layout.chunk(), self.layout.per_word());
        let mut out = vec![0f32; x.len()];
        for (src, dst) in x.chunks_exact(c).zip(out.chunks_exact_mut(c)) {
            for l in 0..8 {
                for j in 0..pw {
                    dst[8 * j + l] = src[pw * l + j];
                }
            }
        }
        out
    }

    fn code(&self, r: usize, c: usize) -> u32 {
        let (pw, bits) = (self.layout.per_word(), self.layout.bits());
        let w = (r * self.k + c) / pw;
        let low = (self.words[w] >> (bits * (c % pw))) & ((1 << bits) - 1);
        match self.layout {
            Layout::Nibbles5 => low | (((self.high[w] >> (c % pw)) & 1) as u32) << 4,
            _ => low,
        }
    }

    /// Row `r` as floats, in the kernels' order when `permuted` (see [`Affine::permuted`]).
    fn dequantize_row(&self, r: usize, out: &mut [f32], permuted: bool) {
        #[cfg(target_arch = "x86_64")]
        if permuted && avx2() {
            // SAFETY: the CPU has AVX2, FMA and F16C.
            unsafe {
                match &self.scales {
                    Floats::F32(s) => avx2::dequantize_row_permuted(self, &**s, r, out),
                    Floats::F16(s) => avx2::dequantize_row_permuted(self, &**s, r, out),
                }
            }
            return;
        }
        let (pw, c) = (self.layout.per_word(), self.layout.chunk());
        let groups = self.groups();
        for col in 0..self.k {
            let g = r * groups + col / self.group;
            let v = self.code(r, col) as f32 * self.scale(g) + self.bias(g);
            let at = if permuted {
                let (base, i) = (col - col % c, col % c);
                base + 8 * (i % pw) + i / pw
            } else {
                col
            };
            out[at] = v;
        }
    }

    /// Products of weight rows `rows` with every activation row, into `out` (`[rows, m]`).
    fn rows_into(&self, rows: Range<usize>, x: &Prepared, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            for first in (0..x.m).step_by(4) {
                let rows = rows.clone();
                // SAFETY: the CPU has AVX2, FMA and F16C.
                unsafe {
                    match &self.scales {
                        Floats::F32(s) => avx2::rows_by(self, &**s, rows, x, first, out),
                        Floats::F16(s) => avx2::rows_by(self, &**s, rows, x, first, out),
                    }
                }
            }
            return;
        }
        let mut row = vec![0f32; self.k];
        for (o, r) in rows.enumerate() {
            self.dequantize_row(r, &mut row, false);
            for i in 0..x.m {
                let xi = &x.plain[i * self.k..(i + 1) * self.k];
                out[o * x.m + i] = row.iter().zip(xi).map(|(a, b)| a * b).sum();
            }
        }
    }
}

/// Activation rows as the kernels read them: permuted per chunk, with each row's sum per
/// quantization group (the bias term of a weight row is `biases . group_sums`).
struct Prepared<'x> {
    m: usize,
    plain: &'x [f32],
    /// For 4-bit codes, which are read where they lie in their words, code vector `j` of each
    /// chunk is met by its activations times `16^-j` (exact: a power of two); the last vector,
    /// whose top bit is the sign's, is shifted down instead and met unscaled.
    permuted: Vec<f32>,
    /// `[m, k / group]`.
    group_sums: Vec<f32>,
    /// The one activation row as 8-bit integers, for [`super::CpuActivations::Int8`].
    q8: Option<Q8>,
}

/// One activation row rounded to 8-bit integers for 4-bit codes, as the integer kernel reads
/// it: per chunk of 64 values, the 32 even-indexed ones then the 32 odd-indexed ones (the low
/// and high nibbles of the chunk's 32 code bytes), and per chunk the 8 lanes' scales (values
/// 0-31 sum into lanes 0-3, 32-63 into lanes 4-7: one scale per block of 32, each
/// `max |x| / 127`).
struct Q8 {
    values: Vec<i8>,
    scales: Vec<f32>,
}

impl Q8 {
    fn new(x: &[f32]) -> Self {
        let mut values = vec![0i8; x.len()];
        let mut scales = Vec::with_capacity(x.len() / 8);
        for (src, dst) in x.chunks_exact(64).zip(values.chunks_exact_mut(64)) {
            for (half, block) in src.chunks_exact(32).enumerate() {
                let d = block.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
                for (i, v) in block.iter().enumerate() {
                    let at = 32 * (i % 2) + 16 * half + i / 2;
                    dst[at] = (v * inv).round() as i8;
                }
                scales.extend([d; 4]);
            }
        }
        Q8 { values, scales }
    }
}

impl<'x> Prepared<'x> {
    fn new(a: &Affine, x: &'x [f32], m: usize, activations: CpuActivations) -> Self {
        if !avx2() {
            return Prepared {
                m,
                plain: x,
                permuted: Vec::new(),
                group_sums: Vec::new(),
                q8: None,
            };
        }
        let group_sums = x.chunks_exact(a.group).map(|g| g.iter().sum()).collect();
        if activations == CpuActivations::Int8
            && m == 1
            && a.layout == Layout::Nibbles
            && a.group >= 32
        {
            return Prepared {
                m,
                plain: x,
                permuted: Vec::new(),
                group_sums,
                q8: Some(Q8::new(x)),
            };
        }
        let mut permuted = a.permuted(x);
        if a.layout == Layout::Nibbles {
            let powers: [f32; 8] =
                std::array::from_fn(|j| if j < 7 { 0.0625f32.powi(j as i32) } else { 1.0 });
            for chunk in permuted.chunks_exact_mut(a.layout.chunk()) {
                for (v, p) in chunk.chunks_exact_mut(8).zip(powers) {
                    v.iter_mut().for_each(|v| *v *= p);
                }
            }
        }
        Prepared {
            m,
            plain: x,
            permuted,
            group_sums,
            q8: None,
        }
    }
}

/// Whether the AVX2/FMA/F16C kernels run on this CPU.
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Affine, Layout, Prepared, Q8};

    /// How far ahead of the words being multiplied the few-row kernel asks for words.
    const PREFETCH_WORDS: usize = 1024;

    /// Per-group scales as the kernels read them.
    pub(super) trait Scales: Sync {
        unsafe fn at(&self, g: usize) -> f32;
        /// Values `g..g + 8`.
        unsafe fn at8(&self, g: usize) -> __m256;
    }

    impl Scales for super::Floats {
        #[inline(always)]
        unsafe fn at(&self, g: usize) -> f32 {
            match self {
                super::Floats::F32(v) => v.at(g),
                super::Floats::F16(v) => v.at(g),
            }
        }

        #[inline(always)]
        unsafe fn at8(&self, g: usize) -> __m256 {
            match self {
                super::Floats::F32(v) => v.at8(g),
                super::Floats::F16(v) => v.at8(g),
            }
        }
    }

    /// The biases as the kernel adds them.
    #[derive(Clone, Copy)]
    enum Bias<'a> {
        TimesScale(f32),
        Stored(&'a super::Floats),
    }

    impl Bias<'_> {
        /// A weight row's bias term, `biases . group sums` over its `n` groups from
        /// `first_group` (biases that are `z` times the scales: `z * scales . group sums`).
        #[inline(always)]
        unsafe fn term<S: Scales + ?Sized>(
            self,
            s: &S,
            first_group: usize,
            sums: *const f32,
            n: usize,
        ) -> f32 {
            match self {
                Bias::TimesScale(z) => z * group_dot(s, first_group, sums, n),
                Bias::Stored(b) => group_dot(b, first_group, sums, n),
            }
        }
    }

    impl Scales for [f32] {
        #[inline(always)]
        unsafe fn at(&self, g: usize) -> f32 {
            *self.get_unchecked(g)
        }

        #[inline(always)]
        unsafe fn at8(&self, g: usize) -> __m256 {
            _mm256_loadu_ps(self.as_ptr().add(g))
        }
    }

    impl Scales for [u16] {
        #[inline(always)]
        unsafe fn at(&self, g: usize) -> f32 {
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
                *self.get_unchecked(g) as i32
            )))
        }

        #[inline(always)]
        unsafe fn at8(&self, g: usize) -> __m256 {
            _mm256_cvtph_ps(_mm_loadu_si128(self.as_ptr().add(g) as *const __m128i))
        }
    }

    /// `sum_g s[first + g] * sums[g]` over `n` groups: a weight row's bias term.
    #[inline(always)]
    unsafe fn group_dot<S: Scales + ?Sized>(
        s: &S,
        first: usize,
        sums: *const f32,
        n: usize,
    ) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let whole = n - n % 8;
        for g in (0..whole).step_by(8) {
            acc = _mm256_fmadd_ps(s.at8(first + g), _mm256_loadu_ps(sums.add(g)), acc);
        }
        let mut total = horizontal_sum(acc);
        for g in whole..n {
            total += s.at(first + g) * *sums.add(g);
        }
        total
    }

    /// Where chunk `c` of row `r` finds its group(s), without a division per chunk (group
    /// sizes and chunks are powers of two).
    #[derive(Clone, Copy)]
    struct Groups {
        per_row: usize,
        /// log2 of chunks per group, when a group spans whole chunks.
        chunk_shift: u32,
        /// A chunk holds two groups (lanes 0-3 and 4-7).
        two_per_chunk: bool,
    }

    impl Groups {
        fn of(a: &Affine) -> Self {
            let chunk = a.layout.chunk();
            Groups {
                per_row: a.groups(),
                chunk_shift: (a.group / chunk).max(1).trailing_zeros(),
                two_per_chunk: a.group < chunk,
            }
        }
    }

    /// The scale vector of chunk `c` of row `r`: one value for all lanes when a group spans
    /// whole chunks, else lanes 0-3 from the chunk's first group and 4-7 from its second.
    #[inline(always)]
    unsafe fn per_lane<S: Scales + ?Sized>(s: &S, g: Groups, r: usize, c: usize) -> __m256 {
        let row = r * g.per_row;
        if g.two_per_chunk {
            let g = row + 2 * c;
            _mm256_set_m128(_mm_set1_ps(s.at(g + 1)), _mm_set1_ps(s.at(g)))
        } else {
            _mm256_set1_ps(s.at(row + (c >> g.chunk_shift)))
        }
    }

    #[inline(always)]
    unsafe fn horizontal_sum(v: __m256) -> f32 {
        let pair = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let pair = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair)))
    }

    /// Row `r` as floats in the permuted order of [`Affine::permuted`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dequantize_row_permuted<S: Scales + ?Sized>(
        a: &Affine,
        s: &S,
        r: usize,
        out: &mut [f32],
    ) {
        let (k, chunk, per_word) = (a.k, a.layout.chunk(), a.layout.per_word());
        let bits = a.layout.bits() as i32;
        let mask = _mm256_set1_epi32((1 << bits) - 1);
        let (shift, fifth) = (_mm_cvtsi32_si128(bits), _mm256_set1_epi32(16));
        let words = a.words.as_ptr().add(r * k / per_word);
        let high = a.layout == Layout::Nibbles5;
        let groups = Groups::of(a);
        for c in 0..k / chunk {
            let mut w = _mm256_loadu_si256(words.add(8 * c) as *const __m256i);
            let mut h = if high {
                let plane = a.high.as_ptr().add(r * k / per_word + 8 * c);
                _mm256_slli_epi32::<4>(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                    plane as *const __m128i,
                )))
            } else {
                _mm256_setzero_si256()
            };
            let scale = per_lane(s, groups, r, c);
            let bias = match &a.biases {
                super::Biases::TimesScale(z) => _mm256_mul_ps(scale, _mm256_set1_ps(*z)),
                super::Biases::Stored(super::Floats::F32(b)) => per_lane(&**b, groups, r, c),
                super::Biases::Stored(super::Floats::F16(b)) => per_lane(&**b, groups, r, c),
            };
            for j in 0..per_word {
                let mut code = _mm256_and_si256(w, mask);
                if high {
                    code = _mm256_or_si256(code, _mm256_and_si256(h, fifth));
                    h = _mm256_srli_epi32::<1>(h);
                }
                w = _mm256_srl_epi32(w, shift);
                _mm256_storeu_ps(
                    out.as_mut_ptr().add(c * chunk + 8 * j),
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(code), scale, bias),
                );
            }
        }
    }

    /// `rows` as a run of a multiple of `r` rows and the rest.
    fn split_at_multiple(
        rows: &std::ops::Range<usize>,
        r: usize,
    ) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let end = rows.end - rows.len() % r;
        (rows.start..end, end..rows.end)
    }

    /// [`weight_rows`] for activation rows `first..` (up to 4), by layout; with one activation
    /// row (decode), 4-bit codes take weight rows four at a time, 5-bit ones two.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn rows_by<S: Scales + ?Sized>(
        a: &Affine,
        s: &S,
        rows: std::ops::Range<usize>,
        x: &Prepared,
        first: usize,
        out: &mut [f32],
    ) {
        let bias = match &a.biases {
            super::Biases::TimesScale(z) => Bias::TimesScale(*z),
            super::Biases::Stored(b) => Bias::Stored(b),
        };
        macro_rules! by_rows {
            ($bits:literal, $high:literal, $pair:literal) => {{
                let r0 = rows.start;
                let (paired, last) = split_at_multiple(&rows, $pair);
                match x.m - first {
                    1 => {
                        weight_rows::<S, $bits, $high, 1, $pair>(
                            a, s, bias, paired, r0, x, first, out,
                        );
                        weight_rows::<S, $bits, $high, 1, 1>(a, s, bias, last, r0, x, first, out);
                    }
                    2 => weight_rows::<S, $bits, $high, 2, 1>(a, s, bias, rows, r0, x, first, out),
                    3 => weight_rows::<S, $bits, $high, 3, 1>(a, s, bias, rows, r0, x, first, out),
                    _ => weight_rows::<S, $bits, $high, 4, 1>(a, s, bias, rows, r0, x, first, out),
                }
            }};
        }
        // Several weight rows at a time keep more independent work in flight for the nibble
        // layouts (more arithmetic per byte); for bytes, one row leaves the loop in registers and
        // is faster.
        if let Some(q8) = &x.q8 {
            let (paired, last) = split_at_multiple(&rows, 4);
            int8_rows::<S, 4>(a, s, bias, paired, rows.start, x, q8, out);
            int8_rows::<S, 1>(a, s, bias, last, rows.start, x, q8, out);
            return;
        }
        match a.layout {
            Layout::Nibbles => by_rows!(4, false, 4),
            Layout::Nibbles5 => by_rows!(4, true, 2),
            Layout::Bytes => by_rows!(8, false, 1),
        }
    }

    /// 4-bit weight rows `rows` (`R` at a time; a multiple of `R` of them) times the one
    /// activation row as 8-bit integers ([`Q8`]), into `out[r - r0]`. Per chunk of 64 weights,
    /// the 32 code bytes split into low and high nibbles, each multiplied with its 32 activations
    /// and summed in pairs by `maddubs` (at most `2 * 15 * 127` a pair: no saturation), the two
    /// added, summed in pairs again into 8 integers (values `8t..8t + 8` in lane `t`), converted
    /// once and scaled by the weight's scale times the activations'. The bias term is the float
    /// one of [`weight_rows`].
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn int8_rows<S: Scales + ?Sized, const R: usize>(
        a: &Affine,
        s: &S,
        bias: Bias<'_>,
        rows: std::ops::Range<usize>,
        r0: usize,
        x: &Prepared,
        q8: &Q8,
        out: &mut [f32],
    ) {
        let k = a.k;
        let low = _mm256_set1_epi8(15);
        let ones = _mm256_set1_epi16(1);
        let per_row = a.groups();
        let words_per_row = k / 8;
        let groups = Groups::of(a);
        let xv = q8.values.as_ptr();
        for r in rows.step_by(R) {
            let words: [*const u32; R] =
                std::array::from_fn(|q| a.words.as_ptr().add((r + q) * words_per_row));
            let mut total = [_mm256_setzero_ps(); R];
            for c in 0..k / 64 {
                let even = _mm256_loadu_si256(xv.add(64 * c) as *const __m256i);
                let odd = _mm256_loadu_si256(xv.add(64 * c + 32) as *const __m256i);
                let dx = _mm256_loadu_ps(q8.scales.as_ptr().add(8 * c));
                for q in 0..R {
                    let w = _mm256_loadu_si256(words[q].add(8 * c) as *const __m256i);
                    _mm_prefetch::<_MM_HINT_T0>(
                        words[q].wrapping_add(8 * c + PREFETCH_WORDS) as *const i8
                    );
                    let lo = _mm256_and_si256(w, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(w), low);
                    let pairs = _mm256_add_epi16(
                        _mm256_maddubs_epi16(lo, even),
                        _mm256_maddubs_epi16(hi, odd),
                    );
                    let sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
                    let scale = _mm256_mul_ps(per_lane(s, groups, r + q, c), dx);
                    total[q] = _mm256_fmadd_ps(sums, scale, total[q]);
                }
            }
            for q in 0..R {
                let first_group = (r + q) * per_row;
                let bias = bias.term(s, first_group, x.group_sums.as_ptr(), per_row);
                out[r + q - r0] = horizontal_sum(total[q]) + bias;
            }
        }
    }

    /// Weight rows `rows` (`R` at a time; a multiple of `R` of them) times activation rows
    /// `first..first + M`, into `out[(r - r0) * m + first + i]`. Each load of 8 words gives
    /// `32 / BITS` vectors of 8 codes (4-bit: masked where they lie; others: mask, shift, with
    /// `HIGH` each code's fifth bit from the plane ORed in), converted and multiplied into the
    /// permuted activations with two accumulators, whose sum is scaled once per chunk. The bias
    /// term is one dot product per row: `biases . group sums` (with biases that are `z` times the
    /// scales, `scales . group sums`, times `z`).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn weight_rows<
        S: Scales + ?Sized,
        const BITS: i32,
        const HIGH: bool,
        const M: usize,
        const R: usize,
    >(
        a: &Affine,
        s: &S,
        bias: Bias<'_>,
        rows: std::ops::Range<usize>,
        r0: usize,
        x: &Prepared,
        first: usize,
        out: &mut [f32],
    ) {
        let (k, chunk) = (a.k, a.layout.chunk());
        let per_word = (32 / BITS) as usize;
        let mask = _mm256_set1_epi32((1 << BITS) - 1);
        let fifth = _mm256_set1_epi32(16);
        let zero = _mm256_setzero_ps();
        // Plain nibbles are not shifted down: each is multiplied where it lies in its word (one
        // instruction less per eight weights), by activations scaled to match (see `Prepared`).
        let in_place = BITS == 4 && !HIGH;
        let xs: [*const f32; M] = std::array::from_fn(|i| x.permuted[(first + i) * k..].as_ptr());
        let per_row = a.groups();
        let sums: [*const f32; M] =
            std::array::from_fn(|i| x.group_sums[(first + i) * per_row..].as_ptr());
        let words_per_row = k / per_word;
        let groups = Groups::of(a);
        for r in rows.step_by(R) {
            let mut words = [std::ptr::null::<u32>(); R];
            let mut high = [std::ptr::null::<u8>(); R];
            for q in 0..R {
                words[q] = a.words.as_ptr().add((r + q) * words_per_row);
                if HIGH {
                    high[q] = a.high.as_ptr().add((r + q) * words_per_row);
                }
            }
            let mut total = [[zero; M]; R];
            for c in 0..k / chunk {
                let mut w = [_mm256_setzero_si256(); R];
                let mut h = [_mm256_setzero_si256(); R];
                for q in 0..R {
                    w[q] = _mm256_loadu_si256(words[q].add(8 * c) as *const __m256i);
                    // The hardware prefetcher alone leaves each core waiting on memory; asking
                    // for the bytes a few rows ahead keeps enough reads in flight. A prefetch
                    // never faults, so running past the last row is harmless.
                    _mm_prefetch::<_MM_HINT_T0>(
                        words[q].wrapping_add(8 * c + PREFETCH_WORDS) as *const i8
                    );
                    if HIGH {
                        // Byte `l` (word `l`'s fifth bits) in lane `l`, bit `j` moved to 4 + j.
                        h[q] = _mm256_slli_epi32::<4>(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                            high[q].add(8 * c) as *const __m128i,
                        )));
                    }
                }
                let mut acc = [[[zero; 2]; M]; R];
                for j in 0..per_word {
                    let mut codes = [zero; R];
                    for q in 0..R {
                        codes[q] = _mm256_cvtepi32_ps(if in_place {
                            // Code `j` where it lies: `16^j` times the code, exactly.
                            if j + 1 < per_word {
                                _mm256_and_si256(w[q], _mm256_set1_epi32(15 << (4 * j)))
                            } else {
                                _mm256_srli_epi32::<28>(w[q])
                            }
                        } else {
                            let mut code = _mm256_and_si256(w[q], mask);
                            if HIGH {
                                code = _mm256_or_si256(code, _mm256_and_si256(h[q], fifth));
                                h[q] = _mm256_srli_epi32::<1>(h[q]);
                            }
                            w[q] = _mm256_srli_epi32::<BITS>(w[q]);
                            code
                        });
                    }
                    for i in 0..M {
                        let xv = _mm256_loadu_ps(xs[i].add(c * chunk + 8 * j));
                        for q in 0..R {
                            acc[q][i][j & 1] = _mm256_fmadd_ps(codes[q], xv, acc[q][i][j & 1]);
                        }
                    }
                }
                for q in 0..R {
                    let scale = per_lane(s, groups, r + q, c);
                    for i in 0..M {
                        let codes = _mm256_add_ps(acc[q][i][0], acc[q][i][1]);
                        total[q][i] = _mm256_fmadd_ps(codes, scale, total[q][i]);
                    }
                }
            }
            for q in 0..R {
                let first_group = (r + q) * per_row;
                for i in 0..M {
                    let bias = bias.term(s, first_group, sums[i], per_row);
                    out[(r + q - r0) * x.m + first + i] = horizontal_sum(total[q][i]) + bias;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::cpu_matmul::tests::{activations, lcg};
    use super::*;

    /// A random MLX-layout quantized matrix as arrays.
    fn quantized(n: usize, k: usize, bits: usize, group: usize, seed: u64) -> [Array; 3] {
        let mut s = seed;
        let codes: Vec<u8> = (0..n * k)
            .map(|_| (lcg(&mut s) % (1 << bits)) as u8)
            .collect();
        let packed: Vec<u32> = codes
            .chunks_exact(k)
            .flat_map(|row| crate::gguf::affine::pack_codes(row, bits as i32))
            .collect();
        let scales: Vec<f32> = (0..n * k / group)
            .map(|_| (lcg(&mut s) % 1000) as f32 / 20000.0 + 0.001)
            .collect();
        let biases: Vec<f32> = (0..n * k / group)
            .map(|_| -((lcg(&mut s) % 1000) as f32) / 2000.0)
            .collect();
        let g = (k / group) as i32;
        [
            Array::from_slice(&packed, &[n as i32, (k * bits / 32) as i32]),
            Array::from_slice(&scales, &[n as i32, g]),
            Array::from_slice(&biases, &[n as i32, g]),
        ]
    }

    /// The product in float64 from MLX's own dequantization of the weight.
    fn reference(x: &[f32], m: usize, dense: &[f32], n: usize, k: usize) -> Vec<f64> {
        (0..m * n)
            .map(|e| {
                let (i, r) = (e / n, e % n);
                (0..k)
                    .map(|c| x[i * k + c] as f64 * dense[r * k + c] as f64)
                    .sum()
            })
            .collect()
    }

    fn relative_error(got: &[f32], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(0f64, |a, v| a.max(v.abs()));
        got.iter()
            .zip(want)
            .fold(0f64, |a, (g, w)| a.max((*g as f64 - w).abs()))
            / scale
    }

    #[test]
    fn every_bit_width_and_group_size_matches_mlx_dequantized_for_every_row_count() {
        let (n, k) = (70, 256);
        for bits in [2usize, 3, 4, 5, 6, 8] {
            for group in [32usize, 64, 128] {
                let [w, s, b] = quantized(n, k, bits, group, (bits * 1000 + group) as u64);
                let dense = mlx_rs::ops::dequantize(&w, &s, &b, group as i32, bits as i32).unwrap();
                let dense = dense.as_slice::<f32>().to_vec();
                let m = CpuMatrix::from_mlx(&w, &s, &b, bits as i32, group as i32).unwrap();
                let mut row = vec![0f32; k];
                m.row(3, &mut row);
                assert_eq!(row, dense[3 * k..4 * k], "{bits}-bit g{group}: row 3");
                for rows in [1usize, 2, 3, 4, 5, 9, 17] {
                    let x = activations(rows, k, (bits + rows) as u64);
                    let got = m.matmul_t(&x, rows);
                    let err = relative_error(&got, &reference(&x, rows, &dense, n, k));
                    assert!(err < 1e-5, "{bits}-bit g{group}, {rows} rows: {err:e}");
                }
            }
        }
    }

    /// `got` is one activation row `x` times `m^T` (`dense` its values) as the int8 path computes
    /// it: the codes' part with `x` rounded (to `step * round(x / step)`, `step = max |x| / 127`
    /// per block of 32), the biases' part with `x` as it is (float group sums). Equal to that in
    /// float64 to float32 rounding, so the int8 path moves a product by at most the sum of
    /// `|scale * code|` times half a step.
    fn assert_int8_product(got: &[f32], x: &[f32], dense: &[f32], m: &CpuMatrix, what: &str) {
        let CpuMatrix::Affine(a) = m else {
            panic!("{what}: not an affine matrix")
        };
        let (n, k) = (a.n, a.k);
        let rounded: Vec<f32> = x
            .chunks_exact(32)
            .flat_map(|b| {
                let step = b.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                b.iter().map(move |v| {
                    if step > 0.0 {
                        step * (v / step).round()
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        let mut want = reference(&rounded, 1, dense, n, k);
        for (r, w) in want.iter_mut().enumerate() {
            for (c, (v, q)) in x.iter().zip(&rounded).enumerate() {
                let bias = a.bias(r * a.groups() + c / a.group);
                *w += bias as f64 * (*v as f64 - *q as f64);
            }
        }
        let err = relative_error(got, &want);
        assert!(
            err < 1e-5,
            "{what}: {err:e} from the product with rounded activations"
        );
    }

    #[test]
    fn int8_activations_give_the_product_with_activations_rounded_per_block_of_32() {
        let (n, k) = (37, 512);
        for group in [32usize, 64, 128] {
            for scales_f16 in [false, true] {
                let [w, s, b] = quantized(n, k, 4, group, group as u64 + 11);
                let s = if scales_f16 {
                    s.as_dtype(Dtype::Float16)
                        .unwrap()
                        .as_dtype(Dtype::Float32)
                        .unwrap()
                } else {
                    s
                };
                let dense = mlx_rs::ops::dequantize(&w, &s, &b, group as i32, 4).unwrap();
                let dense = dense.as_slice::<f32>().to_vec();
                let m = CpuMatrix::from_mlx(&w, &s, &b, 4, group as i32).unwrap();
                let x = activations(1, k, group as u64);
                let int8 = CpuMatrix::matmul_t_each_with(&[&m], &x, 1, CpuActivations::Int8);
                let what = format!("g{group} f16 {scales_f16}");
                assert_int8_product(&int8[0], &x, &dense, &m, &what);
                let exact = CpuMatrix::matmul_t_each_with(&[&m], &x, 1, CpuActivations::Float32);
                let err = relative_error(&exact[0], &reference(&x, 1, &dense, n, k));
                assert!(err < 1e-5, "{what}: the float32 path");
                assert_ne!(int8, exact, "{what}: the int8 path ran");
            }
        }
    }

    #[test]
    fn a_dense_matrix_of_scaled_integers_in_groups_of_16_is_recovered_exactly() {
        // Q6_K-like: each 16-value group is d * sc * (q - 32).
        let (n, k) = (24, 64);
        let mut s = 7u64;
        let values: Vec<f32> = (0..n * k / 16)
            .flat_map(|_| {
                // A float16 d times a small integer, as ggml forms Q6_K's sub-block scales.
                let d = half::f16::from_f32(0.000_317_4 * (1 + lcg(&mut s) % 7) as f32).to_f32();
                let scale = d * (1 + lcg(&mut s) % 60) as f32;
                let qs: Vec<f32> = (0..16)
                    .map(|_| scale * ((lcg(&mut s) % 64) as i32 - 32) as f32)
                    .collect();
                qs
            })
            .collect();
        let w = Array::from_slice(&values, &[n as i32, k as i32]);
        let m = CpuMatrix::from_dense(&w).unwrap();
        let CpuMatrix::Affine(a) = &m else {
            panic!("not recovered")
        };
        assert_eq!((a.group, a.layout), (16, Layout::Bytes));
        for r in 0..n {
            let mut row = vec![0f32; k];
            m.row(r, &mut row);
            for (c, v) in row.iter().enumerate() {
                let want = values[r * k + c];
                assert!(
                    (v - want).abs() <= want.abs() * 1e-6,
                    "[{r}, {c}]: {v} vs {want}"
                );
            }
        }
        for rows in [1usize, 3, 12] {
            let x = activations(rows, k, 11);
            let err = relative_error(&m.matmul_t(&x, rows), &reference(&x, rows, &values, n, k));
            assert!(err < 1e-5, "{rows} rows: {err:e}");
        }
        // One value off the grid keeps the matrix dense.
        let mut off = values.clone();
        off[5] += 1e-3;
        let w = Array::from_slice(&off, &[n as i32, k as i32]);
        assert!(matches!(
            CpuMatrix::from_dense(&w).unwrap(),
            CpuMatrix::Dense { .. }
        ));
    }
}
