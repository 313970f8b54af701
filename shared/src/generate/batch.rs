//! Batched decoding over the key/value cache: several prompts of different lengths decoded
//! together, one forward pass per step for all of them. The prompts are left-padded to the
//! longest; the cache ([`GptModel::new_padded_cache`]) hides the padding from every query and
//! gives each sequence the positions it has alone, so greedy decoding of a row gives the
//! tokens decoding it by itself gives. At batch 1 decoding reads every weight once per token;
//! a batch of `B` reads them once for `B` tokens, which is where the speed comes from.

use anyhow::{ensure, Result};
use tch::{Kind, Tensor};

use super::{check_new_tokens, check_prompt, Sampler};
use crate::gpt::GptModel;

/// Decodes up to `max_new_tokens` tokens after each prompt with `sampler`; returns each
/// sequence's new tokens. A sequence stops before the sampler's end-of-text token; the
/// batch stops when every sequence has. Every prompt and its new tokens must fit the
/// model's context (cropping would give each row a different window).
pub fn generate_batch(
    model: &GptModel,
    prompts: &[Vec<i64>],
    max_new_tokens: i64,
    sampler: &mut Sampler,
) -> Result<Vec<Vec<i64>>> {
    ensure!(!prompts.is_empty(), "batched decoding needs at least one prompt");
    ensure!(prompts.iter().all(|p| !p.is_empty()), "every prompt needs at least one token");
    check_new_tokens(max_new_tokens)?;
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) as i64;
    ensure!(
        longest + max_new_tokens <= model.cfg.context_length,
        "batched decoding keeps every sequence inside the context: the longest prompt ({longest} tokens) plus \
         {max_new_tokens} new tokens exceed the model's {}",
        model.cfg.context_length
    );
    let device = model.tok_emb.ws.device();
    let padding: Vec<i64> = prompts.iter().map(|p| longest - p.len() as i64).collect();
    // The padding slots hold each row's first token: the model never sees them, and a
    // repetition penalty (which asks only whether a token is present) sees nothing extra.
    let rows: Vec<Tensor> = prompts
        .iter()
        .zip(&padding)
        .map(|(prompt, &pad)| {
            let filled: Vec<i64> = std::iter::repeat_n(prompt[0], pad as usize).chain(prompt.iter().copied()).collect();
            Tensor::from_slice(&filled)
        })
        .collect();
    let mut tokens = Tensor::stack(&rows, 0).to_device(device);
    check_prompt(model, &tokens, max_new_tokens)?;

    let _no_grad = tch::no_grad_guard();
    let mut cache = model.new_padded_cache(&padding)?;
    let last_logits = |hidden: Tensor| model.next_token_logits(&hidden.select(1, -1));
    let mut logits = last_logits(model.hidden_states_cached(&tokens, &mut cache));
    let mut generated = vec![Vec::new(); prompts.len()];
    let mut running = vec![true; prompts.len()];
    for step in 0..max_new_tokens {
        let next = sampler.next_token(&logits, &tokens); // (B, 1)
        let ids = Vec::<i64>::try_from(next.to_kind(Kind::Int64).view([-1]))?;
        for ((id, out), running) in ids.iter().zip(&mut generated).zip(&mut running) {
            *running &= sampler.eos_id() != Some(*id);
            if *running {
                out.push(*id);
            }
        }
        if !running.contains(&true) || step + 1 == max_new_tokens {
            break;
        }
        tokens = Tensor::cat(&[&tokens, &next], 1);
        logits = last_logits(model.hidden_states_cached(&next, &mut cache));
    }
    Ok(generated)
}
