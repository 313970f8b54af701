//! Text generation: greedy decoding by re-running the model on the cropped context
//! (section 4.7, listing 4.8, `generate_text_simple`), section 5.3's decoding with
//! temperature scaling, top-k filtering and an end-of-text stop (listing 5.4, `generate`),
//! and the same decoding over a key/value cache (the book's KV-cache bonus material) with a
//! step-wise [`Decoder`] and a chain of logits processors ([`Sampler`]: repetition penalty,
//! bias hooks, top-k, temperature, top-p), after Hugging Face's `generation/logits_process.py`.
//! Chapter 21's decoders build on the step-wise API, one module each: [`beam`] search,
//! [`speculative`] decoding (with a draft model, or with the model's own extra heads),
//! [`contrastive`] decoding, and the [`watermark`] processor and its detector.
//! [`batch`] decodes several prompts of different lengths together.

pub mod batch;
pub mod beam;
pub mod contrastive;
pub mod speculative;
pub mod watermark;

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::model::attention::AttentionMask;
use crate::model::{GptModel, KvCache};

/// The most tokens one call may generate (about 2,000 times GPT-2's context).
pub const MAX_NEW_TOKENS: i64 = 1 << 21;

fn check_prompt(model: &GptModel, idx: &Tensor, max_new_tokens: i64) -> Result<()> {
    check_new_tokens(max_new_tokens)?;
    model.check_tokens(idx).map_err(|err| anyhow::anyhow!("invalid prompt: {err}"))
}

fn check_new_tokens(max_new_tokens: i64) -> Result<()> {
    ensure!(
        (0..=MAX_NEW_TOKENS).contains(&max_new_tokens),
        "max_new_tokens must be between 0 and {MAX_NEW_TOKENS}, got {max_new_tokens}"
    );
    Ok(())
}

/// Listing 4.8: appends `max_new_tokens` argmax tokens to `idx` `(B, T)`, feeding the model
/// at most its last `context_size` tokens each step.
pub fn generate_text_simple(model: &GptModel, idx: &Tensor, max_new_tokens: i64, context_size: i64) -> Result<Tensor> {
    // (B, vocab) logits of the last position -> (B, 1), through the softmax as the book does.
    decode(model, idx, max_new_tokens, context_size, None, |logits| {
        Ok(logits.softmax(-1, Kind::Float).argmax(-1, true))
    })
}

/// The decoding loop both listings share: crop to the last `context_size` tokens, take the
/// last position's logits, `choose` the next tokens, stop before a single sequence's `eos_id`.
fn decode(
    model: &GptModel,
    idx: &Tensor,
    max_new_tokens: i64,
    context_size: i64,
    eos_id: Option<i64>,
    choose: impl Fn(&Tensor) -> Result<Tensor>,
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
        let logits = model.forward_t(&idx_cond, false).select(1, -1);
        check_logits(&logits)?;
        let idx_next = choose(&logits)?;
        if eos_id.is_some_and(|eos| idx_next.size()[0] == 1 && idx_next.int64_value(&[0, 0]) == eos) {
            break;
        }
        idx = Tensor::cat(&[&idx, &idx_next], 1);
    }
    Ok(idx)
}

/// Greedy decoding with a key/value cache: the prompt is processed once, then each step
/// feeds only the newest token. Gives the same tokens as [`generate_text_simple`] with the
/// model's full context (see [`Decoder`]). With `eos_id` it stops, as [`generate`] does,
/// before appending that token to a single sequence.
pub fn generate_greedy_cached(
    model: &GptModel,
    idx: &Tensor,
    max_new_tokens: i64,
    eos_id: Option<i64>,
) -> Result<Tensor> {
    let mut sampler = Sampler::new(&Sampling { eos_id, ..Sampling::GREEDY })?;
    generate_cached(model, idx, max_new_tokens, &mut sampler)
}

/// [`generate`] over a key/value cache with any [`Sampler`]: appends up to `max_new_tokens`
/// tokens to `idx` `(B, T)`, stopping before a single sequence's end-of-text token. The model
/// sees what [`generate`] with its full context would feed it, so greedy decoding gives the
/// same tokens.
pub fn generate_cached(model: &GptModel, idx: &Tensor, max_new_tokens: i64, sampler: &mut Sampler) -> Result<Tensor> {
    check_prompt(model, idx, max_new_tokens)?;
    let batch = idx.size()[0];
    let mut decoder = Decoder::new(model, batch);
    let mut logits = decoder.prefill(idx)?;
    let mut new_tokens: Vec<Tensor> = Vec::new();
    for step in 0..max_new_tokens {
        let idx_next = sampler.next_token(&logits, decoder.tokens())?; // (B, 1)
                                                                       // Reading the token waits for the device: only when a token can end the sequence.
        if batch == 1 && sampler.has_stops() && sampler.stops_at(idx_next.int64_value(&[0, 0])) {
            break;
        }
        new_tokens.push(idx_next.shallow_clone());
        if step + 1 < max_new_tokens {
            logits = decoder.step(&idx_next)?;
        }
    }
    new_tokens.insert(0, idx.to_device(decoder.tokens().device()));
    Ok(Tensor::cat(&new_tokens, 1))
}

/// A generated continuation, with the model's tokenizer.
#[derive(Debug, Clone, Serialize)]
pub struct Generated {
    pub text: String,
    pub ids: Vec<i64>,
    pub prompt_tokens: usize,
}

/// Generates up to `max_new_tokens` after `prompt` with the model's full context, as
/// listing 5.4 does (the model re-run on the whole context each step), with the model's
/// tokenizer.
pub fn generate_text(model: &GptModel, prompt: &str, max_new_tokens: i64, sampling: &Sampling) -> Result<Generated> {
    continue_text(model, prompt, |idx| generate(model, idx, max_new_tokens, model.cfg.context_length, sampling))
}

/// [`generate_text`] over the key/value cache with any sampler (top-p, repetition penalty,
/// ...); greedy decoding gives the same tokens.
pub fn generate_text_cached(
    model: &GptModel,
    prompt: &str,
    max_new_tokens: i64,
    sampler: &mut Sampler,
) -> Result<Generated> {
    continue_text(model, prompt, |idx| generate_cached(model, idx, max_new_tokens, sampler))
}

/// Encodes `prompt` with the model's tokenizer (its config names it), runs `decode` on its
/// ids `(1, T)` and decodes what comes back: any decoder of this module on text. The text is
/// [`crate::tokenizer::Tokenizer::decode_lossy`]'s: GPT-2's as the book decodes it, a Hugging Face model's
/// without its special tokens (the BOS its tokenizer put before the prompt).
pub fn continue_text(
    model: &GptModel,
    prompt: &str,
    decode: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Generated> {
    let tokenizer = model.cfg.tokenizer.build()?;
    let prompt_ids: Vec<i64> = tokenizer.encode(prompt)?.into_iter().map(i64::from).collect();
    ensure!(!prompt_ids.is_empty(), "the prompt is empty");
    let device = model.tok_emb.ws.device();
    let out = decode(&Tensor::from_slice(&prompt_ids).view([1, -1]).to_device(device))?;
    let ids = Vec::<i64>::try_from(out.get(0).to_device(tch::Device::Cpu))?;
    let tokens: Vec<u32> = ids.iter().map(|&id| id as u32).collect();
    Ok(Generated { text: tokenizer.decode_lossy(&tokens)?, ids, prompt_tokens: prompt_ids.len() })
}

/// Step-wise decoding over a key/value cache: [`Decoder::prefill`] a prompt, then
/// [`Decoder::step`] one token at a time (or [`Decoder::extend`] by several, to verify a
/// draft); [`Decoder::truncate`] goes back to a shorter sequence (rejected draft tokens) and
/// `clone` forks it (beam search).
///
/// Every call gives the logits the uncached model gives for the same tokens cropped to its
/// context: once the sequence outgrows the context, the cache is refilled from the last
/// `context_length` tokens each step, as the uncached loop crops them; and while a prefix-LM
/// model's sequence is inside its bidirectional prefix, the cache is refilled too, since
/// earlier prefix positions then see the new tokens.
#[derive(Debug)]
pub struct Decoder<'m> {
    model: &'m GptModel,
    cache: KvCache,
    /// Every token fed so far, `(B, len)`.
    tokens: Tensor,
    /// The index in `tokens` of the cache's position 0.
    offset: i64,
}

impl Clone for Decoder<'_> {
    fn clone(&self) -> Self {
        Self { model: self.model, cache: self.cache.deep_clone(), tokens: self.tokens.copy(), offset: self.offset }
    }
}

impl<'m> Decoder<'m> {
    /// An empty decoder for `batch` sequences.
    pub fn new(model: &'m GptModel, batch: i64) -> Self {
        let device = model.tok_emb.ws.device();
        Self {
            model,
            cache: model.new_cache(batch),
            tokens: Tensor::zeros([batch, 0], (Kind::Int64, device)),
            offset: 0,
        }
    }

    /// Tokens fed so far.
    pub fn len(&self) -> i64 {
        self.tokens.size()[1]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every token fed so far, `(B, len)`.
    pub fn tokens(&self) -> &Tensor {
        &self.tokens
    }

    /// The cache (its size, say).
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// Starts again from `prompt` `(B, T)`; returns the logits `(B, V)` of its last position.
    pub fn prefill(&mut self, prompt: &Tensor) -> Result<Tensor> {
        self.truncate(0)?;
        Ok(self.feed(prompt, true)?.select(1, -1))
    }

    /// Feeds one token per sequence, `(B, 1)`; returns the next logits `(B, V)`.
    pub fn step(&mut self, token: &Tensor) -> Result<Tensor> {
        Ok(self.feed(token, true)?.select(1, -1))
    }

    /// Feeds `idx` `(B, T)` after the tokens so far; returns the logits `(B, T, V)` at each
    /// of its positions.
    pub fn extend(&mut self, idx: &Tensor) -> Result<Tensor> {
        self.feed(idx, false)
    }

    /// [`Decoder::extend`], with the output head applied to the last position only when
    /// `last_only` (`(B, 1, V)`): the head is the largest matrix, and decoding needs no more.
    fn feed(&mut self, idx: &Tensor, last_only: bool) -> Result<Tensor> {
        self.model.check_tokens(idx)?;
        let (batch, new) = idx.size2()?;
        ensure!(batch == self.tokens.size()[0], "the decoder holds {} sequences, got {batch}", self.tokens.size()[0]);
        if new > 1 && self.len() + new - self.offset > self.model.cfg.context_length {
            // Past the context each position sees its own cropped window: one at a time.
            let logits = (0..new).map(|i| self.feed(&idx.narrow(1, i, 1), last_only)).collect::<Result<Vec<_>>>()?;
            return Ok(if last_only { logits[logits.len() - 1].shallow_clone() } else { Tensor::cat(&logits, 1) });
        }
        let _no_grad = tch::no_grad_guard();
        let idx = idx.to_device(self.tokens.device());
        self.tokens = Tensor::cat(&[&self.tokens, &idx], 1);
        let (total, context) = (self.len(), self.model.cfg.context_length);
        let inside_prefix = matches!(self.model.cfg.attention_mask,
            AttentionMask::Prefix(prefix) if self.cache.len > 0 && self.cache.len < prefix);
        let hidden = if total - self.offset <= context && !inside_prefix {
            self.model.hidden_states_cached(&idx, &mut self.cache)
        } else {
            let hidden = self.refill(total)?;
            hidden.narrow(1, hidden.size()[1] - new, new)
        };
        if last_only {
            return Ok(self.model.next_token_logits(&hidden.select(1, -1)).unsqueeze(1));
        }
        Ok(self.model.logits(&hidden))
    }

    /// Keeps the sequences at `indices` `(B',)`, in that order; an index may repeat (beam
    /// search continues its best beams this way).
    pub fn select(&mut self, indices: &Tensor) {
        let indices = indices.to_device(self.tokens.device());
        self.tokens = self.tokens.index_select(0, &indices);
        self.cache.select_sequences(&indices);
    }

    /// Forgets every token from `len` on. The cache is cut back where it still holds what
    /// the remaining tokens need, and refilled from them otherwise.
    pub fn truncate(&mut self, len: i64) -> Result<()> {
        ensure!((0..=self.len()).contains(&len), "cannot truncate {} tokens to {len}", self.len());
        let _no_grad = tch::no_grad_guard();
        self.tokens = self.tokens.narrow(1, 0, len);
        if !(self.window_start(len) == self.offset && self.cache.truncate(len - self.offset)) {
            let _ = self.refill(len)?;
        }
        Ok(())
    }

    /// Where the uncached model's input starts for the first `len` tokens: cropped to the
    /// last `context_length`.
    fn window_start(&self, len: i64) -> i64 {
        (len - self.model.cfg.context_length).max(0)
    }

    /// Rebuilds the cache from the last `context_length` of the first `len` tokens; returns
    /// their hidden states.
    fn refill(&mut self, len: i64) -> Result<Tensor> {
        let start = self.window_start(len);
        self.cache = self.model.new_cache(self.tokens.size()[0]);
        self.offset = start;
        if len == start {
            return Ok(Tensor::zeros([0], (Kind::Float, self.tokens.device())));
        }
        Ok(self.model.hidden_states_cached(&self.tokens.narrow(1, start, len - start), &mut self.cache))
    }
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
pub fn next_token(logits: &Tensor, sampling: &Sampling) -> Result<Tensor> {
    Sampler::from_settings(*sampling)
        .next_token(logits, &Tensor::zeros([logits.size()[0], 0], (Kind::Int64, logits.device())))
}

/// One link of a [`Sampler`]'s chain: turns the logits `(B, V)` of the next position, given
/// every token so far `(B, L)`, into new logits.
pub trait LogitsProcessor {
    fn process(&mut self, logits: &Tensor, tokens: &Tensor) -> Tensor;
}

/// The CTRL paper's repetition penalty (Keskar et al. 2019, as Hugging Face's
/// `RepetitionPenaltyLogitsProcessor`): the logit of every token already in the sequence is
/// divided by the penalty when positive and multiplied by it when negative.
#[derive(Debug, Clone, Copy)]
pub struct RepetitionPenalty(pub f64);

impl LogitsProcessor for RepetitionPenalty {
    fn process(&mut self, logits: &Tensor, tokens: &Tensor) -> Tensor {
        if tokens.size()[1] == 0 {
            return logits.shallow_clone();
        }
        let seen = logits.gather(1, tokens, false);
        let penalised = seen.where_self(&seen.lt(0.0), &(&seen / self.0)).where_self(&seen.ge(0.0), &(&seen * self.0));
        logits.scatter(1, tokens, &penalised)
    }
}

/// Section 5.3.2's top-k filter ([`top_k_filter`]).
#[derive(Debug, Clone, Copy)]
pub struct TopK(pub i64);

impl LogitsProcessor for TopK {
    fn process(&mut self, logits: &Tensor, _tokens: &Tensor) -> Tensor {
        top_k_filter(logits, self.0)
    }
}

/// Section 5.3.1's temperature scaling: `logits / temperature`.
#[derive(Debug, Clone, Copy)]
pub struct Temperature(pub f64);

impl LogitsProcessor for Temperature {
    fn process(&mut self, logits: &Tensor, _tokens: &Tensor) -> Tensor {
        logits / self.0
    }
}

/// Nucleus sampling (Holtzman et al. 2019, as Hugging Face's `TopPLogitsWarper`): keeps the
/// most likely tokens whose probabilities add up to at least `p`, at least one. The sort is
/// stable, so among equally likely tokens at the cutoff the later ids are kept first.
#[derive(Debug, Clone, Copy)]
pub struct TopP(pub f64);

impl LogitsProcessor for TopP {
    fn process(&mut self, logits: &Tensor, _tokens: &Tensor) -> Tensor {
        let (sorted, indices) = logits.sort_stable(true, -1, false); // ascending
        let cumulative = sorted.softmax(-1, Kind::Float).cumsum(-1, Kind::Float);
        let remove = cumulative.le(1.0 - self.0);
        let _ = remove.narrow(-1, remove.size()[1] - 1, 1).fill_(0); // keep the most likely token
        let remove = remove.scatter(1, &indices, &remove);
        logits.masked_fill(&remove, f64::NEG_INFINITY)
    }
}

/// A hook that adds `bias(tokens)` (`(B, V)` or `(V,)`) to the logits each step, e.g. a
/// watermark's green-list bonus.
pub struct LogitBias<F: FnMut(&Tensor) -> Tensor>(pub F);

impl<F: FnMut(&Tensor) -> Tensor> LogitsProcessor for LogitBias<F> {
    fn process(&mut self, logits: &Tensor, tokens: &Tensor) -> Tensor {
        logits + (self.0)(tokens)
    }
}

/// Chooses next tokens: the book's settings ([`Sampling`]) plus nucleus sampling, a
/// repetition penalty and hooks, applied in Hugging Face's order: repetition penalty, hooks,
/// top-k, temperature, top-p; then argmax (temperature 0) or a draw from the softmax
/// (`torch.multinomial`, from the global generator: seed it to repeat a run).
pub struct Sampler {
    pub sampling: Sampling,
    /// More tokens that end a sequence besides `sampling.eos_id` (an instruction model's
    /// end-of-turn token, say).
    pub more_stop_ids: Vec<i64>,
    pub top_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub hooks: Vec<Box<dyn LogitsProcessor>>,
}

impl Sampler {
    pub fn new(sampling: &Sampling) -> Result<Self> {
        sampling.validate()?;
        Ok(Self::from_settings(*sampling))
    }

    /// [`Sampler::new`] with an optional top-p and repetition penalty (the `generate` flags).
    pub fn with_options(sampling: &Sampling, top_p: Option<f64>, repetition_penalty: Option<f64>) -> Result<Self> {
        let mut sampler = Self::new(sampling)?;
        if let Some(p) = top_p {
            sampler = sampler.with_top_p(p)?;
        }
        if let Some(penalty) = repetition_penalty {
            sampler = sampler.with_repetition_penalty(penalty)?;
        }
        Ok(sampler)
    }

    /// The book's settings alone, unchecked (callers validate them).
    fn from_settings(sampling: Sampling) -> Self {
        Self { sampling, more_stop_ids: Vec::new(), top_p: None, repetition_penalty: None, hooks: Vec::new() }
    }

    /// Nucleus sampling with mass `p` in (0, 1].
    pub fn with_top_p(mut self, p: f64) -> Result<Self> {
        ensure!(p > 0.0 && p <= 1.0, "top-p must be in (0, 1], got {p}");
        self.top_p = Some(p);
        Ok(self)
    }

    /// The CTRL repetition penalty (1 changes nothing; above 1 discourages repeats).
    pub fn with_repetition_penalty(mut self, penalty: f64) -> Result<Self> {
        ensure!(penalty > 0.0 && penalty.is_finite(), "the repetition penalty must be positive, got {penalty}");
        self.repetition_penalty = Some(penalty);
        Ok(self)
    }

    /// Adds a processor that runs after the repetition penalty and before the filters.
    pub fn with_hook(mut self, hook: Box<dyn LogitsProcessor>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Whether some token ends a sequence.
    pub fn has_stops(&self) -> bool {
        self.sampling.eos_id.is_some() || !self.more_stop_ids.is_empty()
    }

    /// Whether `id` ends a sequence: the end-of-text token or one of `more_stop_ids`.
    pub fn stops_at(&self, id: i64) -> bool {
        self.sampling.eos_id == Some(id) || self.more_stop_ids.contains(&id)
    }

    /// The logits `(B, V)` after the whole chain, before the final choice.
    pub fn process(&mut self, logits: &Tensor, tokens: &Tensor) -> Tensor {
        let filtered = self.filter(logits, tokens);
        self.temper(&filtered, tokens)
    }

    /// The chain up to temperature: repetition penalty, hooks, top-k.
    fn filter(&mut self, logits: &Tensor, tokens: &Tensor) -> Tensor {
        let mut logits = logits.shallow_clone();
        if let Some(penalty) = self.repetition_penalty {
            logits = RepetitionPenalty(penalty).process(&logits, tokens);
        }
        for hook in &mut self.hooks {
            logits = hook.process(&logits, tokens);
        }
        if let Some(k) = self.sampling.top_k {
            logits = TopK(k).process(&logits, tokens);
        }
        logits
    }

    /// The rest of the chain: temperature, then top-p (neither at temperature 0).
    fn temper(&self, filtered: &Tensor, tokens: &Tensor) -> Tensor {
        if self.sampling.temperature == 0.0 {
            return filtered.shallow_clone();
        }
        let logits = Temperature(self.sampling.temperature).process(filtered, tokens);
        match self.top_p {
            Some(p) => TopP(p).process(&logits, tokens),
            None => logits,
        }
    }

    /// The distribution `(B, V)` the next token is drawn from: the softmax of the processed
    /// logits, or, at temperature 0, all the mass on the argmax (what greedy decoding draws).
    /// A row whose logits overflow at a tiny temperature gets the argmax too, the limit
    /// of the distribution as the temperature goes to 0.
    pub fn probabilities(&mut self, logits: &Tensor, tokens: &Tensor) -> Tensor {
        let filtered = self.filter(logits, tokens);
        if self.sampling.temperature == 0.0 {
            return one_hot_argmax(&filtered);
        }
        let probabilities = self.temper(&filtered, tokens).softmax(-1, Kind::Float);
        let overflowed = overflowed_rows(&probabilities);
        if overflowed.any().int64_value(&[]) == 0 {
            return probabilities;
        }
        probabilities.where_self(&overflowed.logical_not(), &one_hot_argmax(&filtered))
    }

    /// The next token `(B, 1)` for the last-position logits `(B, V)`, given the tokens so
    /// far: the argmax at temperature 0, else a draw (`torch.multinomial`) from
    /// [`Sampler::probabilities`] (so the argmax, too, where a temperature near 0 overflows).
    /// Logits that are NaN or infinite (a model whose weights are) are an error.
    pub fn next_token(&mut self, logits: &Tensor, tokens: &Tensor) -> Result<Tensor> {
        check_logits(logits)?;
        if self.sampling.temperature == 0.0 {
            return Ok(self.filter(logits, tokens).argmax(-1, true));
        }
        draw(&self.probabilities(logits, tokens))
    }
}

/// All the mass on each row's largest logit, `(B, V)`.
fn one_hot_argmax(logits: &Tensor) -> Tensor {
    logits.zeros_like().to_kind(Kind::Float).scatter_value(1, &logits.argmax(-1, true), 1.0)
}

/// The rows `(B, 1)` of a softmax that hold NaN: their scaled logits overflowed (to `+inf`,
/// or all to `-inf`), which only a temperature near 0 does to finite logits.
fn overflowed_rows(probabilities: &Tensor) -> Tensor {
    probabilities.isnan().any_dim(-1, true)
}

/// Checks that next-token logits `(B, V)` are usable: NaN or `+inf` (minus infinity is a
/// filtered token) come from a model whose weights or activations are not finite. One read
/// from the device when they are (each read waits for the device to finish its queue).
pub fn check_logits(logits: &Tensor) -> Result<()> {
    if logits.isnan().logical_or(&logits.isposinf()).any().int64_value(&[]) == 0 {
        return Ok(());
    }
    let nan = logits.isnan().any().int64_value(&[]) != 0;
    bail!(
        "the model's next-token logits hold {}: its weights or activations are not finite (a checkpoint \
         from a training run that diverged?)",
        if nan { "NaN" } else { "infinity" }
    )
}

/// Draws one token per row `(B, 1)` from `probabilities` `(B, V)` with `torch.multinomial`
/// (the global generator), or says why a row is not a distribution (NaN, infinite or
/// negative entries, no mass) instead of failing inside LibTorch.
pub fn draw(probabilities: &Tensor) -> Result<Tensor> {
    // One read from the device: 0 for a usable distribution, else 1 or 2 for what is wrong.
    let unusable = probabilities.isfinite().logical_not().logical_or(&probabilities.lt(0.0)).any();
    let no_mass = probabilities.sum_dim_intlist(-1, false, Kind::Double).min().le(0.0);
    let problem = unusable.to_kind(Kind::Int64) + no_mass.to_kind(Kind::Int64) * 2;
    match problem.int64_value(&[]) {
        0 => Ok(probabilities.f_multinomial(1, false)?),
        1 | 3 => bail!("cannot sample: the next-token probabilities hold NaN, infinite or negative values"),
        _ => bail!("cannot sample: every token of a row has probability 0"),
    }
}

/// How a command decodes over the KV cache: greedy decoding or sampling through a
/// [`Sampler`], or [`beam`] search.
pub enum Decoding {
    Sample(Sampler),
    Beam(beam::BeamSearch),
}

impl Decoding {
    /// Stops at the tokens that end a generation in `model`'s tokenizer
    /// ([`crate::tokenizer::Tokenizer::stop_ids`]) instead of the end-of-text token it was
    /// built with: at any of them when sampling, at the first in beam search, whose beams end
    /// at one token. A tokenizer without stop tokens changes nothing.
    pub fn stop_at_model_stops(&mut self, model: &GptModel) -> Result<()> {
        let stop_ids: Vec<i64> = model.cfg.tokenizer.build()?.stop_ids().into_iter().map(i64::from).collect();
        let Some((&first, rest)) = stop_ids.split_first() else { return Ok(()) };
        match self {
            Self::Sample(sampler) => {
                sampler.sampling.eos_id = Some(first);
                sampler.more_stop_ids = rest.to_vec();
            }
            Self::Beam(settings) => settings.eos_id = Some(first),
        }
        Ok(())
    }

    /// Continues `idx` `(1, T)` by up to `max_new_tokens` tokens, stopping before the
    /// end-of-text token the sampler or the beam search names.
    pub fn generate(&mut self, model: &GptModel, idx: &Tensor, max_new_tokens: i64) -> Result<Tensor> {
        match self {
            Self::Sample(sampler) => generate_cached(model, idx, max_new_tokens, sampler),
            Self::Beam(settings) => {
                let beam = beam::beam_search(model, idx, max_new_tokens, settings)?;
                let new = Tensor::from_slice(&beam.new_tokens).view([1, -1]).to_device(idx.device());
                Ok(Tensor::cat(&[idx, &new], 1))
            }
        }
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

/// A model of `cfg` for the decoders' tests, seeded with `seed`, its weights multiplied by
/// `scale`: larger weights than the initialisation's make peaked, prompt-dependent
/// distributions that differ from one seed to another.
#[cfg(test)]
pub(crate) fn scaled_test_model(seed: u64, cfg: &crate::model::GptConfig, scale: f64) -> (tch::nn::VarStore, GptModel) {
    crate::core::device::seed_everything(seed);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let model = GptModel::new(&vs.root(), cfg).unwrap();
    tch::no_grad(|| {
        for mut var in vs.trainable_variables() {
            let _ = var.g_mul_scalar_(scale);
        }
    });
    (vs, model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::device::{global_rng_lock, seed_everything};
    use crate::model::GptConfig;
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
    fn logits_processors_follow_their_definitions() {
        let row = |values: &[f32]| Tensor::from_slice(values).view([1, -1]);
        let list = |t: Tensor| Vec::<f32>::try_from(t.view([-1])).unwrap();
        // CTRL: a positive logit is divided by the penalty, a negative one multiplied, once
        // however often the token occurred; unseen tokens keep theirs.
        let tokens = Tensor::from_slice(&[0i64, 1, 1]).view([1, 3]);
        let penalised = RepetitionPenalty(2.0).process(&row(&[2.0, -2.0, 1.0, 0.5]), &tokens);
        assert_eq!(list(penalised), [1.0, -4.0, 1.0, 0.5]);
        // Top-p keeps the most likely tokens until their mass reaches p.
        let logits = row(&[0.3f32.ln(), 0.05f32.ln(), 0.5f32.ln(), 0.15f32.ln()]);
        let kept = |p: f64| list(TopP(p).process(&logits, &tokens)).iter().map(|x| x.is_finite()).collect::<Vec<_>>();
        assert_eq!(kept(0.6), [true, false, true, false]);
        assert_eq!(kept(0.9), [true, false, true, true]);
        assert_eq!(kept(1.0), [true; 4]);
        assert_eq!(kept(0.01), [false, false, true, false], "at least the most likely token");
        // A bias hook steers greedy decoding; temperature 0 ignores top-p.
        let bias = LogitBias(|_: &Tensor| Tensor::from_slice(&[0.0f32, 10.0, 0.0, 0.0]));
        let mut sampler = Sampler::new(&Sampling::GREEDY).unwrap().with_top_p(0.5).unwrap().with_hook(Box::new(bias));
        assert_eq!(sampler.next_token(&logits, &tokens).unwrap().int64_value(&[0, 0]), 1);
        assert!(Sampler::new(&Sampling::GREEDY).unwrap().with_top_p(0.0).is_err());
        assert!(Sampler::new(&Sampling::GREEDY).unwrap().with_repetition_penalty(-1.0).is_err());
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
