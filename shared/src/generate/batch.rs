//! Batched decoding over the key/value cache: several prompts of different lengths decoded
//! together, one forward pass per step for all of them. The prompts are left-padded to the
//! longest; the cache ([`GptModel::new_padded_cache`]) hides the padding from every query and
//! gives each sequence the positions it has alone, so greedy decoding of a row gives the
//! tokens decoding it by itself gives. At batch 1 decoding reads every weight once per token;
//! a batch of `B` reads them once for `B` tokens, which is where the speed comes from.
//!
//! [`generate_batch`] decodes a batch to the end with one sampler; [`BatchDecoder`] is the
//! step-wise form under it, for callers that choose each row's token themselves and let
//! finished rows leave the batch (the chapter 7 server).

use anyhow::{ensure, Result};
use tch::{Kind, Tensor};

use super::{check_new_tokens, check_prompt, Sampler};
use crate::model::{GptModel, KvCache};

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
    let mut decoder = BatchDecoder::new(model, prompts, max_new_tokens)?;
    let mut generated = vec![Vec::new(); prompts.len()];
    let mut running = vec![true; prompts.len()];
    for step in 0..max_new_tokens {
        let next = sampler.next_token(decoder.logits(), decoder.tokens())?; // (B, 1)
        let ids = Vec::<i64>::try_from(next.to_kind(Kind::Int64).view([-1]))?;
        for ((id, out), running) in ids.iter().zip(&mut generated).zip(&mut running) {
            *running &= !sampler.stops_at(*id);
            if *running {
                out.push(*id);
            }
        }
        if !running.contains(&true) || step + 1 == max_new_tokens {
            break;
        }
        decoder.step(&next)?;
    }
    Ok(generated)
}

/// Step-wise batched decoding: [`BatchDecoder::new`] runs the left-padded prompts through
/// the model once; then [`BatchDecoder::logits`] holds each row's next-token logits,
/// [`BatchDecoder::step`] feeds one token per row, and [`BatchDecoder::keep_rows`] drops
/// finished sequences so later steps compute only the others.
#[derive(Debug)]
pub struct BatchDecoder<'m> {
    model: &'m GptModel,
    cache: KvCache,
    /// Every token fed so far, `(B, len)`, padding slots included (each holds its row's
    /// first token: the model never sees them, and a repetition penalty, which asks only
    /// whether a token is present, sees nothing extra).
    tokens: Tensor,
    /// The next-token logits of each row, `(B, vocab)`.
    logits: Tensor,
    /// The new tokens the cache still has room for.
    room: i64,
}

impl<'m> BatchDecoder<'m> {
    /// Processes `prompts` (each at least one token) for decoding up to `max_new_tokens`
    /// more; the longest prompt plus `max_new_tokens` must fit the model's context.
    pub fn new(model: &'m GptModel, prompts: &[Vec<i64>], max_new_tokens: i64) -> Result<Self> {
        ensure!(!prompts.is_empty(), "batched decoding needs at least one prompt");
        ensure!(prompts.iter().all(|p| !p.is_empty()), "every prompt needs at least one token");
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) as i64;
        check_room(model, longest, max_new_tokens)?;
        let device = model.tok_emb.ws.device();
        let padding: Vec<i64> = prompts.iter().map(|p| longest - p.len() as i64).collect();
        let rows: Vec<Tensor> = prompts
            .iter()
            .zip(&padding)
            .map(|(prompt, &pad)| {
                let filled: Vec<i64> =
                    std::iter::repeat_n(prompt[0], pad as usize).chain(prompt.iter().copied()).collect();
                Tensor::from_slice(&filled)
            })
            .collect();
        let tokens = Tensor::stack(&rows, 0).to_device(device);
        check_prompt(model, &tokens, max_new_tokens)?;
        let _no_grad = tch::no_grad_guard();
        let mut cache = model.new_padded_cache(&padding)?;
        let logits = Self::last_logits(model, &tokens, &mut cache);
        Ok(Self { model, cache, tokens, logits, room: max_new_tokens })
    }

    /// Prompt caching: decodes one `prompt` continuing `cache`, a one-row cache of
    /// [`GptModel::new_padded_cache`] that holds the keys and values of `cached` (as
    /// [`BatchDecoder::into_cache`] gives them back). Only the tokens after the longest
    /// prefix the two share are computed (at least the prompt's last, for its logits); the
    /// positions after that prefix are overwritten. Returns the decoder and the number of
    /// prompt tokens whose keys and values were reused.
    pub fn resume(
        model: &'m GptModel,
        mut cache: KvCache,
        cached: &[i64],
        prompt: &[i64],
        max_new_tokens: i64,
    ) -> Result<(Self, usize)> {
        ensure!(!prompt.is_empty(), "every prompt needs at least one token");
        check_room(model, prompt.len() as i64, max_new_tokens)?;
        ensure!(
            cache.layers.first().is_some_and(|layer| layer.keys.size()[0] == 1) && !cache.is_rolling(),
            "prompt caching continues a one-row cache that holds the whole context"
        );
        ensure!(
            cache.len == cached.len() as i64,
            "the cache holds {} positions, not the {} tokens",
            cache.len,
            cached.len()
        );
        let shared = shared_prefix(cached, prompt).min(prompt.len() - 1);
        assert!(cache.truncate(shared as i64), "a cache that holds the whole context keeps every position");
        let device = model.tok_emb.ws.device();
        let tokens = Tensor::from_slice(prompt).view([1, -1]).to_device(device);
        check_prompt(model, &tokens, max_new_tokens)?;
        let _no_grad = tch::no_grad_guard();
        let logits =
            Self::last_logits(model, &tokens.narrow(1, shared as i64, prompt.len() as i64 - shared as i64), &mut cache);
        Ok((Self { model, cache, tokens, logits, room: max_new_tokens }, shared))
    }

    /// The cache and the tokens it holds, of a decoder left with one row without padding
    /// (for [`BatchDecoder::resume`]); `None` for any other batch.
    pub fn into_cache(self) -> Option<(KvCache, Vec<i64>)> {
        if self.rows() != 1 || self.cache.is_padded() {
            return None;
        }
        let tokens = Vec::<i64>::try_from(self.tokens.view([-1]).to_device(tch::Device::Cpu)).ok()?;
        Some((self.cache, tokens))
    }

    fn last_logits(model: &GptModel, idx: &Tensor, cache: &mut KvCache) -> Tensor {
        model.next_token_logits(&model.hidden_states_cached(idx, cache).select(1, -1))
    }

    /// Sequences in the batch.
    pub fn rows(&self) -> i64 {
        self.tokens.size()[0]
    }

    /// The next-token logits of each row, `(B, vocab)`.
    pub fn logits(&self) -> &Tensor {
        &self.logits
    }

    /// Every token fed so far, `(B, len)`, left padding included.
    pub fn tokens(&self) -> &Tensor {
        &self.tokens
    }

    /// Feeds `next` `(B, 1)`, one token per row, and computes the following logits.
    pub fn step(&mut self, next: &Tensor) -> Result<()> {
        ensure!(self.room > 0, "the batch was set up for fewer new tokens");
        ensure!(next.size() == [self.rows(), 1], "one token per row, (B, 1), got {:?}", next.size());
        let next = next.to_kind(Kind::Int64).to_device(self.tokens.device());
        let _no_grad = tch::no_grad_guard();
        self.tokens = Tensor::cat(&[&self.tokens, &next], 1);
        self.logits = Self::last_logits(self.model, &next, &mut self.cache);
        self.room -= 1;
        Ok(())
    }

    /// Keeps the rows at `rows` (indices into the current batch, in that order).
    pub fn keep_rows(&mut self, rows: &[i64]) -> Result<()> {
        ensure!(!rows.is_empty(), "a batch keeps at least one row");
        ensure!(rows.iter().all(|r| (0..self.rows()).contains(r)), "row index out of the batch");
        let indices = Tensor::from_slice(rows).to_device(self.tokens.device());
        self.cache.select_sequences(&indices);
        self.tokens = self.tokens.index_select(0, &indices);
        self.logits = self.logits.index_select(0, &indices);
        Ok(())
    }
}

/// How many tokens `a` and `b` start with in common: what [`BatchDecoder::resume`] reuses
/// of a cache of `a` for a prompt `b`.
pub fn shared_prefix(a: &[i64], b: &[i64]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Whether `max_new_tokens` after the longest prompt, `longest` tokens, fit the context.
fn check_room(model: &GptModel, longest: i64, max_new_tokens: i64) -> Result<()> {
    check_new_tokens(max_new_tokens)?;
    ensure!(
        longest + max_new_tokens <= model.cfg.context_length,
        "batched decoding keeps every sequence inside the context: the longest prompt ({longest} tokens) \
         plus {max_new_tokens} new tokens exceed the model's {}",
        model.cfg.context_length
    );
    Ok(())
}
