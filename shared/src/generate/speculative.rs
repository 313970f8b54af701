//! Speculative decoding (chapter 21).
//!
//! - [`generate_speculative`] (Leviathan et al. 2023, exercise 21.27): a small draft model
//!   proposes `gamma` tokens one by one, the target model scores all of them in one forward
//!   pass over its KV cache, and each draft token `x` is kept with probability
//!   `min(1, p(x) / q(x))` (`p` the target's distribution, `q` the draft's); the first rejected
//!   one is replaced by a draw from `norm(max(0, p - q))`, and when all are kept the target's
//!   pass gives one more token for free. The output has exactly the target's distribution;
//!   at temperature 0 it is the target's greedy decoding.
//! - [`generate_self_speculative`] (blockwise parallel decoding, Stern et al. 2018, as
//!   Gloeckle et al. 2024 use it; exercise 21.33): the model's extra multi-token heads draft
//!   the next tokens from one hidden state, one forward pass over the draft checks them with
//!   the next-token head, and the longest prefix the next-token head agrees with is kept. The
//!   output is exactly greedy decoding's; the speedup is the tokens kept per pass.

use anyhow::{ensure, Result};
use serde::Serialize;
use tch::{Kind, Tensor};

use super::{check_prompt, draw, Decoder, Sampler};
use crate::model::GptModel;

/// What a speculative run produced, and how often the target agreed with the draft.
#[derive(Debug)]
pub struct SpeculativeRun {
    /// The prompt and the new tokens, `(1, T)`.
    pub tokens: Tensor,
    pub stats: SpeculativeStats,
}

/// Counts of a speculative run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SpeculativeStats {
    pub new_tokens: i64,
    /// Forward passes of the target (one per round, over the draft; the prompt's not counted).
    pub target_passes: i64,
    /// Draft tokens proposed.
    pub drafted: i64,
    /// Draft tokens put to the test: the kept ones and the first rejected one of each round.
    pub tested: i64,
    /// Draft tokens kept.
    pub accepted: i64,
}

/// Sums the counts of several runs.
impl std::ops::AddAssign for SpeculativeStats {
    fn add_assign(&mut self, run: Self) {
        self.new_tokens += run.new_tokens;
        self.target_passes += run.target_passes;
        self.drafted += run.drafted;
        self.tested += run.tested;
        self.accepted += run.accepted;
    }
}

impl SpeculativeStats {
    /// The probability that a draft token is kept, estimated as kept / tested (the tokens
    /// after a rejection are never tested): the paper's alpha.
    pub fn acceptance_rate(&self) -> f64 {
        self.accepted as f64 / self.tested.max(1) as f64
    }

    /// New tokens per target pass.
    pub fn tokens_per_pass(&self) -> f64 {
        self.new_tokens as f64 / self.target_passes.max(1) as f64
    }
}

/// The speedup the paper predicts (Leviathan et al. 2023, theorem 3.8) for acceptance rate
/// `alpha`, `gamma` draft tokens per round and a draft pass costing `cost_ratio` target passes:
/// `(1 - alpha^(gamma + 1)) / ((1 - alpha) (gamma c + 1))`.
pub fn expected_speedup(alpha: f64, gamma: i64, cost_ratio: f64) -> f64 {
    let tokens_per_round =
        if alpha >= 1.0 { (gamma + 1) as f64 } else { (1.0 - alpha.powi(gamma as i32 + 1)) / (1.0 - alpha) };
    tokens_per_round / (gamma as f64 * cost_ratio + 1.0)
}

/// Speculative decoding of up to `max_new_tokens` after `prompt` `(1, T)`: `draft` proposes
/// `gamma` tokens per round, `target` verifies them in one pass. Both models see the
/// distributions `sampler` makes of their logits (temperature, top-k, top-p, ...; temperature
/// 0 makes it greedy); draws come from the global generator. The models must share a
/// tokenizer; beyond the context the decoders crop as [`super::generate`] does.
pub fn generate_speculative(
    target: &GptModel,
    draft: &GptModel,
    prompt: &Tensor,
    max_new_tokens: i64,
    gamma: i64,
    sampler: &mut Sampler,
) -> Result<SpeculativeRun> {
    check_prompt(target, prompt, max_new_tokens)?;
    draft.check_tokens(prompt)?;
    ensure!(prompt.size()[0] == 1, "speculative decoding continues one prompt at a time, got {}", prompt.size()[0]);
    draft.check_same_tokenizer(target, "the draft and the target")?;
    ensure!(
        (1..draft.cfg.context_length.min(target.cfg.context_length)).contains(&gamma),
        "gamma must be at least 1 and below both models' context lengths, got {gamma}"
    );
    let _no_grad = tch::no_grad_guard();
    let device = target.tok_emb.ws.device();
    let prompt = prompt.to_device(device);
    let prompt_len = prompt.size()[1];
    // The target holds every committed token but the last, which the next round feeds; the
    // draft may lag further behind, and catches up at the start of a round.
    let mut committed: Vec<i64> = Vec::try_from(prompt.view([-1]).to_device(tch::Device::Cpu))?;
    let (mut target_decoder, mut draft_decoder) = (Decoder::new(target, 1), Decoder::new(draft, 1));
    if prompt_len > 1 {
        let head = prompt.narrow(1, 0, prompt_len - 1);
        let _ = target_decoder.prefill(&head)?;
        let _ = draft_decoder.prefill(&head)?;
    }
    let ids = |tokens: &[i64]| Tensor::from_slice(tokens).view([1, -1]).to_device(device);
    let mut stats = SpeculativeStats::default();
    while stats.new_tokens < max_new_tokens {
        let gamma = gamma.min(max_new_tokens - stats.new_tokens);
        // The draft proposes gamma tokens, each drawn from its own distribution q.
        let mut logits = draft_decoder.extend(&ids(&committed[draft_decoder.len() as usize..]))?.select(1, -1);
        let mut proposed: Vec<i64> = Vec::with_capacity(gamma as usize);
        let mut draft_probs: Vec<Tensor> = Vec::with_capacity(gamma as usize);
        for i in 0..gamma {
            let seen = ids(&[&committed[..], &proposed[..]].concat());
            let q = sampler.probabilities(&logits, &seen);
            let token = draw(&q)?.int64_value(&[0, 0]);
            proposed.push(token);
            draft_probs.push(q);
            if i + 1 < gamma {
                logits = draft_decoder.step(&ids(&[token]))?;
            }
        }
        // One target pass over the unfed committed tokens and the proposal: the target's
        // distributions p for every proposed position and one past them.
        let unfed = &committed[target_decoder.len() as usize..];
        let target_logits = target_decoder.extend(&ids(&[unfed, &proposed[..]].concat()))?;
        let first = unfed.len() as i64 - 1; // the logits that predict proposed[0]
        stats.target_passes += 1;
        stats.drafted += gamma;
        let mut kept = 0;
        let mut next = None;
        for (i, (&token, q)) in proposed.iter().zip(&draft_probs).enumerate() {
            let seen = ids(&[&committed[..], &proposed[..i]].concat());
            let p = sampler.probabilities(&target_logits.select(1, first + i as i64), &seen);
            let (p_x, q_x) = (p.double_value(&[0, token]), q.double_value(&[0, token]));
            stats.tested += 1;
            if Tensor::rand([1], (Kind::Double, tch::Device::Cpu)).double_value(&[0]) < p_x / q_x {
                kept += 1;
                continue;
            }
            // Rejected: draw from the leftover mass norm(max(0, p - q)).
            // (Rounding can leave no mass when p and q nearly agree; then p itself.)
            let residual = (&p - q).clamp_min(0.0);
            let residual = if residual.sum(Kind::Float).double_value(&[]) > 0.0 { residual } else { p };
            next = Some(draw(&residual)?.int64_value(&[0, 0]));
            break;
        }
        stats.accepted += kept;
        let next = match next {
            Some(token) => token,
            None => {
                // Every draft token kept: the target's last distribution gives one more.
                let seen = ids(&[&committed[..], &proposed[..]].concat());
                let p = sampler.probabilities(&target_logits.select(1, first + gamma), &seen);
                draw(&p)?.int64_value(&[0, 0])
            }
        };
        committed.extend_from_slice(&proposed[..kept as usize]);
        committed.push(next);
        stats.new_tokens += kept + 1;
        let fed = committed.len() as i64 - 1;
        target_decoder.truncate(fed.min(target_decoder.len()))?;
        draft_decoder.truncate(fed.min(draft_decoder.len()))?;
    }
    committed.truncate((prompt_len + max_new_tokens) as usize);
    stats.new_tokens = stats.new_tokens.min(max_new_tokens);
    Ok(SpeculativeRun { tokens: Tensor::from_slice(&committed).view([1, -1]).to_device(device), stats })
}

/// What a self-speculative run produced and how many passes it took.
#[derive(Debug)]
pub struct Speculation {
    /// The prompt and the new tokens, `(1, T)`.
    pub tokens: Tensor,
    /// New tokens generated.
    pub new_tokens: i64,
    /// Forward passes over drafts (one per step; the prompt's pass is not counted).
    pub steps: i64,
}

impl Speculation {
    /// New tokens per forward pass: 1 for plain greedy decoding, at most the number of heads.
    pub fn tokens_per_step(&self) -> f64 {
        self.new_tokens as f64 / self.steps.max(1) as f64
    }
}

/// Greedy decoding of `max_new_tokens` after `prompt` `(1, T)`, drafting `draft_heads`
/// tokens per step with the model's first heads and keeping those the next-token head would
/// have chosen (`draft_heads` 1 is plain greedy decoding in the same loop, the baseline). The
/// prompt and the new tokens must fit the context.
pub fn generate_self_speculative(
    model: &GptModel,
    prompt: &Tensor,
    max_new_tokens: i64,
    draft_heads: i64,
) -> Result<Speculation> {
    model.check_tokens(prompt)?;
    let (batch, prompt_len) = prompt.size2()?;
    ensure!(batch == 1, "self-speculative decoding runs one sequence at a time, got {batch}");
    ensure!(max_new_tokens >= 0, "max_new_tokens must not be negative");
    let heads = model.cfg.n_future_heads;
    ensure!((1..=heads).contains(&draft_heads), "draft_heads must be between 1 and the model's {heads} heads");
    let context = model.cfg.context_length;
    ensure!(
        prompt_len + max_new_tokens <= context,
        "{prompt_len} prompt tokens + {max_new_tokens} new ones exceed the context length {context}"
    );
    let _no_grad = tch::no_grad_guard();
    let mut cache = model.new_cache(1);
    let mut last_hidden = model.hidden_states_cached(prompt, &mut cache).narrow(1, prompt_len - 1, 1);
    let mut tokens: Vec<i64> = Vec::try_from(prompt.view([-1]).to_kind(Kind::Int64))?;
    let (mut new_tokens, mut steps) = (0, 0);
    while new_tokens < max_new_tokens {
        // Head k's choice for the token k + 1 places ahead; head 0's is greedy decoding's.
        let draft_len = draft_heads.min(max_new_tokens - new_tokens);
        let draft: Vec<i64> = model
            .all_head_logits(&last_hidden)
            .iter()
            .take(draft_len as usize)
            .map(|logits| logits.argmax(-1, false).int64_value(&[0, 0]))
            .collect();
        let start = cache.len;
        let hidden = model.hidden_states_cached(&Tensor::from_slice(&draft).view([1, -1]), &mut cache);
        // checked[i]: the next-token head's choice after draft[..=i].
        let checked: Vec<i64> = Vec::try_from(model.logits(&hidden).argmax(-1, false).view([-1]))?;
        let kept = 1 + (1..draft.len()).take_while(|&i| draft[i] == checked[i - 1]).count();
        tokens.extend_from_slice(&draft[..kept]);
        let truncated = cache.truncate(start + kept as i64);
        debug_assert!(truncated, "a cache of the full context keeps every position");
        last_hidden = hidden.narrow(1, kept as i64 - 1, 1);
        new_tokens += kept as i64;
        steps += 1;
    }
    let device = prompt.device();
    Ok(Speculation { tokens: Tensor::from_slice(&tokens).view([1, -1]).to_device(device), new_tokens, steps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::device::{global_rng_lock, seed_everything};
    use crate::generate::generate_greedy_cached;
    use crate::model::GptConfig;
    use tch::{nn, Device};

    fn model(heads: i64) -> (nn::VarStore, GptModel) {
        let _rng = global_rng_lock();
        seed_everything(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = GptConfig { n_future_heads: heads, vocab_size: 16, drop_rate: 0.0, ..GptConfig::tiny() };
        let model = GptModel::new(&vs.root(), &cfg).unwrap();
        (vs, model)
    }

    #[test]
    fn gives_greedy_decodings_tokens() {
        let prompt = Tensor::from_slice(&[3i64, 1, 4]).view([1, 3]);
        for heads in [1, 2, 4] {
            let (_, model) = model(heads);
            let speculation = generate_self_speculative(&model, &prompt, 13, heads).unwrap();
            let greedy = generate_greedy_cached(&model, &prompt, 13, None).unwrap();
            assert!(speculation.tokens.equal(&greedy), "{heads} heads");
            assert_eq!(speculation.new_tokens, 13);
            assert!(speculation.steps <= 13 && speculation.steps >= 13 / heads, "{speculation:?}");
            if heads == 1 {
                assert_eq!(speculation.tokens_per_step(), 1.0);
            }
        }
    }

    #[test]
    fn drafts_the_next_token_head_agrees_with_are_all_kept() {
        // Heads of zeros score every token alike and pick token 0, so every head drafts what
        // the next-token head will choose: each step keeps both drafted tokens.
        let (_, model) = model(2);
        tch::no_grad(|| {
            for head in std::iter::once(&model.out_head).chain(&model.future_heads) {
                let _ = head.ws().shallow_clone().zero_();
            }
        });
        let prompt = Tensor::from_slice(&[3i64]).view([1, 1]);
        let error = generate_self_speculative(&model, &prompt, 16, 2).unwrap_err().to_string();
        assert!(error.contains("exceed the context length 16"), "{error}");
        assert!(generate_self_speculative(&model, &prompt, 15, 3).is_err(), "only 2 heads");
        let speculation = generate_self_speculative(&model, &prompt, 15, 2).unwrap();
        assert_eq!((speculation.steps, speculation.new_tokens), (8, 15), "{speculation:?}");
        assert_eq!(generate_self_speculative(&model, &prompt, 15, 1).unwrap().steps, 15);
        assert_eq!(Vec::<i64>::try_from(speculation.tokens.view([-1])).unwrap()[1..], [0; 15]);
    }
}

#[cfg(test)]
mod draft_model_tests {
    use super::*;
    use crate::core::device::{global_rng_lock, seed_everything};
    use crate::generate::{generate_greedy_cached, Sampling};
    use crate::model::GptConfig;
    use tch::nn;

    fn model(seed: u64, vocab_size: i64, scale: f64) -> (nn::VarStore, GptModel) {
        let cfg = GptConfig { vocab_size, context_length: 16, drop_rate: 0.0, ..GptConfig::tiny() };
        crate::generate::scaled_test_model(seed, &cfg, scale)
    }

    fn sampler(temperature: f64) -> Sampler {
        Sampler::new(&Sampling { temperature, ..Sampling::GREEDY }).unwrap()
    }

    #[test]
    fn greedy_speculative_decoding_is_the_targets_greedy_decoding() {
        let _rng = global_rng_lock();
        let (_t, target) = model(1, 16, 6.0);
        let (_d, draft) = model(2, 16, 6.0);
        let prompt = Tensor::from_slice(&[3i64, 1, 4]).view([1, 3]);
        // 3 + 30 tokens: past the context of 16, where both decoders crop.
        let greedy = generate_greedy_cached(&target, &prompt, 30, None).unwrap();
        for gamma in [1, 3, 5] {
            let run = generate_speculative(&target, &draft, &prompt, 30, gamma, &mut sampler(0.0)).unwrap();
            assert!(run.tokens.equal(&greedy), "gamma {gamma}: {:?}", run.stats);
            assert_eq!(run.stats.new_tokens, 30);
            assert!(run.stats.accepted < run.stats.drafted, "the two models disagree somewhere");
        }
    }

    #[test]
    fn a_draft_identical_to_the_target_is_always_accepted() {
        let _rng = global_rng_lock();
        let (_t, target) = model(1, 16, 3.0);
        let prompt = Tensor::from_slice(&[3i64]).view([1, 1]);
        seed_everything(9);
        let run = generate_speculative(&target, &target, &prompt, 14, 4, &mut sampler(1.0)).unwrap();
        let stats = run.stats;
        assert_eq!((stats.accepted, stats.tested, stats.drafted), (12, 12, 12), "{stats:?}");
        assert_eq!((stats.target_passes, stats.new_tokens), (3, 14), "5 + 5 + 4 tokens in 3 passes");
        assert_eq!(stats.acceptance_rate(), 1.0);
        assert_eq!(expected_speedup(1.0, 4, 0.0), 5.0);
        assert!((expected_speedup(0.5, 2, 0.1) - 1.75 / 1.2).abs() < 1e-12);
    }

    #[test]
    fn sampled_tokens_follow_the_targets_distribution() {
        // Chi-square test of the first two generated tokens (9 pairs over a vocabulary of 3)
        // against the target's exact distribution, as vLLM tests its rejection sampler.
        let _rng = global_rng_lock();
        let (_t, target) = model(1, 3, 2.0);
        let (_d, draft) = model(2, 3, 2.0);
        let prompt = [1i64];
        let joint = |m: &GptModel| -> Vec<f64> {
            let mut probs = Vec::new();
            let first = m.forward_t(&Tensor::from_slice(&prompt).view([1, 1]), false).softmax(-1, Kind::Double);
            for a in 0..3 {
                let seq = Tensor::from_slice(&[prompt[0], a]).view([1, 2]);
                let second = m.forward_t(&seq, false).softmax(-1, Kind::Double);
                for b in 0..3 {
                    probs.push(first.double_value(&[0, 0, a]) * second.double_value(&[0, 1, b]));
                }
            }
            probs
        };
        let (p, q) = (joint(&target), joint(&draft));
        let draws = 800;
        let chi_square = |counts: &[f64]| -> f64 {
            counts.iter().zip(&p).map(|(c, e)| (c - e * draws as f64).powi(2) / (e * draws as f64)).sum()
        };
        assert!(p.iter().all(|e| e * draws as f64 >= 5.0), "every cell expects 5 draws: {p:?}");
        // 0.1 % critical value of chi-square with 8 degrees of freedom.
        let critical = 26.12;
        let draft_alone: Vec<f64> = q.iter().map(|q| q * draws as f64).collect();
        assert!(chi_square(&draft_alone) > 3.0 * critical, "the draft's own distribution must be far off");
        seed_everything(3);
        let mut counts = vec![0.0; 9];
        let mut stats = SpeculativeStats::default();
        let mut sampler = sampler(1.0);
        for _ in 0..draws {
            let run =
                generate_speculative(&target, &draft, &Tensor::from_slice(&prompt).view([1, 1]), 2, 2, &mut sampler)
                    .unwrap();
            let tokens = Vec::<i64>::try_from(run.tokens.view([-1])).unwrap();
            counts[(tokens[1] * 3 + tokens[2]) as usize] += 1.0;
            stats += run.stats;
        }
        assert!(chi_square(&counts) < critical, "chi-square {} for {counts:?}", chi_square(&counts));
        let rate = stats.acceptance_rate();
        assert!(rate > 0.05 && rate < 0.95, "rejections were exercised: {rate}");
    }

    #[test]
    fn mismatched_models_and_settings_are_refused() {
        let _rng = global_rng_lock();
        let (_t, target) = model(1, 16, 1.0);
        let (_d, draft) = model(2, 12, 1.0);
        let prompt = Tensor::from_slice(&[3i64]).view([1, 1]);
        let error = generate_speculative(&target, &draft, &prompt, 4, 2, &mut sampler(0.0)).unwrap_err();
        assert!(error.to_string().contains("share a tokenizer"), "{error}");
        let error = generate_speculative(&target, &target, &prompt, 4, 0, &mut sampler(0.0)).unwrap_err();
        assert!(error.to_string().contains("gamma"), "{error}");
    }
}
