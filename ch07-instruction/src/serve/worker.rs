//! The worker that owns a model: one thread takes the queued requests, decodes those
//! that fit together as one batch over the KV cache ([`BatchDecoder`]), chooses each row's
//! next token with that request's own settings, and sends each request its text as it
//! grows. A request whose client has gone (its event channel closed) leaves the batch at
//! the next step. The worker also serves LoRA adapters over its model ([`Variant`]): they
//! take turns on the one copy of the base weights, a batch holding requests of one of them.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use anyhow::{anyhow, ensure, Context, Result};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use shared::core::device::device_name;
use shared::core::panic_message;
use shared::core::tensors::byte_size;
use shared::generate::batch::{shared_prefix, BatchDecoder};
use shared::generate::{check_logits, Sampler, Sampling};
use shared::model::lora::LoraAdapters;
use shared::model::{GptModel, KvCache};
use shared::tokenizer::{TextStream, TokenId, Tokenizer};
use tch::{Device, Kind, Tensor};
use tokio::sync::mpsc::UnboundedSender;

use super::prompt::Prompter;
use super::text::{ResponseText, TextRules};
use crate::finetune::InstructionModel;
use crate::template::TemplateKind;

/// One choice of a request for the worker: the prompt's tokens and how to continue it.
#[derive(Debug)]
pub struct Job {
    pub prompt: Vec<i64>,
    /// At most this many new tokens; the prompt plus these fit the context.
    pub max_tokens: i64,
    pub sampling: RowSampling,
    pub text: TextRules,
    /// Which of the request's choices this is (OpenAI's `index`).
    pub choice: usize,
    /// `Some(k)`: report each generated token's log-probability with the `k` most likely
    /// alternatives ([`TokenLogprob`]).
    pub logprobs: Option<usize>,
    /// Where the text goes (shared by a request's choices); closed when the client has gone.
    pub events: UnboundedSender<Event>,
    /// Which of the worker's models decodes it: the base, or an adapter over it.
    pub variant: Variant,
}

/// One of a worker's models: its own (`0`), or its adapter `i` (`i + 1`, in the order
/// [`Worker::spawn`] was given them).
pub type Variant = usize;

/// A LoRA adapter file a worker serves over its model ([`crate::finetune::load_adapters`]),
/// prompted in `template` when given, else in the one it was trained with.
#[derive(Debug, Clone)]
pub struct AdapterSource {
    pub path: PathBuf,
    pub template: Option<TemplateKind>,
}

/// A request's decoding settings (validated before they reach the worker).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowSampling {
    /// 0 decodes greedily, as `respond` does by default.
    pub temperature: f64,
    pub top_k: Option<i64>,
    pub top_p: Option<f64>,
    /// Seeds the request's own generator, so a sampled request gives the same text whatever
    /// else is in its batch.
    pub seed: Option<u64>,
}

/// What the worker sends a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Text of `choice` that became visible (one per token that adds some), with the
    /// log-probabilities of the tokens generated since the last event when they were asked
    /// for (a token that shows no text yet is reported with the next one that does).
    Text { choice: usize, text: String, logprobs: Vec<TokenLogprob> },
    /// The end of `choice`'s response.
    Done { choice: usize, reason: FinishReason, completion_tokens: usize },
    /// Decoding failed; nothing more follows for any choice.
    Failed(String),
}

/// A generated token's log-probability under the model's next-token distribution before
/// temperature, top-k and top-p (`log_softmax` of the logits), and the most likely
/// alternatives under the same distribution, most likely first.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub id: i64,
    pub logprob: f64,
    pub top: Vec<(i64, f64)>,
}

/// Why a response ended, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// The end-of-text token or a stop sequence.
    Stop,
    /// `max_tokens`.
    Length,
}

/// Counters the worker keeps, shown by `GET /health`.
#[derive(Debug, Default)]
pub struct Stats {
    queued: AtomicUsize,
    running: AtomicUsize,
    completed: AtomicU64,
    cancelled: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
    batched_requests: AtomicU64,
    tokens: AtomicU64,
    prompt_cache_hits: AtomicU64,
    prompt_cache_misses: AtomicU64,
    prompt_tokens_reused: AtomicU64,
    prompt_cache_entries: AtomicU64,
    prompt_cache_bytes: AtomicU64,
}

/// A snapshot of [`Stats`] (of one worker, or added up over several).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct StatsSnapshot {
    /// Requests waiting for the worker.
    pub queued: usize,
    /// Requests in the batch being decoded.
    pub running: usize,
    pub completed: u64,
    /// Requests whose client went away before the end.
    pub cancelled: u64,
    pub failed: u64,
    /// Batches decoded, and the requests they held (their ratio is the mean batch size).
    pub batches: u64,
    pub batched_requests: u64,
    /// New tokens generated.
    pub tokens: u64,
    /// Requests decoded alone whose prompt shared a prefix with a cached one, and those that
    /// did not ([`PromptCache`]).
    pub prompt_cache_hits: u64,
    pub prompt_cache_misses: u64,
    /// hits / (hits + misses), 0 before the first request decoded alone.
    pub prompt_cache_hit_rate: f64,
    /// Prompt tokens whose keys and values came from the cache instead of the model.
    pub prompt_tokens_reused: u64,
    /// What the cache holds now.
    pub prompt_cache_entries: u64,
    pub prompt_cache_bytes: u64,
}

/// hits / (hits + misses), 0 before the first lookup.
pub(super) fn hit_rate(hits: u64, misses: u64) -> f64 {
    if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    }
}

impl std::iter::Sum for StatsSnapshot {
    fn sum<I: Iterator<Item = Self>>(snapshots: I) -> Self {
        let mut total = snapshots.fold(Self::default(), |total, s| Self {
            queued: total.queued + s.queued,
            running: total.running + s.running,
            completed: total.completed + s.completed,
            cancelled: total.cancelled + s.cancelled,
            failed: total.failed + s.failed,
            batches: total.batches + s.batches,
            batched_requests: total.batched_requests + s.batched_requests,
            tokens: total.tokens + s.tokens,
            prompt_cache_hits: total.prompt_cache_hits + s.prompt_cache_hits,
            prompt_cache_misses: total.prompt_cache_misses + s.prompt_cache_misses,
            prompt_cache_hit_rate: 0.0,
            prompt_tokens_reused: total.prompt_tokens_reused + s.prompt_tokens_reused,
            prompt_cache_entries: total.prompt_cache_entries + s.prompt_cache_entries,
            prompt_cache_bytes: total.prompt_cache_bytes + s.prompt_cache_bytes,
        });
        total.prompt_cache_hit_rate = hit_rate(total.prompt_cache_hits, total.prompt_cache_misses);
        total
    }
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StatsSnapshot {
            queued: self.queued.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
            completed: get(&self.completed),
            cancelled: get(&self.cancelled),
            failed: get(&self.failed),
            batches: get(&self.batches),
            batched_requests: get(&self.batched_requests),
            tokens: get(&self.tokens),
            prompt_cache_hits: get(&self.prompt_cache_hits),
            prompt_cache_misses: get(&self.prompt_cache_misses),
            prompt_cache_hit_rate: hit_rate(get(&self.prompt_cache_hits), get(&self.prompt_cache_misses)),
            prompt_tokens_reused: get(&self.prompt_tokens_reused),
            prompt_cache_entries: get(&self.prompt_cache_entries),
            prompt_cache_bytes: get(&self.prompt_cache_bytes),
        }
    }

    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// What the HTTP side needs to know of a model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub context_length: i64,
    /// The model's prompt template and tokenizer.
    pub prompter: Arc<Prompter>,
    /// Where the model came from, for the log.
    pub description: String,
    /// Where it computes (`cpu`, `cuda:0`).
    pub device: String,
    /// The bytes of its own weights: the whole model's, or an adapter's alone (its base's
    /// are shared).
    pub weight_bytes: i64,
}

/// Why a request was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    QueueFull,
    Stopped,
}

/// The HTTP side's end of the worker.
pub struct Worker {
    jobs: mpsc::Sender<Job>,
    stats: Arc<Stats>,
    max_queue: usize,
}

impl Worker {
    /// Starts the worker thread, which loads the model with `load` (so the model never
    /// leaves it) and the `adapters` over it, then decodes up to `max_batch` requests at a
    /// time, keeping the caches of up to `prompt_cache` finished requests ([`PromptCache`]).
    /// Returns once the models are loaded, with their descriptions (the model's first, then
    /// the adapters', in order: a [`Variant`] indexes them); the thread ends when the
    /// [`Worker`] is dropped.
    pub fn spawn(
        load: impl FnOnce() -> Result<InstructionModel> + Send + 'static,
        adapters: Vec<AdapterSource>,
        max_batch: usize,
        max_queue: usize,
        prompt_cache: usize,
    ) -> Result<(Self, Vec<ModelInfo>, JoinHandle<()>)> {
        ensure!(max_batch > 0 && max_queue > 0, "the batch and the queue must hold at least one request each");
        let (jobs, receiver) = mpsc::channel::<Job>();
        let (ready, loaded) = mpsc::channel::<Result<Vec<ModelInfo>>>();
        let stats = Arc::new(Stats::default());
        let worker_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new().name("model".into()).spawn(move || {
            let loaded = load().and_then(|mut model| {
                let (infos, adapters) = load_variants(&mut model, &adapters)?;
                Ok((model, infos, adapters))
            });
            let (mut model, infos, adapters) = match loaded {
                Ok(loaded) => loaded,
                Err(err) => {
                    let _ = ready.send(Err(err));
                    return;
                }
            };
            let tokenizer = Arc::clone(&infos[0].prompter.tokenizer);
            let _ = ready.send(Ok(infos));
            let mut models = Models { model: &mut model.loaded.model, adapters: &adapters, attached: 0 };
            let mut cache = PromptCache::new(prompt_cache);
            serve_jobs(&mut models, tokenizer.as_ref(), &receiver, max_batch, &mut cache, &worker_stats);
        })?;
        let infos = loaded.recv().map_err(|_| anyhow!("the model's thread ended while loading"))??;
        Ok((Self { jobs, stats, max_queue }, infos, thread))
    }

    /// Queues a request's `jobs` (its choices, one after the other, so that they are
    /// decoded in one batch when they fit), unless the queue has no room for all of them.
    pub fn submit(&self, jobs: Vec<Job>) -> Result<(), SubmitError> {
        let n = jobs.len();
        let admitted = self.stats.queued.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |queued| {
            (queued + n <= self.max_queue).then_some(queued + n)
        });
        if admitted.is_err() {
            return Err(SubmitError::QueueFull);
        }
        for (sent, job) in jobs.into_iter().enumerate() {
            if self.jobs.send(job).is_err() {
                self.stats.queued.fetch_sub(n - sent, Ordering::SeqCst);
                return Err(SubmitError::Stopped);
            }
        }
        Ok(())
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}

/// The descriptions of `model` and of each adapter over it, and the adapters (checked
/// against the model). An adapter reads with the model's tokenizer.
fn load_variants(
    model: &mut InstructionModel,
    sources: &[AdapterSource],
) -> Result<(Vec<ModelInfo>, Vec<LoraAdapters>)> {
    let prompter = Prompter::new(model)?;
    let gpt = &mut model.loaded.model;
    let weight_bytes = model.loaded.vs.variables().values().map(byte_size).sum();
    let context_length = gpt.cfg.context_length;
    let device = gpt.tok_emb.ws.device();
    let mut infos = vec![ModelInfo {
        context_length,
        prompter: Arc::new(prompter),
        description: model.loaded.description.clone(),
        device: device_name(device),
        weight_bytes,
    }];
    let mut adapters = Vec::with_capacity(sources.len());
    for source in sources {
        let (lora, trained) = crate::finetune::load_adapters(&source.path, device)?;
        lora.check(gpt).with_context(|| format!("{} does not fit {}", source.path.display(), infos[0].description))?;
        let tokenizer = Arc::clone(&infos[0].prompter.tokenizer);
        infos.push(ModelInfo {
            context_length,
            prompter: Arc::new(Prompter::with_template(source.template.unwrap_or(trained), tokenizer)?),
            description: format!(
                "LoRA adapters {} (rank {}, alpha {}) over {}",
                source.path.display(),
                lora.config.rank,
                lora.config.alpha,
                infos[0].description
            ),
            device: infos[0].device.clone(),
            weight_bytes: lora.bytes(),
        });
        adapters.push(lora);
    }
    Ok((infos, adapters))
}

/// The worker's model and the adapters that take turns on it.
struct Models<'a> {
    model: &'a mut GptModel,
    adapters: &'a [LoraAdapters],
    /// The variant the model computes now.
    attached: Variant,
}

impl Models<'_> {
    /// The model as `variant`: the base, or with that adapter attached.
    fn switch_to(&mut self, variant: Variant) -> Result<&GptModel> {
        if variant != self.attached {
            match variant {
                0 => LoraAdapters::detach(self.model),
                i => self.adapters[i - 1].attach(self.model)?,
            }
            self.attached = variant;
        }
        Ok(self.model)
    }
}

/// The model's tokenizer as the worker uses it: the ids that end a response, and the ids
/// it can write out.
struct Vocabulary<'a> {
    tokenizer: &'a dyn Tokenizer,
    stop_ids: Vec<i64>,
    /// Logits past this are never chosen (a model may pad its vocabulary, as Qwen3 does).
    size: i64,
}

/// Prompt caching across requests: the keys and values of requests decoded alone (a chat
/// page's turns, one client at a time) are kept when they end, and a later request decoded
/// alone whose prompt starts with the same tokens (the conversation's next turn: the earlier
/// prompt, the reply, the new message) computes only the tokens after the shared prefix.
/// At most `capacity` caches are kept, each as large as the model's context; the least
/// recently used goes first. Batches of several requests are decoded from scratch (their
/// rows are left-padded to a common length, which a cached row does not have).
pub struct PromptCache {
    capacity: usize,
    /// Most recently used first: the model that computed each cache, its tokens, and the cache.
    entries: VecDeque<(Variant, Vec<i64>, KvCache)>,
}

impl PromptCache {
    pub fn new(capacity: usize) -> Self {
        Self { capacity, entries: VecDeque::new() }
    }

    /// Takes out the entry of `variant` sharing the longest prefix with `prompt`, if one
    /// shares any.
    fn take(&mut self, variant: Variant, prompt: &[i64]) -> Option<(Vec<i64>, KvCache)> {
        let (best, length) = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, (model, _, _))| *model == variant)
            .map(|(i, (_, ids, _))| (i, shared_prefix(ids, prompt)))
            .max_by_key(|&(_, n)| n)?;
        let (_, tokens, cache) = (length > 0).then(|| self.entries.remove(best)).flatten()?;
        Some((tokens, cache))
    }

    /// Keeps `cache` of `tokens`, computed by `variant`, as the most recently used entry.
    fn put(&mut self, variant: Variant, tokens: Vec<i64>, cache: KvCache) {
        if self.capacity == 0 {
            return;
        }
        self.entries.push_front((variant, tokens, cache));
        self.entries.truncate(self.capacity);
    }

    fn publish(&self, stats: &Stats) {
        stats.prompt_cache_entries.store(self.entries.len() as u64, Ordering::Relaxed);
        let bytes: i64 = self.entries.iter().map(|(_, _, cache)| cache.bytes()).sum();
        stats.prompt_cache_bytes.store(bytes as u64, Ordering::Relaxed);
    }
}

/// The worker's loop: wait for a request, take what else is waiting, decode a batch, again.
fn serve_jobs(
    models: &mut Models,
    tokenizer: &dyn Tokenizer,
    jobs: &mpsc::Receiver<Job>,
    max_batch: usize,
    prompt_cache: &mut PromptCache,
    stats: &Stats,
) {
    let _no_grad = tch::no_grad_guard();
    let (vocab_size, context_length) = (models.model.cfg.vocab_size, models.model.cfg.context_length);
    let vocabulary = Vocabulary {
        tokenizer,
        stop_ids: tokenizer.stop_ids().into_iter().map(i64::from).collect(),
        size: (tokenizer.vocab_size() as i64).min(vocab_size),
    };
    let mut waiting = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match jobs.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return, // the server has stopped
            }
        }
        waiting.extend(jobs.try_iter());
        let batch = take_batch(&mut waiting, max_batch, context_length, stats);
        let Some(variant) = batch.first().map(|job| job.variant) else { continue };
        stats.running.store(batch.len(), Ordering::Relaxed);
        Stats::add(&stats.batches, 1);
        Stats::add(&stats.batched_requests, batch.len());
        let mut rows: Vec<Row> = batch.into_iter().map(|job| Row::new(job, &vocabulary)).collect();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let model = models.switch_to(variant)?;
            decode_batch(model, variant, &vocabulary, &mut rows, prompt_cache, stats)
        }));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(format!("{err:#}")),
            Err(panic) => Some(panic_message(panic.as_ref()).unwrap_or_else(|| "decoding panicked".into())),
        };
        if let Some(message) = failure {
            Stats::add(&stats.failed, rows.len());
            for row in rows {
                let _ = row.job.events.send(Event::Failed(message.clone()));
            }
        }
        stats.running.store(0, Ordering::Relaxed);
    }
}

/// The requests to decode together: the first in the queue and those after it for the same
/// model that fit with it, in order, up to `max_batch` (left padding makes every row as long
/// as the longest prompt, so the longest prompt plus the most new tokens must fit the
/// context). Requests whose client has gone are dropped.
fn take_batch(waiting: &mut VecDeque<Job>, max_batch: usize, context: i64, stats: &Stats) -> Vec<Job> {
    let mut batch: Vec<Job> = Vec::new();
    let mut left = VecDeque::new();
    let (mut longest, mut most) = (0i64, 0i64);
    for job in waiting.drain(..) {
        if job.events.is_closed() {
            stats.queued.fetch_sub(1, Ordering::SeqCst);
            Stats::add(&stats.cancelled, 1);
            continue;
        }
        let (prompt, new) = (longest.max(job.prompt.len() as i64), most.max(job.max_tokens));
        let same_model = batch.first().is_none_or(|first| first.variant == job.variant);
        if same_model && batch.len() < max_batch && prompt.saturating_add(new) <= context {
            (longest, most) = (prompt, new);
            stats.queued.fetch_sub(1, Ordering::SeqCst);
            batch.push(job);
        } else {
            left.push_back(job);
        }
    }
    *waiting = left;
    batch
}

/// Decodes `rows` together until each has finished or gone; a row leaves `rows` when it
/// does. Rows still there after an error are the ones it cut short. A request decoded alone
/// starts from, and leaves its keys and values in, the prompt cache.
fn decode_batch(
    model: &GptModel,
    variant: Variant,
    vocabulary: &Vocabulary,
    rows: &mut Vec<Row>,
    prompt_cache: &mut PromptCache,
    stats: &Stats,
) -> Result<()> {
    let prompts: Vec<Vec<i64>> = rows.iter().map(|row| row.job.prompt.clone()).collect();
    let most_new = rows.iter().map(|row| row.job.max_tokens).max().unwrap_or(0);
    let alone = prompts.len() == 1 && prompt_cache.capacity > 0;
    let cached = if alone { prompt_cache.take(variant, &prompts[0]) } else { None };
    let mut decoder = match cached {
        Some((tokens, cache)) => {
            let (decoder, reused) = BatchDecoder::resume(model, cache, &tokens, &prompts[0], most_new)?;
            Stats::add(&stats.prompt_cache_hits, 1);
            Stats::add(&stats.prompt_tokens_reused, reused);
            decoder
        }
        None => {
            if alone {
                Stats::add(&stats.prompt_cache_misses, 1);
            }
            BatchDecoder::new(model, &prompts, most_new)?
        }
    };
    let outcome = decode_rows(&mut decoder, vocabulary, rows, stats);
    if alone {
        if let Some((cache, tokens)) = decoder.into_cache() {
            prompt_cache.put(variant, tokens, cache);
        }
        prompt_cache.publish(stats);
    }
    outcome
}

/// The decoding loop of [`decode_batch`].
fn decode_rows(decoder: &mut BatchDecoder, vocabulary: &Vocabulary, rows: &mut Vec<Row>, stats: &Stats) -> Result<()> {
    loop {
        let (mut keep, mut next) = (Vec::new(), Vec::new());
        for (i, row) in rows.iter_mut().enumerate() {
            if row.job.events.is_closed() {
                Stats::add(&stats.cancelled, 1);
                continue;
            }
            let i = i as i64;
            // Only tokens the tokenizer can write out (a model may pad its vocabulary).
            let logits = decoder.logits().narrow(0, i, 1).narrow(1, 0, vocabulary.size);
            let id = row.choose(&logits, &decoder.tokens().narrow(0, i, 1))?;
            if !vocabulary.stop_ids.contains(&id) {
                row.record_logprob(&logits, id)?;
            }
            if row.accept(id, vocabulary, stats)? {
                keep.push(i);
                next.push(id);
            }
        }
        if keep.is_empty() {
            rows.clear();
            return Ok(());
        }
        if keep.len() < rows.len() {
            decoder.keep_rows(&keep)?;
            let mut index = 0;
            rows.retain(|_| {
                index += 1;
                keep.contains(&(index - 1))
            });
            stats.running.store(rows.len(), Ordering::Relaxed);
        }
        decoder.step(&Tensor::from_slice(&next).view([-1, 1]))?;
    }
}

/// One request's choice in a batch.
struct Row<'a> {
    job: Job,
    sampler: Sampler,
    rng: StdRng,
    tokens: TextStream<'a>,
    text: ResponseText,
    generated: usize,
    /// The log-probabilities of tokens not yet reported (their text is held back).
    logprobs: Vec<TokenLogprob>,
}

impl<'a> Row<'a> {
    fn new(job: Job, vocabulary: &Vocabulary<'a>) -> Self {
        let RowSampling { temperature, top_k, top_p, seed } = job.sampling;
        let sampling = Sampling { temperature, top_k, eos_id: vocabulary.stop_ids.first().copied() };
        let sampler = Sampler::with_options(&sampling, top_p, None).expect("the server validates the settings");
        let rng = StdRng::seed_from_u64(seed.unwrap_or_else(|| rand::rng().random()));
        let text = ResponseText::new(job.text.clone());
        let tokens = TextStream::new(vocabulary.tokenizer);
        Self { job, sampler, rng, tokens, text, generated: 0, logprobs: Vec::new() }
    }

    /// Records `id`'s log-probability under `logits` `(1, V)` when the request asked for them.
    fn record_logprob(&mut self, logits: &Tensor, id: i64) -> Result<()> {
        let Some(alternatives) = self.job.logprobs else { return Ok(()) };
        let logprobs = logits.view([-1]).to_kind(Kind::Float).log_softmax(-1, Kind::Float);
        let logprob = logprobs.double_value(&[id]);
        let mut top = Vec::with_capacity(alternatives);
        if alternatives > 0 {
            let (values, ids) = logprobs.topk(alternatives as i64, -1, true, true);
            let values = Vec::<f64>::try_from(values.to_kind(Kind::Double).to_device(Device::Cpu))?;
            let ids = Vec::<i64>::try_from(ids.to_device(Device::Cpu))?;
            top = ids.into_iter().zip(values).collect();
        }
        self.logprobs.push(TokenLogprob { id, logprob, top });
        Ok(())
    }

    /// The next token for `logits` `(1, V)`: the argmax at temperature 0, else a draw from
    /// the processed distribution with the request's own generator (a temperature so close
    /// to 0 that the distribution overflows is greedy decoding too, see
    /// [`Sampler::probabilities`]). Non-finite logits are an error.
    fn choose(&mut self, logits: &Tensor, tokens: &Tensor) -> Result<i64> {
        if self.job.sampling.temperature == 0.0 {
            return Ok(self.sampler.next_token(logits, tokens)?.int64_value(&[0, 0]));
        }
        check_logits(logits)?;
        let probabilities = self.sampler.probabilities(logits, tokens).to_kind(Kind::Double);
        let probabilities = Vec::<f64>::try_from(probabilities.view([-1]).to_device(Device::Cpu))?;
        let total: f64 = probabilities.iter().sum();
        ensure!(total.is_finite() && total > 0.0, "the next-token distribution has no usable mass");
        let mut left = self.rng.random::<f64>() * total;
        for (id, &p) in probabilities.iter().enumerate() {
            left -= p;
            if left < 0.0 && p > 0.0 {
                return Ok(id as i64);
            }
        }
        // Rounding left a sliver: the last token with any probability.
        Ok(probabilities.iter().rposition(|&p| p > 0.0).unwrap_or(0) as i64)
    }

    /// Takes the chosen token: sends the text it makes visible; false when the response has
    /// ended (the end-of-text token, a stop sequence or `max_tokens`). The counters are
    /// up to date before the client hears of the end.
    fn accept(&mut self, id: i64, vocabulary: &Vocabulary, stats: &Stats) -> Result<bool> {
        let reason = self.advance(id, vocabulary, stats)?;
        if let Some(reason) = reason {
            Stats::add(&stats.completed, 1);
            self.finish(reason)?;
        }
        Ok(reason.is_none())
    }

    /// Adds the token's text; why the response ends with it, if it does.
    fn advance(&mut self, id: i64, vocabulary: &Vocabulary, stats: &Stats) -> Result<Option<FinishReason>> {
        if vocabulary.stop_ids.contains(&id) {
            return Ok(Some(FinishReason::Stop));
        }
        self.generated += 1;
        Stats::add(&stats.tokens, 1);
        let piece = self.tokens.push(id as TokenId)?;
        let (new, stopped) = self.text.push(&piece);
        self.send_text(new);
        Ok(if stopped {
            Some(FinishReason::Stop)
        } else if self.generated as i64 >= self.job.max_tokens {
            Some(FinishReason::Length)
        } else {
            None
        })
    }

    fn finish(&mut self, reason: FinishReason) -> Result<()> {
        let rest = self.tokens.finish()?;
        let (new, _) = self.text.push(&rest);
        self.send_text(new);
        let tail = self.text.finish();
        self.send_text(tail);
        if !self.logprobs.is_empty() {
            self.send(String::new());
        }
        let choice = self.job.choice;
        let _ = self.job.events.send(Event::Done { choice, reason, completion_tokens: self.generated });
        Ok(())
    }

    fn send_text(&mut self, text: String) {
        if !text.is_empty() {
            self.send(text);
        }
    }

    /// Sends `text` with the log-probabilities recorded since the last event.
    fn send(&mut self, text: String) {
        let logprobs = std::mem::take(&mut self.logprobs);
        // A client that has gone is noticed before the next step.
        let _ = self.job.events.send(Event::Text { choice: self.job.choice, text, logprobs });
    }
}
