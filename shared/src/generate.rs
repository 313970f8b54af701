//! Text generation: greedy decoding by re-running the model on the cropped context
//! (section 4.7, listing 4.8, `generate_text_simple`), the same decoding with a preallocated
//! key/value cache (the book's KV-cache bonus material), and section 5.3's decoding with
//! temperature scaling, top-k filtering and an end-of-text stop (listing 5.4, `generate`).

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::gpt::GptModel;

/// The most tokens one call may generate (about 2,000 times GPT-2's context).
pub const MAX_NEW_TOKENS: i64 = 1 << 21;

fn check_prompt(model: &GptModel, idx: &Tensor, max_new_tokens: i64) -> Result<()> {
    ensure!(
        (0..=MAX_NEW_TOKENS).contains(&max_new_tokens),
        "max_new_tokens must be between 0 and {MAX_NEW_TOKENS}, got {max_new_tokens}"
    );
    model.check_tokens(idx).map_err(|err| anyhow::anyhow!("invalid prompt: {err}"))
}

/// Listing 4.8: appends `max_new_tokens` argmax tokens to `idx` `(B, T)`, feeding the model
/// at most its last `context_size` tokens each step.
pub fn generate_text_simple(model: &GptModel, idx: &Tensor, max_new_tokens: i64, context_size: i64) -> Result<Tensor> {
    // (B, vocab) logits of the last position -> (B, 1), through the softmax as the book does.
    decode(model, idx, max_new_tokens, context_size, None, |logits| logits.softmax(-1, Kind::Float).argmax(-1, true))
}

/// The decoding loop both listings share: crop to the last `context_size` tokens, take the
/// last position's logits, `choose` the next tokens, stop before a single sequence's `eos_id`.
fn decode(
    model: &GptModel,
    idx: &Tensor,
    max_new_tokens: i64,
    context_size: i64,
    eos_id: Option<i64>,
    choose: impl Fn(&Tensor) -> Tensor,
) -> Result<Tensor> {
    check_prompt(model, idx, max_new_tokens)?;
    ensure!(
        context_size > 0 && context_size <= model.cfg.context_length,
        "context_size must be in 1..={}",
        model.cfg.context_length
    );
    let _no_grad = tch::no_grad_guard();
    let mut idx = idx.shallow_clone();
    for _ in 0..max_new_tokens {
        let tokens = idx.size()[1];
        let idx_cond = idx.narrow(1, (tokens - context_size).max(0), tokens.min(context_size));
        let idx_next = choose(&model.forward_t(&idx_cond, false).select(1, -1));
        if eos_id.is_some_and(|eos| idx_next.size()[0] == 1 && idx_next.int64_value(&[0, 0]) == eos) {
            break;
        }
        idx = Tensor::cat(&[&idx, &idx_next], 1);
    }
    Ok(idx)
}

/// Greedy decoding with a key/value cache: the prompt is processed once, then each step
/// feeds only the newest token. Gives the same tokens as [`generate_text_simple`] with the
/// model's full context: when the sequence outgrows the context, the cache is refilled from
/// the last `context_length` tokens, as the uncached loop would crop them. With `eos_id` it
/// stops, as [`generate`] does, before appending that token to a single sequence.
pub fn generate_greedy_cached(
    model: &GptModel,
    idx: &Tensor,
    max_new_tokens: i64,
    eos_id: Option<i64>,
) -> Result<Tensor> {
    check_prompt(model, idx, max_new_tokens)?;
    let _no_grad = tch::no_grad_guard();
    let (batch, _) = idx.size2()?;
    let context = model.cfg.context_length;
    let mut cache = model.new_cache(batch);
    let mut tokens: Vec<Tensor> = Vec::new();
    let mut logits = model.forward_cached(idx, &mut cache).select(1, -1);
    let mut sequence = idx.shallow_clone();
    for step in 0..max_new_tokens {
        let idx_next = logits.argmax(-1, true); // (B, 1)
        if eos_id.is_some_and(|eos| batch == 1 && idx_next.int64_value(&[0, 0]) == eos) {
            break;
        }
        tokens.push(idx_next.shallow_clone());
        if step + 1 == max_new_tokens {
            break;
        }
        if cache.len < context {
            logits = model.forward_cached(&idx_next, &mut cache).select(1, -1);
        } else {
            // The cache is full: start again from the last `context` tokens.
            sequence = Tensor::cat(&[&sequence, &Tensor::cat(&tokens, 1)], 1);
            tokens.clear();
            let total = sequence.size()[1];
            cache = model.new_cache(batch);
            logits = model.forward_cached(&sequence.narrow(1, total - context, context), &mut cache).select(1, -1);
        }
    }
    Ok(if tokens.is_empty() { sequence } else { Tensor::cat(&[&sequence, &Tensor::cat(&tokens, 1)], 1) })
}

/// Section 5.3's decoding settings. `temperature` 0 means greedy (argmax); above 0 the
/// next token is drawn with `torch.multinomial` from `softmax(logits / temperature)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: f64,
    /// Keep only the `k` largest logits (ties with the k-th kept too, as the book's mask).
    pub top_k: Option<i64>,
    /// Stop before appending this token.
    pub eos_id: Option<i64>,
}

impl Sampling {
    /// Greedy decoding without an end-of-text stop: `generate_text_simple`'s behaviour.
    pub const GREEDY: Self = Self { temperature: 0.0, top_k: None, eos_id: None };

    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.temperature >= 0.0 && self.temperature.is_finite(),
            "the temperature must be 0 (greedy) or positive, got {}",
            self.temperature
        );
        if let Some(k) = self.top_k {
            ensure!(k >= 1, "top-k must be at least 1, got {k}");
        }
        Ok(())
    }

    /// Deterministic settings give the same tokens on every run (exercise 5.3): greedy
    /// decoding, or top-k 1 at any temperature (one candidate left to sample).
    pub fn is_deterministic(&self) -> bool {
        self.temperature == 0.0 || self.top_k == Some(1)
    }
}

/// Section 5.3.2: sets every logit below the `k`-th largest of its row to minus infinity.
/// `logits`: `(B, V)`.
pub fn top_k_filter(logits: &Tensor, k: i64) -> Tensor {
    let k = k.min(logits.size()[1]);
    let (top_logits, _) = logits.topk(k, -1, true, true);
    let min_val = top_logits.narrow(-1, k - 1, 1); // (B, 1): the k-th largest per row
    logits.where_self(&logits.ge_tensor(&min_val), &logits.full_like(f64::NEG_INFINITY))
}

/// Section 5.3.1: the probabilities `softmax(logits / temperature)`.
pub fn temperature_probabilities(logits: &Tensor, temperature: f64) -> Tensor {
    (logits / temperature).softmax(-1, Kind::Float)
}

/// The next token `(B, 1)` for the last-position logits `(B, V)`.
pub fn next_token(logits: &Tensor, sampling: &Sampling) -> Tensor {
    let logits = match sampling.top_k {
        Some(k) => top_k_filter(logits, k),
        None => logits.shallow_clone(),
    };
    if sampling.temperature > 0.0 {
        temperature_probabilities(&logits, sampling.temperature).multinomial(1, false)
    } else {
        logits.argmax(-1, true)
    }
}

/// Listing 5.4: appends up to `max_new_tokens` tokens chosen by `sampling` to `idx` `(B, T)`,
/// feeding the model its last `context_size` tokens; stops early (without appending it) when
/// a single sequence draws `eos_id`. Draws from the global generator when sampling: seed it
/// (`--seed`) to repeat a run.
pub fn generate(
    model: &GptModel,
    idx: &Tensor,
    max_new_tokens: i64,
    context_size: i64,
    sampling: &Sampling,
) -> Result<Tensor> {
    sampling.validate()?;
    decode(model, idx, max_new_tokens, context_size, sampling.eos_id, |logits| next_token(logits, sampling))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{global_rng_lock, seed_everything};
    use crate::gpt::GptConfig;
    use tch::{nn, Device};

    fn model(cfg: &GptConfig) -> (nn::VarStore, GptModel) {
        let _rng = global_rng_lock();
        seed_everything(123);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = GptModel::new(&vs.root(), cfg).unwrap();
        (vs, model)
    }

    #[test]
    fn cached_and_uncached_greedy_decoding_agree() {
        let cfg = GptConfig { context_length: 8, ..GptConfig::tiny() };
        let (_vs, model) = model(&cfg);
        let prompt = Tensor::from_slice(&[15496i64, 11, 314, 716, 40, 1101]).view([2, 3]);
        // 3 + 12 tokens: the sequence outgrows the context of 8, so both crop.
        let simple = generate_text_simple(&model, &prompt, 12, cfg.context_length).unwrap();
        let cached = generate_greedy_cached(&model, &prompt, 12, None).unwrap();
        assert_eq!(simple.size(), [2, 15]);
        assert!(simple.equal(&cached), "{simple:?} vs {cached:?}");
        assert!(generate_greedy_cached(&model, &prompt, 0, None).unwrap().equal(&prompt));

        // An end-of-text stop ends both loops before the same token.
        let single = prompt.narrow(0, 0, 1);
        let full = generate_text_simple(&model, &single, 12, cfg.context_length).unwrap();
        let eos = full.int64_value(&[0, 6]);
        let greedy_eos = Sampling { eos_id: Some(eos), ..Sampling::GREEDY };
        let stopped = generate(&model, &single, 12, cfg.context_length, &greedy_eos).unwrap();
        let first = (3..15).find(|&i| full.int64_value(&[0, i]) == eos).unwrap();
        assert_eq!(stopped.size(), [1, first]);
        assert!(generate_greedy_cached(&model, &single, 12, Some(eos)).unwrap().equal(&stopped));
    }

    #[test]
    fn bad_prompts_are_clear_errors() {
        let (_vs, model) = model(&GptConfig::tiny());
        let too_long = Tensor::zeros([1, 17], (Kind::Int64, Device::Cpu));
        let empty = Tensor::zeros([1, 0], (Kind::Int64, Device::Cpu));
        let outside = Tensor::from_slice(&[70000i64]).view([1, 1]);
        for (idx, needle) in [(too_long, "context length of 16"), (empty, "no tokens"), (outside, "token id 70000")] {
            for err in [
                generate_text_simple(&model, &idx, 3, 16).unwrap_err(),
                generate_greedy_cached(&model, &idx, 3, None).unwrap_err(),
            ] {
                let message = err.to_string();
                assert!(message.starts_with("invalid prompt") && message.contains(needle), "{message}");
            }
        }
    }

    #[test]
    fn top_k_keeps_the_k_largest_logits_per_row() {
        let logits = Tensor::from_slice(&[1.0f32, 4.0, 3.0, -2.0, 0.5, 0.1, 0.2, 0.3]).view([2, 4]);
        let filtered = Vec::<f32>::try_from(top_k_filter(&logits, 2).view([-1])).unwrap();
        let inf = f32::NEG_INFINITY;
        assert_eq!(filtered, [inf, 4.0, 3.0, inf, 0.5, inf, inf, 0.3]);
        // k above the vocabulary keeps everything.
        assert!(top_k_filter(&logits, 10).equal(&logits));
        // Temperature 1 is the plain softmax; low temperatures sharpen it.
        let row = logits.get(0);
        assert!(temperature_probabilities(&row, 1.0).allclose(&row.softmax(-1, Kind::Float), 1e-7, 1e-7, false));
        assert!(temperature_probabilities(&row, 0.1).double_value(&[1]) > 0.999);
    }

    #[test]
    fn invalid_sampling_settings_are_refused() {
        let err = |s: Sampling| s.validate().unwrap_err().to_string();
        assert!(err(Sampling { temperature: -0.5, ..Sampling::GREEDY }).contains("temperature must be 0"));
        assert!(err(Sampling { top_k: Some(0), ..Sampling::GREEDY }).contains("top-k must be at least 1"));
        assert!(Sampling { temperature: 0.7, top_k: Some(5), eos_id: Some(50256) }.validate().is_ok());
        assert!(Sampling { temperature: 2.0, top_k: Some(1), eos_id: None }.is_deterministic());
        assert!(!Sampling { temperature: 2.0, top_k: Some(2), eos_id: None }.is_deterministic());
    }
}
