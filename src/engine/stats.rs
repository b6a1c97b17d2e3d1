//! Generation statistics, each defined once here (docs/statistics.md repeats the definitions).
//!
//! Clock: one monotonic clock read at the start of `generate` (after tokenization), when the first
//! token's id is on the host, and when the last token's id is on the host.

use std::time::Instant;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// A stop token was sampled (it is counted, and not shown as text).
    Stop,
    /// `max_tokens` were generated.
    Length,
}

#[derive(Clone, Debug, Serialize)]
pub struct GenerationStats {
    /// Tokens in the prompt, after any image expansion.
    pub prompt_tokens: usize,
    /// Tokens sampled, the stop token included (as mlx-vlm counts).
    pub generation_tokens: usize,
    /// Seconds spent encoding images (0 for text prompts); part of `time_to_first_token_s`.
    pub vision_encode_s: f64,
    /// Seconds from the start to the first generated token's id on the host: vision encoding,
    /// prefill, and the first sample.
    pub time_to_first_token_s: f64,
    /// `prompt_tokens / (time_to_first_token_s - vision_encode_s)`: text prefill throughput.
    pub prefill_tps: f64,
    /// `(generation_tokens - 1) / decode_s`: tokens after the first, over the time they took.
    /// 0 when only one token was generated.
    pub decode_tps: f64,
    /// Seconds from the first token to the last.
    pub decode_s: f64,
    /// Seconds from the start to the last token.
    pub total_s: f64,
    /// MLX's process-wide peak of allocated memory, in bytes, when generation ended (weights included).
    pub peak_memory_bytes: u64,
    pub finish_reason: FinishReason,
    /// Host time per decode step, milliseconds (None without decode steps). Building is the
    /// host's own work; submitting also waits for the device whenever MLX's host is ten command
    /// graphs ahead. Building near `1000 / decode_tps` means the host sets the pace.
    pub decode_host_ms: Option<HostMs>,
    /// The same run in mlx-vlm's own definitions, for side-by-side comparison.
    pub reference: ReferenceStats,
}

/// mlx-vlm 0.7.10's `GenerationResult` figures, computed from our clock readings.
#[derive(Clone, Debug, Serialize)]
pub struct ReferenceStats {
    /// `prompt_tokens / time_to_first_token` (vision encoding and the first sample included).
    pub prompt_tps: f64,
    /// `generation_tokens / (t_last - t_first)`: counts the first token, whose time was charged
    /// to the prompt.
    pub generation_tps: f64,
    /// `peak_memory_bytes / 1e9`.
    pub peak_memory_gb: f64,
}

/// Raw clock readings of one generation.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    pub vision_encode_s: f64,
    pub first_token_s: f64,
    pub last_token_s: f64,
    pub decode_host: HostTime,
}

/// Host time spent on decode steps, summed over the steps.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HostTime {
    pub steps: usize,
    /// Building each step's graph: the model's forward pass and the sampler (no device work).
    pub build_s: f64,
    /// `async_eval` of each step: MLX schedules the graph and, on a GPU, encodes its kernels.
    pub submit_s: f64,
}

impl HostTime {
    /// Adds one step that started building at `building` and was submitted at `submitting`.
    pub fn add_step(&mut self, building: Instant, submitting: Instant) {
        self.steps += 1;
        self.build_s += (submitting - building).as_secs_f64();
        self.submit_s += submitting.elapsed().as_secs_f64();
    }

    fn per_step_ms(&self) -> Option<HostMs> {
        (self.steps > 0).then(|| HostMs {
            build: self.build_s * 1e3 / self.steps as f64,
            submit: self.submit_s * 1e3 / self.steps as f64,
        })
    }
}

/// Host time per decode step, milliseconds: building its graph and submitting it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct HostMs {
    pub build: f64,
    pub submit: f64,
}

impl GenerationStats {
    pub fn from_timings(
        prompt_tokens: usize,
        generation_tokens: usize,
        t: Timings,
        peak_memory_bytes: u64,
        finish_reason: FinishReason,
    ) -> GenerationStats {
        let per_second = |n: f64, s: f64| if s > 0.0 && n > 0.0 { n / s } else { 0.0 };
        let decode_s = (t.last_token_s - t.first_token_s).max(0.0);
        GenerationStats {
            prompt_tokens,
            generation_tokens,
            vision_encode_s: t.vision_encode_s,
            time_to_first_token_s: t.first_token_s,
            prefill_tps: per_second(prompt_tokens as f64, t.first_token_s - t.vision_encode_s),
            decode_tps: per_second(generation_tokens.saturating_sub(1) as f64, decode_s),
            decode_s,
            total_s: t.last_token_s,
            peak_memory_bytes,
            finish_reason,
            decode_host_ms: t.decode_host.per_step_ms(),
            reference: ReferenceStats {
                prompt_tps: per_second(prompt_tokens as f64, t.first_token_s),
                generation_tps: per_second(generation_tokens as f64, decode_s),
                peak_memory_gb: peak_memory_bytes as f64 / 1e9,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_follow_the_documented_formulas() {
        let t = Timings {
            vision_encode_s: 0.5,
            first_token_s: 1.5,
            last_token_s: 3.5,
            decode_host: HostTime {
                steps: 8,
                build_s: 0.4,
                submit_s: 0.8,
            },
        };
        let s = GenerationStats::from_timings(100, 9, t, 2_000_000_000, FinishReason::Length);
        assert_eq!(s.prefill_tps, 100.0); // 100 tokens over 1.5 - 0.5 s
        assert_eq!(s.decode_tps, 4.0); // 8 tokens after the first over 2 s
        assert_eq!(s.decode_s, 2.0);
        assert_eq!(s.total_s, 3.5);
        assert!((s.reference.prompt_tps - 100.0 / 1.5).abs() < 1e-12);
        assert_eq!(s.reference.generation_tps, 4.5); // mlx-vlm counts the first token too
        assert_eq!(s.reference.peak_memory_gb, 2.0);
        let host = s.decode_host_ms.unwrap(); // 0.4 s and 0.8 s over 8 steps
        assert!((host.build - 50.0).abs() < 1e-9 && (host.submit - 100.0).abs() < 1e-9);
    }

    #[test]
    fn one_token_has_no_decode_rate() {
        let t = Timings {
            vision_encode_s: 0.0,
            first_token_s: 0.2,
            last_token_s: 0.2,
            decode_host: HostTime::default(),
        };
        let s = GenerationStats::from_timings(10, 1, t, 0, FinishReason::Stop);
        assert_eq!(s.decode_tps, 0.0);
        assert_eq!(s.reference.generation_tps, 0.0);
        assert_eq!(s.prefill_tps, 50.0);
        assert_eq!(s.decode_host_ms, None);
    }
}
