//! The generation engine: a model's [`Decoder`] + a prompt -> a stream of tokens with exact
//! statistics. Every feature that generates goes through [`generate`]; nothing else times it.
//!
//! The loop mirrors mlx-vlm's `generate_step`: the prompt's last logits become log-probs
//! (`logits - logsumexp`, in the compute dtype: greedy is the argmax of those, which in bf16 can
//! differ from the argmax of the logits), the sampler picks a token, and step n+1 is enqueued
//! (`async_eval`) before token n is read back, so the device never waits for the host.

mod stats;
mod text;

use std::time::Instant;

use anyhow::{Context, Result};
use mlx_rs::transforms::async_eval;
use mlx_rs::Array;
use vlm_models::model::{Decoder, Prompt};
use vlm_models::sampling::{log_softmax, Sampler};

use stats::HostTime;
pub use stats::{FinishReason, GenerationStats, HostMs, ReferenceStats, Timings};
pub use text::{generate_text, TextGeneration};

/// What to generate and when to stop.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    /// Ids that end generation; empty to ignore EOS (exact lengths, for benchmarks).
    pub stop_ids: Vec<u32>,
    /// Record each token's log-probability and this many most likely alternatives (0: none).
    pub top_logprobs: usize,
}

impl GenerateOptions {
    /// Up to `max_tokens`, stopping at the model's stop tokens.
    pub fn until_stop(model: &vlm_models::model::LoadedModel, max_tokens: usize) -> Self {
        Self {
            max_tokens,
            stop_ids: model.generation.eos_token_ids.clone(),
            top_logprobs: 0,
        }
    }

    /// Exactly `max_tokens`, stop tokens or not (for timing).
    pub fn exactly(max_tokens: usize) -> Self {
        Self {
            max_tokens,
            stop_ids: vec![],
            top_logprobs: 0,
        }
    }

    /// Exactly `max_tokens` unless `ignore_eos` is false, in which case as [`Self::until_stop`].
    pub fn with_eos(
        model: &vlm_models::model::LoadedModel,
        max_tokens: usize,
        ignore_eos: bool,
    ) -> Self {
        if ignore_eos {
            Self::exactly(max_tokens)
        } else {
            Self::until_stop(model, max_tokens)
        }
    }
}

/// The tokens of one generation and its statistics.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Every sampled id, the stop token included when `finish_reason` is `Stop`.
    pub token_ids: Vec<u32>,
    /// One per token when `top_logprobs` was asked for, else empty.
    pub logprobs: Vec<TokenLogprobs>,
    pub stats: GenerationStats,
}

/// A generated token's log-probability (natural log, from the distribution it was sampled from,
/// before temperature and top-p/top-k, as mlx-vlm's `logprobs`) and the most likely tokens there.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TokenLogprobs {
    pub id: u32,
    pub logprob: f32,
    /// `(id, logprob)`, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// The arrays behind one [`TokenLogprobs`], evaluated with the token they belong to.
struct PendingLogprobs {
    chosen: Array,
    top_ids: Array,
    top_logprobs: Array,
}

impl PendingLogprobs {
    fn new(logprobs: &Array, token: &Array, k: usize) -> Result<Self> {
        use mlx_rs::ops::indexing::{Ellipsis, IndexOp};
        let vocab = *logprobs.shape().last().unwrap_or(&0);
        let k = (k as i32).min(vocab).max(1);
        // The k largest log-probabilities, in no order (sorted on the host: k is small).
        let top_ids =
            mlx_rs::ops::argpartition_axis(logprobs, vocab - k, -1)?.index((Ellipsis, -k..));
        Ok(Self {
            chosen: logprobs.take_along_axis(token.reshape(&[1, 1])?, -1)?,
            top_logprobs: logprobs.take_along_axis(&top_ids, -1)?,
            top_ids,
        })
    }

    fn arrays(&self) -> [&Array; 3] {
        [&self.chosen, &self.top_ids, &self.top_logprobs]
    }

    fn read(&self, id: u32) -> Result<TokenLogprobs> {
        let f32s = |a: &Array| -> Result<Vec<f32>> {
            Ok(a.as_dtype(mlx_rs::Dtype::Float32)?
                .as_slice::<f32>()
                .to_vec())
        };
        let ids = self.top_ids.as_dtype(mlx_rs::Dtype::Uint32)?;
        let mut top: Vec<(u32, f32)> = ids
            .as_slice::<u32>()
            .iter()
            .copied()
            .zip(f32s(&self.top_logprobs)?)
            .collect();
        // Most likely first, equal ones by id. (Which of several equal values at the k-th place
        // make the list is the partition's choice.)
        top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(TokenLogprobs {
            id,
            logprob: f32s(&self.chosen)?[0],
            top,
        })
    }
}

/// Generates up to `options.max_tokens` tokens after `prompt_ids`. `on_token` sees each id as soon
/// as it is on the host (the stop token too) and may abort by returning an error.
pub fn generate(
    decoder: &mut dyn Decoder,
    prompt_ids: &[u32],
    sampler: &mut Sampler,
    options: &GenerateOptions,
    on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Generation> {
    let prompt = Prompt {
        ids: prompt_ids.to_vec(),
        ..Default::default()
    };
    generate_prompt(decoder, &prompt, sampler, options, on_token)
}

/// As [`generate`] for a prompt that may hold images. Image encoding is timed on its own
/// (`vision_encode_s`) and is part of the time to the first token.
pub fn generate_prompt(
    decoder: &mut dyn Decoder,
    prompt: &Prompt,
    sampler: &mut Sampler,
    options: &GenerateOptions,
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Generation> {
    let prompt_ids = &prompt.ids;
    anyhow::ensure!(
        !prompt_ids.is_empty(),
        "the prompt is empty: nothing to generate from"
    );
    anyhow::ensure!(options.max_tokens > 0, "max_tokens must be at least 1");
    let start = Instant::now();
    let top_k = options.top_logprobs;
    // The next token, and the arrays of its log-probabilities when they are asked for.
    let mut sample = |logits: &Array| -> Result<(Array, Option<PendingLogprobs>)> {
        let logprobs = log_softmax(logits)?;
        let token = sampler.sample(&logprobs)?.reshape(&[1, 1])?;
        let pending = match top_k {
            0 => None,
            k => Some(PendingLogprobs::new(&logprobs, &token, k)?),
        };
        Ok((token, pending))
    };
    let enqueue = |token: &Array, pending: &Option<PendingLogprobs>| {
        let mut arrays = vec![token];
        arrays.extend(pending.iter().flat_map(PendingLogprobs::arrays));
        async_eval(arrays)
    };

    let prefill = decoder.prefill_prompt(prompt).context("prefill failed")?;
    let vision_encode_s = prefill.vision_encode_s;
    let (token, mut next_logprobs) = sample(&prefill.logits)?;
    let mut next = decoder.agree_on_token(token)?;
    enqueue(&next, &next_logprobs)?;

    let mut token_ids = Vec::with_capacity(options.max_tokens);
    let mut logprobs = Vec::new();
    let mut first_token_s = 0.0;
    let mut host = HostTime::default();
    let eager = decoder.steps_eagerly();
    // Takes a token: its id on the host (the first one timed), its log-probabilities, the
    // callback; says why generation ends with it, if it does.
    let mut take = |token: &Array,
                    pending: Option<PendingLogprobs>,
                    ids: &mut Vec<u32>|
     -> Result<Option<FinishReason>> {
        let id = token.try_item_exact::<u32>()?;
        if ids.is_empty() {
            first_token_s = start.elapsed().as_secs_f64();
        }
        ids.push(id);
        if let Some(pending) = &pending {
            logprobs.push(pending.read(id)?);
        }
        on_token(id)?;
        Ok(if options.stop_ids.contains(&id) {
            Some(FinishReason::Stop)
        } else if ids.len() >= options.max_tokens {
            Some(FinishReason::Length)
        } else {
            None
        })
    };
    let finish_reason = loop {
        let current = next;
        let mut pending = next_logprobs.take();
        // A decoder that computes on the spot has nothing to overlap with: its token is taken
        // (and streamed) before the next step, which a stop token then saves. Otherwise the
        // following step is enqueued before this token is read back, so that the device
        // computes while the host builds, unless generation ends here anyway.
        if eager {
            if let Some(reason) = take(&current, pending.take(), &mut token_ids)? {
                break reason;
            }
        }
        if eager || token_ids.len() + 1 < options.max_tokens {
            let building = Instant::now();
            let logits = decoder.step(&current).context("decode step failed")?;
            let (token, pending) = sample(&logits)?;
            next = decoder.agree_on_token(token)?;
            next_logprobs = pending;
            let submitting = Instant::now();
            enqueue(&next, &next_logprobs)?;
            host.add_step(building, submitting);
        } else {
            next = current.clone();
        }
        if !eager {
            if let Some(reason) = take(&current, pending.take(), &mut token_ids)? {
                break reason;
            }
        }
    };
    let last_token_s = start.elapsed().as_secs_f64();
    let peak = mlx_rs::memory::peak_memory().unwrap_or(0) as u64;
    let timings = Timings {
        vision_encode_s,
        first_token_s,
        last_token_s,
        decode_host: host,
    };
    let stats = GenerationStats::from_timings(
        prompt_ids.len(),
        token_ids.len(),
        timings,
        peak,
        finish_reason,
    );
    Ok(Generation {
        token_ids,
        logprobs,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vlm_models::error::ModelError;

    /// A model whose next token is always (last token + 1) mod V: deterministic and cheap, so the
    /// tests check the loop itself (ordering, stopping, counting), not a network.
    struct Counter {
        vocab: i32,
        seen: Vec<u32>,
        /// Whether it says it steps eagerly (a host forward pass).
        eager: bool,
        /// What happened, in order: `step N` as token N is fed, `token N` as N is streamed.
        events: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    }

    impl Counter {
        fn new() -> Self {
            Self {
                vocab: 16,
                seen: vec![],
                eager: false,
                events: Default::default(),
            }
        }

        fn logits_after(&self, id: u32) -> Array {
            let mut row = vec![0f32; self.vocab as usize];
            row[((id + 1) % self.vocab as u32) as usize] = 10.0;
            Array::from_slice(&row, &[1, self.vocab])
        }
    }

    impl Decoder for Counter {
        fn prefill(&mut self, ids: &[u32]) -> Result<Array, ModelError> {
            self.seen = ids.to_vec();
            Ok(self.logits_after(*ids.last().unwrap()))
        }
        fn step(&mut self, token: &Array) -> Result<Array, ModelError> {
            let id = token.try_item_exact::<u32>().unwrap();
            self.seen.push(id);
            self.events.borrow_mut().push(format!("step {id}"));
            Ok(self.logits_after(id))
        }
        fn offset(&self) -> i32 {
            self.seen.len() as i32
        }
        fn steps_eagerly(&self) -> bool {
            self.eager
        }
    }

    /// The events of a greedy generation from prompt `[3]` (first token 4).
    fn events(eager: bool, max_tokens: usize, stop_ids: Vec<u32>) -> Vec<String> {
        let mut model = Counter::new();
        model.eager = eager;
        let events = model.events.clone();
        let options = GenerateOptions {
            stop_ids,
            ..GenerateOptions::exactly(max_tokens)
        };
        generate(&mut model, &[3], &mut Sampler::greedy(), &options, |id| {
            events.borrow_mut().push(format!("token {id}"));
            Ok(())
        })
        .unwrap();
        let events = events.borrow().clone();
        events
    }

    #[test]
    fn an_eager_decoder_streams_each_token_before_the_next_step_and_none_after_a_stop() {
        // MLX graphs: the next step is queued before the token is read back.
        assert_eq!(
            events(false, 3, vec![]),
            ["step 4", "token 4", "step 5", "token 5", "token 6"]
        );
        // A host forward pass: the token first (so the time to first token is the prompt's
        // alone), and no step after a stop token.
        assert_eq!(
            events(true, 3, vec![]),
            ["token 4", "step 4", "token 5", "step 5", "token 6"]
        );
        assert_eq!(events(true, 9, vec![5]), ["token 4", "step 4", "token 5"]);
        assert_eq!(
            events(false, 9, vec![5]),
            ["step 4", "token 4", "step 5", "token 5"]
        );
    }

    fn run(max_tokens: usize, stop_ids: Vec<u32>) -> (Generation, Vec<u32>, Counter) {
        let mut model = Counter::new();
        let mut streamed = vec![];
        let options = GenerateOptions {
            max_tokens,
            stop_ids,
            top_logprobs: 0,
        };
        let g = generate(
            &mut model,
            &[3, 4],
            &mut Sampler::greedy(),
            &options,
            |id| {
                streamed.push(id);
                Ok(())
            },
        )
        .unwrap();
        (g, streamed, model)
    }

    #[test]
    fn generates_exactly_max_tokens_when_no_stop_token_appears() {
        let (g, streamed, _) = run(5, vec![]);
        assert_eq!(g.token_ids, vec![5, 6, 7, 8, 9]);
        assert_eq!(streamed, g.token_ids);
        assert_eq!(g.stats.generation_tokens, 5);
        assert_eq!(g.stats.prompt_tokens, 2);
        assert_eq!(g.stats.finish_reason, FinishReason::Length);
    }

    #[test]
    fn stops_at_a_stop_token_and_counts_it() {
        let (g, _, _) = run(10, vec![7]);
        assert_eq!(g.token_ids, vec![5, 6, 7]);
        assert_eq!(g.stats.generation_tokens, 3);
        assert_eq!(g.stats.finish_reason, FinishReason::Stop);
    }

    #[test]
    fn the_model_sees_each_sampled_token_in_order() {
        let (_, _, model) = run(4, vec![]);
        // Prompt, then tokens 1..3 fed back (the 4th is never fed: generation ends there).
        assert_eq!(model.seen, vec![3, 4, 5, 6, 7]);
    }

    #[test]
    fn logprobs_are_those_of_the_sampled_distribution_most_likely_first() {
        let mut model = Counter::new();
        let options = GenerateOptions {
            top_logprobs: 3,
            ..GenerateOptions::exactly(3)
        };
        let g = generate(&mut model, &[3], &mut Sampler::greedy(), &options, |_| {
            Ok(())
        })
        .unwrap();
        // Each row: 10 at the next id, 0 at the 15 others.
        let norm = (10f32.exp() + 15.0).ln();
        assert_eq!(g.logprobs.len(), 3);
        for (lp, id) in g.logprobs.iter().zip(&g.token_ids) {
            assert_eq!(lp.id, *id);
            assert!((lp.logprob - (10.0 - norm)).abs() < 1e-5, "{lp:?}");
            assert_eq!(lp.top.len(), 3);
            assert_eq!(lp.top[0], (*id, lp.logprob));
            // The runners-up: two of the 15 that tie at -norm (which two is the partition's choice).
            let (a, b) = (lp.top[1], lp.top[2]);
            assert!(a.0 != *id && b.0 != *id && a.0 < b.0, "{lp:?}");
            assert!(
                (a.1 + norm).abs() < 1e-5 && (b.1 + norm).abs() < 1e-5,
                "{lp:?}"
            );
        }
        // Off by default: nothing recorded.
        let (plain, _, _) = run(3, vec![]);
        assert!(plain.logprobs.is_empty());
    }

    #[test]
    fn wraps_around_the_vocabulary_like_any_other_id() {
        let mut model = Counter::new();
        let options = GenerateOptions::exactly(3);
        let g = generate(&mut model, &[14], &mut Sampler::greedy(), &options, |_| {
            Ok(())
        })
        .unwrap();
        assert_eq!(g.token_ids, vec![15, 0, 1]);
    }

    #[test]
    fn a_callback_error_aborts_generation() {
        let mut model = Counter::new();
        let options = GenerateOptions::exactly(10);
        let mut n = 0;
        let err = generate(&mut model, &[1], &mut Sampler::greedy(), &options, |_| {
            n += 1;
            anyhow::ensure!(n < 3, "interrupted");
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("interrupted"));
        assert_eq!(n, 3);
    }

    /// A decoder that takes images: it reports a fixed encoding time and remembers what it saw.
    struct Seeing {
        inner: Counter,
        images_seen: usize,
    }

    impl Decoder for Seeing {
        fn prefill(&mut self, ids: &[u32]) -> Result<Array, ModelError> {
            self.inner.prefill(ids)
        }
        fn prefill_prompt(
            &mut self,
            prompt: &Prompt,
        ) -> Result<vlm_models::model::Prefill, ModelError> {
            self.images_seen = prompt.images.len();
            std::thread::sleep(std::time::Duration::from_millis(30)); // "encoding"
            Ok(vlm_models::model::Prefill {
                logits: self.inner.prefill(&prompt.ids)?,
                vision_encode_s: 0.03,
            })
        }
        fn step(&mut self, token: &Array) -> Result<Array, ModelError> {
            self.inner.step(token)
        }
        fn offset(&self) -> i32 {
            self.inner.offset()
        }
    }

    #[test]
    fn images_reach_the_decoder_and_their_encoding_time_is_reported() {
        let image = vlm_models::gemma4::ProcessedImage {
            height: 48,
            width: 48,
            pixel_values: vec![0.0; 3 * 48 * 48],
            num_soft_tokens: 1,
        };
        let prompt = Prompt {
            text: String::new(),
            ids: vec![3, 4],
            images: vec![image.clone(), image],
        };
        let mut model = Seeing {
            inner: Counter::new(),
            images_seen: 0,
        };
        let options = GenerateOptions::exactly(2);
        let g = generate_prompt(
            &mut model,
            &prompt,
            &mut Sampler::greedy(),
            &options,
            |_| Ok(()),
        )
        .unwrap();
        assert_eq!(model.images_seen, 2);
        assert_eq!(g.token_ids, vec![5, 6]);
        let s = &g.stats;
        assert_eq!(s.vision_encode_s, 0.03);
        // Part of the time to the first token; excluded from prefill_tps, included in mlx-vlm's prompt_tps.
        assert!(
            s.time_to_first_token_s >= 0.03,
            "{}",
            s.time_to_first_token_s
        );
        assert_eq!(s.prefill_tps, 2.0 / (s.time_to_first_token_s - 0.03));
        assert_eq!(s.reference.prompt_tps, 2.0 / s.time_to_first_token_s);
    }

    #[test]
    fn a_text_only_decoder_refuses_images() {
        let image = vlm_models::gemma4::ProcessedImage {
            height: 48,
            width: 48,
            pixel_values: vec![],
            num_soft_tokens: 1,
        };
        let prompt = Prompt {
            text: String::new(),
            ids: vec![3],
            images: vec![image],
        };
        let mut model = Counter::new();
        let options = GenerateOptions::exactly(1);
        let err = generate_prompt(
            &mut model,
            &prompt,
            &mut Sampler::greedy(),
            &options,
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("does not take images"),
            "{err:#}"
        );
    }

    #[test]
    fn refuses_an_empty_prompt_and_zero_tokens() {
        let mut model = Counter::new();
        let options = GenerateOptions::exactly(1);
        assert!(generate(
            &mut model,
            &[],
            &mut Sampler::greedy(),
            &options,
            |_| Ok(())
        )
        .is_err());
        let zero = GenerateOptions::exactly(0);
        assert!(generate(&mut model, &[1], &mut Sampler::greedy(), &zero, |_| Ok(())).is_err());
    }
}
