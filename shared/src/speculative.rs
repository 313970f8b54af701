//! Self-speculative decoding with multi-token prediction heads (chapter 21; blockwise
//! parallel decoding, Stern et al. 2018, as Gloeckle et al. 2024 use it): the model's extra
//! heads draft the next tokens from one hidden state, one forward pass over the draft checks
//! them with the next-token head, and the longest prefix the next-token head agrees with is
//! kept. The output is exactly greedy decoding's; the speedup is the tokens kept per pass.

use anyhow::{ensure, Result};
use tch::{Kind, Tensor};

use crate::gpt::GptModel;

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
    use crate::device::{global_rng_lock, seed_everything};
    use crate::generate::generate_greedy_cached;
    use crate::gpt::GptConfig;
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
