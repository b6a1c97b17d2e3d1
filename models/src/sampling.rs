//! Next-token sampling on MLX arrays, as mlx-vlm 0.7.10's `make_sampler` (`sample_utils.py`):
//! temperature 0 takes the argmax; otherwise the filters run on the *untempered* log-probs in the
//! order top_p, min_p, top_k, and a token is drawn with `categorical(logprobs / T)`.
//!
//! Filters keep the input's dtype, as the Python ones do (scalars take the array's dtype), so a
//! bf16 model samples from the same numbers as in mlx-vlm. With a seed, the sampler owns an MLX
//! key sequence seeded like `mx.random.seed(seed)` and split once per draw, which is how MLX's
//! global generator advances; without one it uses mlx-rs's thread-local generator.

use mlx_rs::error::Exception;
use mlx_rs::ops::indexing::{argmax_axis, put_along_axis, take_along_axis, Ellipsis, TryIndexOp};
use mlx_rs::ops::{argpartition_axis, cumsum, select, sort_axis};
use mlx_rs::random::{categorical, RandomState};
use mlx_rs::{Array, Dtype};

use crate::generation_config::SamplingParams;

/// Positive temperatures below this are raised to it (mlx-vlm's `clamp_temperature`).
pub const MIN_SAMPLING_TEMPERATURE: f64 = 0.01;

#[derive(Debug, thiserror::Error)]
pub enum SamplingError {
    #[error("top_k must be below the vocabulary size {vocab_size}, got {top_k}")]
    TopKOutOfRange { top_k: u32, vocab_size: i32 },
    #[error("temperature must be a finite number >= 0, got {0}")]
    InvalidTemperature(f64),
    #[error("top_p must be a finite number, got {0}")]
    InvalidTopP(f64),
    #[error("min_p must be in [0, 1], got {0}")]
    InvalidMinP(f64),
    #[error("min_tokens_to_keep must be at least 1")]
    InvalidMinTokensToKeep,
    #[error("log-probs must have at least one dimension (the vocabulary), got shape {0:?}")]
    BadShape(Vec<i32>),
    #[error("MLX error while sampling: {0}")]
    Mlx(#[from] Exception),
}

/// `0 < t < 0.01` becomes 0.01; 0 stays greedy.
pub fn clamp_temperature(temperature: f64) -> f64 {
    if temperature > 0.0 && temperature < MIN_SAMPLING_TEMPERATURE {
        MIN_SAMPLING_TEMPERATURE
    } else {
        temperature
    }
}

/// `logits - logsumexp(logits)` over the last axis: what mlx-vlm hands the sampler.
pub fn log_softmax(logits: &Array) -> Result<Array, SamplingError> {
    let on_host = crate::kernels::cpu::try_log_softmax(logits)
        .map_err(|e| Exception::custom(e.to_string()))?;
    if let Some(lp) = on_host {
        return Ok(lp);
    }
    let lse = logits.logsumexp_axis(-1, true)?;
    Ok(logits.subtract(&lse)?)
}

/// A scalar in `like`'s dtype (Python scalars are weakly typed in MLX).
fn scalar_like(value: f64, like: &Array) -> Result<Array, Exception> {
    Array::from_f32(value as f32).as_dtype(like.dtype())
}

/// Nucleus filter with mlx-vlm's exclusive reverse cumulative sum: sorted ascending, a token is
/// dropped when the mass of the tokens above it already reaches `top_p`; the kept set is the
/// smallest one whose mass reaches `top_p` (ties with the last kept value are kept too).
pub fn apply_top_p(logprobs: &Array, top_p: f64) -> Result<Array, SamplingError> {
    let sorted = sort_axis(logprobs, -1)?;
    let sorted_probs = sorted.as_dtype(Dtype::Float32)?.exp()?;
    let mass_above = cumsum(&sorted_probs, -1, true, false)?;
    let first = Array::from_slice(&[0i32], &[1]);
    let total = mass_above
        .take_axis(&first, -1)?
        .add(sorted_probs.take_axis(&first, -1)?)?;
    let cutoff = total.multiply(Array::from_f32(top_p as f32))?;
    let num_dropped = mass_above.ge(&cutoff)?.sum_axis(-1, true)?;
    let threshold = take_along_axis(&sorted, &num_dropped, -1)?;
    let neg_inf = scalar_like(f64::NEG_INFINITY, logprobs)?;
    Ok(select(logprobs.lt(&threshold)?, &neg_inf, logprobs)?)
}

/// Drops tokens whose probability is below `min_p` times the best one's, keeping at least
/// `min_tokens_to_keep` tokens.
pub fn apply_min_p(
    logprobs: &Array,
    min_p: f64,
    min_tokens_to_keep: u32,
) -> Result<Array, SamplingError> {
    if !(0.0..=1.0).contains(&min_p) {
        return Err(SamplingError::InvalidMinP(min_p));
    }
    if min_tokens_to_keep < 1 {
        return Err(SamplingError::InvalidMinTokensToKeep);
    }
    let top = logprobs.max_axis(-1, true)?;
    let scaled = top.add(scalar_like(min_p.ln(), logprobs)?)?;
    let mut remove = logprobs.lt(&scaled)?;
    if min_tokens_to_keep > 1 {
        let k = min_tokens_to_keep as i32;
        let top_indices = argpartition_axis(logprobs, -k, -1)?.try_index((Ellipsis, -k..))?;
        remove = put_along_axis(&remove, &top_indices, Array::from_bool(false), -1)?;
    }
    let neg_inf = scalar_like(f64::NEG_INFINITY, logprobs)?;
    Ok(select(&remove, &neg_inf, logprobs)?)
}

/// Keeps the `top_k` largest log-probs (`0 < top_k < vocab`), masking the rest to -inf.
pub fn apply_top_k(logprobs: &Array, top_k: u32) -> Result<Array, SamplingError> {
    let vocab_size = vocab_size(logprobs)?;
    if top_k == 0 || i64::from(top_k) >= i64::from(vocab_size) {
        return Err(SamplingError::TopKOutOfRange { top_k, vocab_size });
    }
    let k = top_k as i32;
    let drop = argpartition_axis(logprobs.negative()?, k - 1, -1)?.try_index((Ellipsis, k..))?;
    let neg_inf = scalar_like(f64::NEG_INFINITY, logprobs)?;
    Ok(put_along_axis(logprobs, &drop, &neg_inf, -1)?)
}

fn vocab_size(logprobs: &Array) -> Result<i32, SamplingError> {
    logprobs
        .shape()
        .last()
        .copied()
        .ok_or_else(|| SamplingError::BadShape(logprobs.shape().to_vec()))
}

/// A configured sampler. Input: log-probs `[..., vocab]`; output: uint32 ids `[...]`.
pub struct Sampler {
    params: SamplingParams,
    temperature: f64,
    rng: Option<RandomState>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("params", &self.params)
            .field("seeded", &self.rng.is_some())
            .finish()
    }
}

impl Sampler {
    /// Validates `params`; with `seed`, draws are reproducible (`mx.random.seed(seed)`).
    /// `top_k` is checked against the vocabulary at the first draw.
    pub fn new(params: SamplingParams, seed: Option<u64>) -> Result<Self, SamplingError> {
        if !params.temperature.is_finite() || params.temperature < 0.0 {
            return Err(SamplingError::InvalidTemperature(params.temperature));
        }
        if !params.top_p.is_finite() {
            return Err(SamplingError::InvalidTopP(params.top_p));
        }
        if params.min_p != 0.0 && !(0.0..=1.0).contains(&params.min_p) {
            return Err(SamplingError::InvalidMinP(params.min_p));
        }
        if params.min_tokens_to_keep < 1 {
            return Err(SamplingError::InvalidMinTokensToKeep);
        }
        let rng = seed.map(RandomState::with_seed).transpose()?;
        Ok(Self {
            temperature: clamp_temperature(params.temperature),
            params,
            rng,
        })
    }

    /// Argmax decoding: what benchmarks, evaluations and the notebook port use, so that runs repeat.
    pub fn greedy() -> Self {
        Self::new(
            SamplingParams {
                temperature: 0.0,
                ..Default::default()
            },
            None,
        )
        .expect("temperature 0 with default parameters is valid")
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks the parameters against a vocabulary size before generation starts.
    pub fn check_vocab(&self, vocab_size: i32) -> Result<(), SamplingError> {
        let top_k = self.params.top_k;
        if !self.is_greedy() && top_k > 0 && i64::from(top_k) >= i64::from(vocab_size) {
            return Err(SamplingError::TopKOutOfRange { top_k, vocab_size });
        }
        Ok(())
    }

    /// Draws the next id(s) from log-probs `[..., vocab]`.
    pub fn sample(&mut self, logprobs: &Array) -> Result<Array, SamplingError> {
        self.check_vocab(vocab_size(logprobs)?)?;
        if self.is_greedy() {
            return Ok(argmax_axis(logprobs, -1, false)?);
        }
        let p = self.params;
        let mut filtered = logprobs.clone();
        if p.top_p > 0.0 && p.top_p < 1.0 {
            filtered = apply_top_p(&filtered, p.top_p)?;
        }
        if p.min_p != 0.0 {
            filtered = apply_min_p(&filtered, p.min_p, p.min_tokens_to_keep)?;
        }
        if p.top_k > 0 {
            filtered = apply_top_k(&filtered, p.top_k)?;
        }
        let scaled = filtered.multiply(scalar_like(1.0 / self.temperature, &filtered)?)?;
        let key = match self.rng.as_mut() {
            Some(rng) => Some(rng.next_key()?),
            None => None,
        };
        Ok(categorical(&scaled, -1, None, key.as_ref())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs_to_logprobs(p: &[f32]) -> Array {
        Array::from_slice(
            &p.iter().map(|x| x.ln()).collect::<Vec<_>>(),
            &[p.len() as i32],
        )
    }

    fn to_vec(a: &Array) -> Vec<f32> {
        a.as_dtype(Dtype::Float32)
            .unwrap()
            .as_slice::<f32>()
            .to_vec()
    }

    fn draw(sampler: &mut Sampler, logprobs: &Array) -> u32 {
        sampler.sample(logprobs).unwrap().item_exact::<u32>()
    }

    fn params(temperature: f64, top_p: f64, top_k: u32) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p,
            top_k,
            ..SamplingParams::default()
        }
    }

    #[test]
    fn greedy_is_argmax() {
        let logits = Array::from_slice(&[0.1f32, 2.0, -1.0, 1.9, 0.0, 2.5, 2.4], &[7]);
        let lp = log_softmax(&logits).unwrap();
        let mut s = Sampler::new(params(0.0, 0.9, 3), Some(1)).unwrap();
        assert!(s.is_greedy());
        assert_eq!(draw(&mut s, &lp), 5);
        // Batched rows: one argmax per row.
        let batch = Array::from_slice(&[0.0f32, 3.0, 1.0, 4.0, 0.0, 1.0], &[2, 3]);
        let ids = s.sample(&batch).unwrap();
        assert_eq!(ids.as_slice::<u32>(), &[1, 0]);
    }

    #[test]
    fn top_k_one_equals_greedy_at_any_temperature() {
        let logits = Array::from_slice(&[0.3f32, 1.2, 1.1, -0.5, 0.9, 1.19], &[6]);
        let lp = log_softmax(&logits).unwrap();
        for (i, t) in [0.05, 1.0, 3.0, 50.0].into_iter().enumerate() {
            let mut s = Sampler::new(params(t, 1.0, 1), Some(i as u64)).unwrap();
            for _ in 0..20 {
                assert_eq!(draw(&mut s, &lp), 1, "T={t}");
            }
        }
    }

    #[test]
    fn top_p_keeps_the_minimal_nucleus() {
        // Probabilities 0.5, 0.25, 0.15, 0.07, 0.03 (in shuffled order).
        let lp = probs_to_logprobs(&[0.07, 0.5, 0.03, 0.25, 0.15]);
        let kept = |top_p: f64| -> Vec<bool> {
            to_vec(&apply_top_p(&lp, top_p).unwrap())
                .iter()
                .map(|v| v.is_finite())
                .collect()
        };
        // 0.5 alone reaches 0.5; 0.5+0.25 = 0.75 reaches 0.6 and 0.75; 0.9 needs 0.15 too.
        assert_eq!(kept(0.3), [false, true, false, false, false]);
        assert_eq!(kept(0.5), [false, true, false, false, false]);
        assert_eq!(kept(0.6), [false, true, false, true, false]);
        assert_eq!(kept(0.75), [false, true, false, true, false]);
        assert_eq!(kept(0.8), [false, true, false, true, true]);
        assert_eq!(kept(0.95), [true, true, false, true, true]);
        assert_eq!(kept(0.999), [true, true, true, true, true]);
        // Kept values are unchanged (no renormalisation before the categorical draw).
        let out = to_vec(&apply_top_p(&lp, 0.6).unwrap());
        assert_eq!(out[1], to_vec(&lp)[1]);
    }

    #[test]
    fn min_p_and_top_k_filters() {
        let lp = probs_to_logprobs(&[0.4, 0.3, 0.2, 0.1]);
        let kept = |a: Array| -> Vec<bool> { to_vec(&a).iter().map(|v| v.is_finite()).collect() };
        // min_p 0.4: threshold 0.16 keeps 0.4, 0.3, 0.2.
        assert_eq!(
            kept(apply_min_p(&lp, 0.4, 1).unwrap()),
            [true, true, true, false]
        );
        assert_eq!(
            kept(apply_min_p(&lp, 0.9, 1).unwrap()),
            [true, false, false, false]
        );
        assert_eq!(
            kept(apply_min_p(&lp, 0.9, 2).unwrap()),
            [true, true, false, false]
        );
        assert_eq!(
            kept(apply_top_k(&lp, 2).unwrap()),
            [true, true, false, false]
        );
        assert_eq!(
            kept(apply_top_k(&lp, 3).unwrap()),
            [true, true, true, false]
        );
        assert!(matches!(
            apply_min_p(&lp, 1.5, 1),
            Err(SamplingError::InvalidMinP(_))
        ));
    }

    #[test]
    fn top_k_must_be_below_vocab() {
        let lp = probs_to_logprobs(&[0.5, 0.3, 0.2]);
        let mut s = Sampler::new(params(1.0, 1.0, 3), None).unwrap();
        let err = s.sample(&lp).unwrap_err();
        assert!(matches!(
            err,
            SamplingError::TopKOutOfRange {
                top_k: 3,
                vocab_size: 3
            }
        ));
        assert!(err.to_string().contains("top_k"));
        assert!(s.check_vocab(4).is_ok());
        assert!(matches!(
            apply_top_k(&lp, 0),
            Err(SamplingError::TopKOutOfRange { .. })
        ));
        // Greedy ignores top_k, as mlx-vlm does.
        let mut g = Sampler::new(params(0.0, 1.0, 3), None).unwrap();
        assert_eq!(draw(&mut g, &lp), 0);
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert!(matches!(
            Sampler::new(params(-1.0, 1.0, 0), None),
            Err(SamplingError::InvalidTemperature(_))
        ));
        assert!(matches!(
            Sampler::new(params(f64::NAN, 1.0, 0), None),
            Err(SamplingError::InvalidTemperature(_))
        ));
        assert!(matches!(
            Sampler::new(params(1.0, f64::NAN, 0), None),
            Err(SamplingError::InvalidTopP(_))
        ));
        let bad_min_p = SamplingParams {
            min_p: 2.0,
            ..params(1.0, 1.0, 0)
        };
        assert!(matches!(
            Sampler::new(bad_min_p, None),
            Err(SamplingError::InvalidMinP(_))
        ));
        assert_eq!(clamp_temperature(0.001), 0.01);
        assert_eq!(clamp_temperature(0.0), 0.0);
        assert_eq!(clamp_temperature(0.7), 0.7);
    }

    #[test]
    fn same_seed_same_draws_other_seed_other_draws() {
        let lp = probs_to_logprobs(&[0.2, 0.2, 0.2, 0.2, 0.2]);
        let run = |seed: u64| -> Vec<u32> {
            let mut s = Sampler::new(params(1.0, 1.0, 0), Some(seed)).unwrap();
            (0..200).map(|_| draw(&mut s, &lp)).collect()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        // The key advances: a sequence is not one value repeated.
        assert!(a.iter().any(|&x| x != a[0]));
    }

    #[test]
    fn seeded_draws_follow_mlx_key_splitting() {
        // mx.random.seed(s) then categorical() twice uses split(key(s)) keys in turn.
        let lp = probs_to_logprobs(&[0.1, 0.2, 0.3, 0.4]);
        let mut s = Sampler::new(params(1.0, 1.0, 0), Some(42)).unwrap();
        let mut state = mlx_rs::random::key(42).unwrap();
        for _ in 0..10 {
            let (next, sub) = mlx_rs::random::split(&state, 2).unwrap();
            state = next;
            let expected = categorical(&lp, -1, None, &sub)
                .unwrap()
                .item_exact::<u32>();
            assert_eq!(draw(&mut s, &lp), expected);
        }
    }

    #[test]
    fn empirical_frequencies_match_the_distribution() {
        // 4000 draws from (0.6, 0.3, 0.1): each frequency's standard error is at most
        // sqrt(0.25/4000) ~ 0.008, so a 0.03 tolerance is about four standard errors.
        let target = [0.6f32, 0.3, 0.1];
        let lp = probs_to_logprobs(&target);
        let mut s = Sampler::new(params(1.0, 1.0, 0), Some(1234)).unwrap();
        let n = 4000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            counts[draw(&mut s, &lp) as usize] += 1;
        }
        for (c, p) in counts.iter().zip(target) {
            let freq = *c as f32 / n as f32;
            assert!((freq - p).abs() < 0.03, "counts {counts:?}");
        }
        // Temperature reshapes it: T=0.5 squares the ratios -> (0.783, 0.196, 0.022).
        let mut s = Sampler::new(params(0.5, 1.0, 0), Some(99)).unwrap();
        let mut counts = [0usize; 3];
        for _ in 0..n {
            counts[draw(&mut s, &lp) as usize] += 1;
        }
        let expected = [0.36f32 / 0.46, 0.09 / 0.46, 0.01 / 0.46];
        for (c, p) in counts.iter().zip(expected) {
            assert!((*c as f32 / n as f32 - p).abs() < 0.03, "counts {counts:?}");
        }
    }

    #[test]
    fn filters_keep_bf16() {
        let lp = probs_to_logprobs(&[0.5, 0.3, 0.2])
            .as_dtype(Dtype::Bfloat16)
            .unwrap();
        assert_eq!(apply_top_p(&lp, 0.7).unwrap().dtype(), Dtype::Bfloat16);
        assert_eq!(apply_top_k(&lp, 2).unwrap().dtype(), Dtype::Bfloat16);
        assert_eq!(apply_min_p(&lp, 0.5, 1).unwrap().dtype(), Dtype::Bfloat16);
        let mut s = Sampler::new(params(0.7, 0.9, 2), Some(3)).unwrap();
        assert!(draw(&mut s, &lp) < 2);
    }
}
