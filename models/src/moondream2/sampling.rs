//! Token choice of Moondream2's `_generate_answer`: greedy at temperature 0 (argmax over the bf16
//! logits, first index on ties), otherwise the reference's sampler: `softmax(logits / T)` in bf16,
//! top-p keeping the sorted prefix whose mass before each token is at most `top_p`,
//! renormalised, one multinomial draw. The random stream is our own (SplitMix64), so sampled
//! text cannot match PyTorch's draw for draw; only the distribution is the reference's.

use half::bf16;

use super::region::argmax_first;
use crate::error::{ModelError, Result};

/// `settings` of caption/query: the reference's defaults are T 0.5, top-p 0.3, 768 tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSettings {
    pub temperature: f32,
    pub top_p: f32,
    pub max_tokens: usize,
    /// Seed of the sampler (ignored when greedy); `None` seeds from the clock.
    pub seed: Option<u64>,
}

impl Default for TextSettings {
    fn default() -> Self {
        TextSettings {
            temperature: 0.5,
            top_p: 0.3,
            max_tokens: 768,
            seed: None,
        }
    }
}

impl TextSettings {
    /// Temperature 0: deterministic argmax decoding.
    pub fn greedy(max_tokens: usize) -> Self {
        TextSettings {
            temperature: 0.0,
            max_tokens,
            ..Default::default()
        }
    }
}

pub(crate) struct Sampler {
    temperature: f32,
    top_p: f32,
    state: u64,
}

impl Sampler {
    pub(crate) fn new(s: &TextSettings) -> Result<Self> {
        if !(s.temperature >= 0.0 && s.temperature.is_finite()) {
            return Err(ModelError::Input(format!(
                "temperature must be finite and >= 0, found {}",
                s.temperature
            )));
        }
        if !(s.top_p > 0.0 && s.top_p <= 1.0) && s.temperature > 0.0 {
            return Err(ModelError::Input(format!(
                "top_p must be in (0, 1], found {}",
                s.top_p
            )));
        }
        let seed = s.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        Ok(Sampler {
            temperature: s.temperature,
            top_p: s.top_p,
            state: seed,
        })
    }

    pub(crate) fn choose(&mut self, logits: &[f32]) -> u32 {
        if self.temperature == 0.0 {
            return argmax_first(logits) as u32;
        }
        let probs = top_p_probs(logits, self.temperature, self.top_p);
        let u = self.next_f64();
        let mut acc = 0.0f64;
        let mut last = 0;
        for (i, &p) in probs.iter().enumerate() {
            if p > 0.0 {
                last = i;
                acc += p as f64;
                if u < acc {
                    return i as u32;
                }
            }
        }
        last as u32
    }

    fn next_f64(&mut self) -> f64 {
        // SplitMix64.
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The reference's `softmax(logits / T)` (bf16) followed by `_apply_top_p`; returns the
/// renormalised distribution over the vocabulary.
pub fn top_p_probs(logits: &[f32], temperature: f32, top_p: f32) -> Vec<f32> {
    let scaled: Vec<f32> = logits
        .iter()
        .map(|&l| bf16::from_f32(l / temperature).to_f32())
        .collect();
    let max = scaled.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = scaled.iter().map(|&l| (l - max).exp()).collect();
    let total: f32 = exps.iter().sum();
    let probs: Vec<f32> = exps
        .iter()
        .map(|&e| bf16::from_f32(e / total).to_f32())
        .collect();
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let mut kept = vec![0f32; probs.len()];
    let mut cum = 0f32;
    let mut mass = 0f32;
    for &i in &order {
        // `mask = cumsum - p > top_p`: a token is dropped when the mass before it exceeds top_p.
        if cum > top_p {
            break;
        }
        cum += probs[i];
        kept[i] = probs[i];
        mass += probs[i];
    }
    if mass > 0.0 {
        kept.iter_mut().for_each(|p| *p /= mass);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_p_keeps_the_smallest_prefix_reaching_the_mass() {
        // Probabilities after softmax ~ [0.64, 0.24, 0.09, 0.03]: with top_p 0.3 only the first
        // survives (the mass before the second is 0.64 > 0.3).
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let p = top_p_probs(&logits, 1.0, 0.3);
        assert_eq!(p[0], 1.0);
        assert!(p[1..].iter().all(|&x| x == 0.0));
        let p = top_p_probs(&logits, 1.0, 0.7);
        assert!(p[0] > 0.0 && p[1] > 0.0 && p[2] == 0.0);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn greedy_is_the_first_argmax_and_sampling_stays_in_the_nucleus() {
        let mut g = Sampler::new(&TextSettings::greedy(8)).unwrap();
        assert_eq!(g.choose(&[0.0, 5.0, 5.0]), 1);
        let mut s = Sampler::new(&TextSettings {
            seed: Some(7),
            ..Default::default()
        })
        .unwrap();
        // At T 0.5, top-p 0.3 the two leaders are far ahead: every draw is one of them.
        for _ in 0..200 {
            let t = s.choose(&[4.0, 4.0, 0.0, -1.0]);
            assert!(t < 2, "{t}");
        }
    }
}
