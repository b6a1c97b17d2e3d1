//! The small float32 operations between a decoder's matrix products, on plain slices, for the
//! CPU decoders that run a whole forward pass here ([`crate::gemma3::cpu`]): RMS norm, rotary
//! embedding, the tanh-approximated GELU gate, and attention of a few queries over a key/value
//! cache. Each follows the formula of the MLX operation it replaces; sums run in another order,
//! so results agree with MLX's to float32 rounding.

use rayon::prelude::*;

/// The keys and values a CPU decoder has cached, one `[positions, kv_heads * head_dim]` pair
/// per layer that keeps a cache.
#[derive(Default)]
pub struct KvCache {
    pub keys: Vec<Vec<f32>>,
    pub values: Vec<Vec<f32>>,
    /// Positions cached.
    pub len: usize,
}

impl KvCache {
    /// An empty cache for `layers` layers.
    pub fn new(layers: usize) -> Self {
        KvCache {
            keys: vec![Vec::new(); layers],
            values: vec![Vec::new(); layers],
            len: 0,
        }
    }
}

/// `sum(a * b)`.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if a.len() % 32 == 0 && avx2() {
        // SAFETY: the CPU has AVX2 and FMA; the lengths are equal multiples of 32.
        return unsafe { avx2::dot(a, b) };
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `y += alpha * x`.
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    debug_assert_eq!(x.len(), y.len());
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// Each `dim`-value row of `x` times `rsqrt(mean(row^2) + eps) * weight` (MLX `fast.rms_norm`
/// with the weight already `1 + w` for Gemma), in place.
pub fn rms_norm(x: &mut [f32], weight: &[f32], eps: f32) {
    let dim = weight.len();
    for row in x.chunks_exact_mut(dim) {
        let r = inverse_rms(row, eps);
        for (v, w) in row.iter_mut().zip(weight) {
            *v = *v * r * w;
        }
    }
}

/// Each `dim`-value row of `x` times `rsqrt(mean(row^2) + eps)`, in place (MLX `fast.rms_norm`
/// without a weight).
pub fn rms_norm_unscaled(x: &mut [f32], dim: usize, eps: f32) {
    for row in x.chunks_exact_mut(dim) {
        let r = inverse_rms(row, eps);
        row.iter_mut().for_each(|v| *v *= r);
    }
}

fn inverse_rms(row: &[f32], eps: f32) -> f32 {
    1.0 / (dot(row, row) / row.len() as f32 + eps).sqrt()
}

/// [`rms_norm`] into a new buffer.
pub fn rms_normed(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let mut y = x.to_vec();
    rms_norm(&mut y, weight, eps);
    y
}

/// `x + y`, elementwise into `x`.
pub fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// `gelu_tanh(gate) * up` into `gate` (MLX `nn.gelu_approx`: `0.5 x (1 + tanh(sqrt(2/pi) (x +
/// 0.044715 x^3)))`).
pub fn gelu_tanh_mul(gate: &mut [f32], up: &[f32]) {
    let gelu = |g: &mut [f32], u: &[f32]| {
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { avx2::gelu_tanh_mul(g, u) };
            return;
        }
        for (x, u) in g.iter_mut().zip(u) {
            *x = gelu_tanh(*x) * u;
        }
    };
    // One decode step's gate is too small to be worth a parallel loop.
    if gate.len() <= 1 << 14 {
        gelu(gate, up);
        return;
    }
    gate.par_chunks_mut(4096)
        .zip(up.par_chunks(4096))
        .for_each(|(g, u)| gelu(g, u));
}

/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
fn gelu_tanh(x: f32) -> f32 {
    let c = (2.0f64 / std::f64::consts::PI).sqrt() as f32;
    0.5 * x * (1.0 + (c * (x + 0.044715 * (x * x * x))).tanh())
}

/// `tanh(x / cap) * cap` of every value, in place (logit soft-capping).
pub fn softcap_in_place(xs: &mut [f32], cap: f32) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA.
        unsafe { avx2::softcap_in_place(xs, cap) };
        return;
    }
    xs.iter_mut().for_each(|v| *v = (*v / cap).tanh() * cap);
}

/// `exp` of every value, in place.
pub fn exp_in_place(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA.
        unsafe { avx2::exp_in_place(xs) };
        return;
    }
    xs.iter_mut().for_each(|v| *v = v.exp());
}

/// The inverse frequencies of MLX's `fast.rope` with a `base` over `dims` channels:
/// `base^(-2i/dims)`, formed as MLX forms them, `exp(-i ln(base) / (dims/2))`.
pub fn rope_inverse_frequencies(dims: usize, base: f32) -> Vec<f32> {
    let half = dims / 2;
    let step = base.ln() / half as f32;
    (0..half).map(|i| (-(i as f32) * step).exp()).collect()
}

/// Rotate-half rotary embedding (MLX `fast.rope`, not traditional) of the first
/// `2 * inverse.len()` channels of each `head_dim`-value head of `x` (`[positions, heads *
/// head_dim]`): row `t` at position `offset + t` times `scale`, pair `i` turned by that times
/// `inverse[i]` (0 leaves it as it is: MLX's infinite frequencies).
pub fn rope(
    x: &mut [f32],
    heads: usize,
    head_dim: usize,
    inverse: &[f32],
    scale: f32,
    offset: usize,
) {
    let half = inverse.len();
    for (t, row) in x.chunks_exact_mut(heads * head_dim).enumerate() {
        let position = (offset + t) as f32 * scale;
        let (sin, cos): (Vec<f32>, Vec<f32>) =
            inverse.iter().map(|f| (position * f).sin_cos()).unzip();
        for head in row.chunks_exact_mut(head_dim) {
            let (a, b) = head[..2 * half].split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * cos[i] - x2 * sin[i];
                b[i] = x1 * sin[i] + x2 * cos[i];
            }
        }
    }
}

/// Attention of `queries` query rows (`q`: `[queries, heads * dim]`, already scaled by nothing)
/// over the first `keys` rows of a cache (`k`, `v`: `[capacity, kv_heads * dim]`): query `t` is
/// at position `keys - queries + t` and sees key `j` when `j <= position` and, with a window,
/// `position - j < window`. Scores are `scale * q . k`, softmaxed in float32. Output
/// `[queries, heads * dim]`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    queries: usize,
    keys: usize,
    heads: usize,
    kv_heads: usize,
    dim: usize,
    scale: f32,
    window: Option<usize>,
) -> Vec<f32> {
    let mut out = vec![0f32; queries * heads * dim];
    let group = heads / kv_heads;
    let (qw, kw) = (heads * dim, kv_heads * dim);
    // One task per (query, head): each writes its own `dim` outputs.
    out.par_chunks_mut(dim).enumerate().for_each_init(
        || vec![0f32; keys],
        |scores, (e, o)| {
            let (t, h) = (e / heads, e % heads);
            let kvh = h / group;
            let position = keys - queries + t;
            let first = window.map_or(0, |w| (position + 1).saturating_sub(w));
            let qv = &q[t * qw + h * dim..t * qw + (h + 1) * dim];
            let mut top = f32::NEG_INFINITY;
            for j in first..=position {
                let s = scale * dot(qv, &k[j * kw + kvh * dim..j * kw + (kvh + 1) * dim]);
                scores[j] = s;
                top = top.max(s);
            }
            let mut total = 0f32;
            for s in &mut scores[first..=position] {
                *s = (*s - top).exp();
                total += *s;
            }
            for j in first..=position {
                axpy(
                    o,
                    scores[j] / total,
                    &v[j * kw + kvh * dim..j * kw + (kvh + 1) * dim],
                );
            }
        },
    );
    out
}

fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// `exp` of 8 floats: Cephes' `expf` (range reduction by ln 2 in two parts, a degree-5
    /// polynomial, the power of two put into the exponent), within a few ulp of `f32::exp`.
    #[inline(always)]
    unsafe fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-88.376_26)),
            _mm256_set1_ps(88.376_26),
        );
        let fx = _mm256_floor_ps(_mm256_fmadd_ps(
            x,
            _mm256_set1_ps(std::f32::consts::LOG2_E),
            _mm256_set1_ps(0.5),
        ));
        let x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693_359_4), x);
        let x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.121_944_4e-4), x);
        let z = _mm256_mul_ps(x, x);
        let mut y = _mm256_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            0.166_666_65,
            0.5,
        ] {
            y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(c));
        }
        let y = _mm256_add_ps(_mm256_fmadd_ps(y, z, x), _mm256_set1_ps(1.0));
        let pow2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(fx),
            _mm256_set1_epi32(127),
        ));
        _mm256_mul_ps(y, _mm256_castsi256_ps(pow2))
    }

    /// `tanh` of 8 floats: Cephes' `tanhf` (an odd polynomial below 0.625, `1 - 2 / (exp(2|x|) +
    /// 1)` with the sign above).
    #[inline(always)]
    unsafe fn tanh8(x: __m256) -> __m256 {
        let sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0));
        let a = _mm256_andnot_ps(_mm256_set1_ps(-0.0), x);
        let e = exp8(_mm256_add_ps(a, a));
        let one = _mm256_set1_ps(1.0);
        let large = _mm256_sub_ps(
            one,
            _mm256_div_ps(_mm256_set1_ps(2.0), _mm256_add_ps(e, one)),
        );
        let large = _mm256_or_ps(large, sign);
        let z = _mm256_mul_ps(x, x);
        let mut p = _mm256_set1_ps(-5.704_988_7e-3);
        for c in [2.063_909e-2, -5.373_971_6e-2, 0.133_314_42, -0.333_332_8] {
            p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(c));
        }
        let small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
        let is_small = _mm256_cmp_ps::<_CMP_LT_OQ>(a, _mm256_set1_ps(0.625));
        _mm256_blendv_ps(large, small, is_small)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_in_place(xs: &mut [f32]) {
        let mut chunks = xs.chunks_exact_mut(8);
        for c in &mut chunks {
            _mm256_storeu_ps(c.as_mut_ptr(), exp8(_mm256_loadu_ps(c.as_ptr())));
        }
        chunks
            .into_remainder()
            .iter_mut()
            .for_each(|v| *v = v.exp());
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn softcap_in_place(xs: &mut [f32], cap: f32) {
        let c = _mm256_set1_ps(cap);
        let mut chunks = xs.chunks_exact_mut(8);
        for v in &mut chunks {
            let t = tanh8(_mm256_div_ps(_mm256_loadu_ps(v.as_ptr()), c));
            _mm256_storeu_ps(v.as_mut_ptr(), _mm256_mul_ps(t, c));
        }
        chunks
            .into_remainder()
            .iter_mut()
            .for_each(|v| *v = (*v / cap).tanh() * cap);
    }

    /// `gelu_tanh(gate) * up` into `gate`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gelu_tanh_mul(gate: &mut [f32], up: &[f32]) {
        let c = _mm256_set1_ps((2.0f64 / std::f64::consts::PI).sqrt() as f32);
        let (k, half, one) = (
            _mm256_set1_ps(0.044715),
            _mm256_set1_ps(0.5),
            _mm256_set1_ps(1.0),
        );
        let n = gate.len() / 8 * 8;
        for i in (0..n).step_by(8) {
            let x = _mm256_loadu_ps(gate.as_ptr().add(i));
            let x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
            let t = tanh8(_mm256_mul_ps(c, _mm256_fmadd_ps(k, x3, x)));
            let g = _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, t));
            _mm256_storeu_ps(
                gate.as_mut_ptr().add(i),
                _mm256_mul_ps(g, _mm256_loadu_ps(up.as_ptr().add(i))),
            );
        }
        for (x, u) in gate[n..].iter_mut().zip(&up[n..]) {
            *x = super::gelu_tanh(*x) * u;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 4];
        for c in 0..a.len() / 32 {
            for (p, acc) in acc.iter_mut().enumerate() {
                let at = 32 * c + 8 * p;
                *acc = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(at)),
                    _mm256_loadu_ps(b.as_ptr().add(at)),
                    *acc,
                );
            }
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let pair = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let pair = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from -30 to 30, dense near zero where tanh changes form.
    fn grid() -> Vec<f32> {
        (-3000..=3000)
            .map(|i| i as f32 / 100.0)
            .chain((-100..=100).map(|i| i as f32 / 997.0))
            .collect()
    }

    #[test]
    fn exp_stays_within_a_few_ulp_of_the_standard_library() {
        let mut xs: Vec<f32> = grid().iter().map(|x| x * 2.9).collect();
        let want: Vec<f32> = xs.iter().map(|x| x.exp()).collect();
        exp_in_place(&mut xs);
        for (got, want) in xs.iter().zip(&want) {
            assert!(
                (got - want).abs() <= want * 4.0 * f32::EPSILON,
                "{got} vs {want}"
            );
        }
    }

    #[test]
    fn the_gelu_gate_stays_within_float32_rounding_of_its_operands() {
        let xs = grid();
        let up: Vec<f32> = xs.iter().map(|x| 1.5 - x / 40.0).collect();
        let mut got = xs.clone();
        gelu_tanh_mul(&mut got, &up);
        for ((g, x), u) in got.iter().zip(&xs).zip(&up) {
            let want = (0.5
                * *x as f64
                * (1.0
                    + ((2.0 / std::f64::consts::PI).sqrt()
                        * (*x as f64 + 0.044715 * (*x as f64).powi(3)))
                    .tanh()))
                * *u as f64;
            // 1 + tanh cancels for large negative x in float32 (in MLX too): the error is
            // bounded relative to the operands, not to the tiny result.
            let bound = 4.0 * f32::EPSILON as f64 * (x.abs() as f64 + 1.0) * u.abs() as f64;
            assert!((*g as f64 - want).abs() <= bound, "x {x}: {g} vs {want}");
        }
    }
}
