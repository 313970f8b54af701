//! The chapter's mini-GPT: `shared`'s GPT model at small sizes, trained as nanoGPT's
//! "baby Shakespeare" CPU run trains it (4 layers, 4 heads, width 128, block 64, batch 12,
//! no dropout, 2,000 iterations, learning rate 1e-3 with 100 warmup steps and a cosine decay
//! to 1e-4, AdamW with beta2 0.99 decaying matrices only, gradient clipping at 1.0, tied embeddings, a 90/10
//! split, GPT-2's initialisation) on tiny Shakespeare, character by character.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use shared::app::cli::RunContext;
use shared::app::model_source::{LoadedModel, ModelSource};
use shared::app::recipe::Reporter;
use shared::core::device::{device_name, seed_everything};
use shared::data::TINY_SHAKESPEARE;
use shared::model::attention::AttentionMask;
use shared::model::positions::PosEncoding;
use shared::model::{GptConfig, GptModel, NormPlacement};
use shared::nn::Activation;
use shared::tokenizer::{word::SimpleTokenizerV2, CharTokenizer, Gpt2Tokenizer, Tokenizer, TokenizerSpec};
use shared::train::{
    calc_loss_loader, train_model, AdamW, AdamWConfig, Checkpoint, CheckpointMeta, DistillationLoss, MultiTokenLoss,
    StepSchedule, TrainHistory, TrainHooks, TrainProgress, TrainSettings, TrainingLoss, WarmupCosine,
};
use tch::nn::VarStore;
use tch::Device;

use crate::batches::RandomWindows;

/// Which tokenizer a new model gets (`--tokenizer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerChoice {
    /// One id per character of the training text.
    #[default]
    Char,
    /// GPT-2's byte-pair encoding.
    Gpt2,
    /// Chapter 2's word-level tokenizer built from the training text.
    Word,
}

impl TokenizerChoice {
    /// The tokenizer, built from `text` where it needs a vocabulary.
    pub fn build(self, text: &str) -> Box<dyn Tokenizer> {
        match self {
            Self::Char => Box::new(CharTokenizer::from_text(text)),
            Self::Gpt2 => Box::new(Gpt2Tokenizer::new()),
            Self::Word => Box::new(SimpleTokenizerV2::from_text(text)),
        }
    }
}

/// Knowledge distillation settings: the student learns from `(1 - weight)` cross-entropy and
/// `weight * T^2 * KL(teacher_T || student_T)` ([`DistillationLoss`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distill {
    pub teacher: Teacher,
    pub temperature: f64,
    pub weight: f64,
}

/// Where a teacher comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Teacher {
    /// A checkpoint of ours (NAME.safetensors or NAME.json).
    Checkpoint(PathBuf),
    /// OpenAI's GPT-2 (a folder, a hub id or gpt2-small|medium|large|xl).
    Weights(String),
}

impl Teacher {
    pub fn source(&self) -> ModelSource {
        match self {
            Self::Checkpoint(path) => ModelSource::checkpoint(path),
            Self::Weights(spec) => ModelSource::Weights(spec.clone()),
        }
    }

    /// The teacher on the run's device.
    pub fn load(&self, context: &RunContext) -> Result<LoadedModel> {
        self.source().load(context.device, context.seed).context("loading the teacher")
    }
}

/// A run's settings; the defaults are nanoGPT's CPU run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MiniGptOptions {
    pub n_layers: i64,
    pub n_heads: i64,
    /// Key/value heads (grouped-query attention); `None`: one per query head.
    pub n_kv_heads: Option<i64>,
    pub emb_dim: i64,
    /// Context length: the window each sample trains on.
    pub block_size: i64,
    pub batch_size: i64,
    pub drop_rate: f64,
    /// The output head computes with the token embedding's matrix (nanoGPT ties it; our
    /// default does not, see the README's measurements).
    pub tie_embeddings: bool,
    /// Biases outside the query/key/value projections (see `GptConfig::bias`).
    pub bias: bool,
    pub activation: Activation,
    pub norm_placement: NormPlacement,
    pub attention_mask: AttentionMask,
    pub pos_encoding: PosEncoding,
    /// With a sliding window: the first positions every query still sees.
    pub sink_tokens: i64,
    /// Output heads; head `k` predicts the token `k` places ahead, all trained together
    /// (multi-token prediction). Evaluation reads the first.
    pub n_future_heads: i64,
    /// The first this many tokens of each window are a prompt: the loss counts only the
    /// predictions of the tokens after it (0: every token).
    pub prompt_tokens: i64,
    /// Every window starts at a line break, as documents that all begin with one start
    /// token (the setting in which attention sinks form; exercise 21.29).
    pub line_starts: bool,
    /// Train with LibTorch's fused layer norm, GELU and attention kernels
    /// ([`GptModel::use_fused_kernels`]) rather than the book's step-by-step code.
    pub fused_kernels: bool,
    /// Optimizer steps in total (counting the resumed run's).
    pub iters: usize,
    /// Evaluate (and print a sample) every this many steps.
    pub eval_interval: usize,
    /// Batches per evaluation, of each split.
    pub eval_iters: usize,
    /// Batches of the final validation loss (200 for the walk-through).
    pub final_eval_batches: usize,
    pub peak_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: i64,
    /// The step at which the cosine reaches `min_lr` (nanoGPT's `lr_decay_iters`); `None`:
    /// the last step. A run to be resumed to more steps needs the final count here.
    pub decay_steps: Option<usize>,
    pub tokenizer: TokenizerChoice,
    /// Another model's tokenizer (its vocabulary included) instead of `tokenizer`: for a draft
    /// or a student that must share its target's or teacher's ids.
    pub tokenizer_spec: Option<TokenizerSpec>,
    /// Train against a teacher's distributions as well (exercise 21.35).
    pub distill: Option<Distill>,
    /// Share of the text (in tokens) used for training.
    pub train_ratio: f64,
    /// Print a 50-token greedy continuation of `prompt` after each evaluation round.
    pub samples: bool,
    pub prompt: String,
    pub resume: Option<PathBuf>,
    pub verbose: bool,
}

impl Default for MiniGptOptions {
    fn default() -> Self {
        Self {
            n_layers: 4,
            n_heads: 4,
            n_kv_heads: None,
            emb_dim: 128,
            block_size: 64,
            batch_size: 12,
            drop_rate: 0.0,
            tie_embeddings: false,
            bias: true,
            activation: Activation::GeluTanh,
            norm_placement: NormPlacement::Pre,
            attention_mask: AttentionMask::Causal,
            pos_encoding: PosEncoding::Learned,
            sink_tokens: 0,
            n_future_heads: 1,
            prompt_tokens: 0,
            line_starts: false,
            fused_kernels: true,
            iters: 2000,
            eval_interval: 250,
            eval_iters: 20,
            final_eval_batches: 200,
            peak_lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 100,
            decay_steps: None,
            tokenizer: TokenizerChoice::Char,
            tokenizer_spec: None,
            distill: None,
            train_ratio: 0.9,
            samples: true,
            prompt: "ROMEO:".to_string(),
            resume: None,
            verbose: true,
        }
    }
}

impl MiniGptOptions {
    /// The exercises' small mini-GPT (2 layers of width 64, block 32), for `steps` steps, quiet.
    pub fn small(steps: usize) -> Self {
        Self { n_layers: 2, emb_dim: 64, block_size: 32, samples: false, verbose: false, ..Self::default() }
            .with_steps(steps)
    }

    /// `steps` optimizer steps in one round (one evaluation at the end), a tenth of them warmup.
    pub fn with_steps(self, steps: usize) -> Self {
        Self {
            iters: steps,
            eval_interval: steps,
            warmup_steps: (steps / 10) as i64,
            // A final evaluation no longer than the training (200 batches from 200 steps on).
            final_eval_batches: steps.clamp(10, 200),
            ..self
        }
    }

    /// Switches `model` to the fused kernels when the run trains with them.
    pub fn choose_kernels(&self, model: &mut GptModel) {
        if self.fused_kernels {
            model.use_fused_kernels();
        }
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.iters > 0 && self.eval_interval > 0 && self.eval_iters > 0 && self.final_eval_batches > 0,
            "steps and evaluation batches must be positive"
        );
        ensure!(
            self.iters % self.eval_interval == 0,
            "--iters ({}) must be a multiple of --eval-interval ({})",
            self.iters,
            self.eval_interval
        );
        ensure!((0.0..1.0).contains(&self.train_ratio) && self.train_ratio > 0.0, "--train-ratio must be in (0, 1)");
        ensure!(
            (0..self.block_size).contains(&self.prompt_tokens),
            "the prompt ({} tokens) must leave part of the {}-token window to predict",
            self.prompt_tokens,
            self.block_size
        );
        self.schedule().validate()?;
        Ok(())
    }

    /// The model for a tokenizer of `vocab_size` ids: no QKV bias, as nanoGPT.
    pub fn config(&self, tokenizer: &dyn Tokenizer) -> GptConfig {
        GptConfig {
            vocab_size: tokenizer.vocab_size() as i64,
            context_length: self.block_size,
            emb_dim: self.emb_dim,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            n_layers: self.n_layers,
            drop_rate: self.drop_rate,
            qkv_bias: false,
            tie_embeddings: self.tie_embeddings,
            bias: self.bias,
            activation: self.activation,
            norm_placement: self.norm_placement,
            attention_mask: self.attention_mask,
            pos_encoding: self.pos_encoding,
            sink_tokens: self.sink_tokens,
            n_future_heads: self.n_future_heads,
            tokenizer: tokenizer.spec(),
            ..GptConfig::gpt2_small()
        }
    }

    /// nanoGPT's schedule: warmup to the peak, cosine down to the minimum at the last step.
    pub fn schedule(&self) -> WarmupCosine {
        WarmupCosine {
            initial_lr: self.peak_lr / (self.warmup_steps + 1) as f64,
            peak_lr: self.peak_lr,
            min_lr: self.min_lr,
            warmup_steps: self.warmup_steps,
            total_steps: self.decay_steps.unwrap_or(self.iters) as i64,
        }
    }

    /// nanoGPT's AdamW: weight decay 0.1 (of matrices only, see [`AdamW::decay_matrices_only`]),
    /// beta2 0.99.
    pub fn optimizer(&self) -> AdamWConfig {
        AdamWConfig { lr: self.peak_lr, beta2: 0.99, ..AdamWConfig::default() }
    }
}

/// What a run reports (`metrics.json`).
#[derive(Debug, Clone, Serialize)]
pub struct MiniGptReport {
    pub options: MiniGptOptions,
    pub config: GptConfig,
    pub parameters: i64,
    pub device: String,
    pub train_tokens: usize,
    pub val_tokens: usize,
    pub history: TrainHistory,
    /// The validation loss after training, over `final_eval_batches` random batches.
    pub final_val_loss: f64,
    pub checkpoint: PathBuf,
    pub metrics: PathBuf,
    pub plot: PathBuf,
}

/// Trains (or resumes) the mini-GPT on `text`, printing the losses and a sample at every
/// evaluation, and writes `minigpt.safetensors` (+ `.json`, the config with its vocabulary),
/// `metrics.json` and `losses.png` to the run's output folder.
pub fn run(context: &RunContext, text: &str, options: &MiniGptOptions) -> Result<MiniGptReport> {
    options.validate()?;
    context.create_out_dir()?;
    let reporter = Reporter::new(&context.out_dir, options.verbose);
    let resumed = options.resume.as_deref().map(|path| Checkpoint::at(path).read_meta()).transpose()?;
    let (tokenizer, config) = tokenizer_and_config(options, resumed.as_ref(), text)?;
    let teacher = options.distill.as_ref().map(|distill| distill.teacher.load(context)).transpose()?;
    let ids = tokenizer.encode(text).context("tokenizing the training text")?;
    let (train_ids, val_ids) = split(&ids, options.train_ratio);
    let train = windows(options, &config, tokenizer.as_ref(), train_ids, options.eval_interval)
        .context("the training split")?;
    let val =
        windows(options, &config, tokenizer.as_ref(), val_ids, options.eval_iters).context("the validation split")?;

    let (vs, model, mut optimizer) = new_model(options, &config, context)?;
    let rounds = options.iters / options.eval_interval;
    let mut progress = TrainProgress::default();
    if let Some(path) = &options.resume {
        progress = Checkpoint::at(path).resume(&vs, &model, &mut optimizer)?;
        ensure!(
            progress.epoch < rounds,
            "{} already ran {} of the {} steps asked for: raise --iters to train further",
            path.display(),
            (progress.global_step + 1),
            options.iters
        );
    }
    let parameters = vs.variables().values().map(|t| t.numel() as i64).sum();
    reporter.say(summary(&config, parameters, (train_ids.len(), val_ids.len()), context.device));

    let checkpoint = Checkpoint::at(&reporter.path("minigpt"));
    let seed = context.seed;
    let settings = TrainSettings {
        num_epochs: rounds - progress.epoch,
        eval_freq: options.eval_interval,
        eval_iter: options.eval_iters,
        start_context: options.samples.then(|| options.prompt.clone()),
        epoch_seed: Some(seed),
        verbose: options.verbose,
        mode: shared::train::TrainMode::Book,
        schedule: StepSchedule { lr: Some(options.schedule()), max_grad_norm: Some(1.0) },
    };
    let mut save = |progress: &TrainProgress, optimizer: &AdamW| {
        let meta = CheckpointMeta::new(&config, progress, optimizer.config, seed, Some(seed));
        checkpoint.save(&vs, Some(optimizer), &meta)
    };
    let distillation = distillation(options, teacher.as_ref(), &model)?;
    let hooks = TrainHooks {
        loss: distillation.as_ref().map_or(&MultiTokenLoss as &dyn TrainingLoss, |loss| loss),
        tokenizer: tokenizer.as_ref(),
        ..TrainHooks::book(&mut save)
    };
    let history = train_model(&model, &mut optimizer, &train, &val, &settings, &mut progress, context.device, hooks)?;
    let final_val_loss = calc_loss_loader(&model, &val.with_batches(options.final_eval_batches), None, context.device);
    reporter.say(format!(
        "Validation loss after {} steps: {final_val_loss:.3} ({:.0} s, {:.0} tokens/s)",
        progress.global_step + 1,
        history.train_seconds,
        history.tokens_per_second
    ));

    let report = MiniGptReport {
        options: options.clone(),
        config: config.clone(),
        parameters,
        device: device_name(context.device),
        train_tokens: train_ids.len(),
        val_tokens: val_ids.len(),
        history,
        final_val_loss,
        checkpoint: checkpoint.model.clone(),
        metrics: reporter.path("metrics.json"),
        plot: reporter.path("losses.png"),
    };
    reporter.finish(&report, &report.checkpoint, (&report.plot, rounds, &report.history))?;
    Ok(report)
}

/// Random windows of `ids` for `batches` batches (nanoGPT's `get_batch`), with the run's
/// prompt length and, when asked, starting at line breaks.
fn windows(
    options: &MiniGptOptions,
    config: &GptConfig,
    tokenizer: &dyn Tokenizer,
    ids: &[u32],
    batches: usize,
) -> Result<RandomWindows> {
    let windows =
        RandomWindows::new(ids, config.context_length, options.batch_size, batches)?.with_prompt(options.prompt_tokens);
    if options.line_starts {
        windows.with_starts(&line_starts(ids, tokenizer)?)
    } else {
        Ok(windows)
    }
}

/// A new seeded model with GPT-2's initialisation, and nanoGPT's AdamW over it.
fn new_model(
    options: &MiniGptOptions,
    config: &GptConfig,
    context: &RunContext,
) -> Result<(VarStore, GptModel, AdamW)> {
    seed_everything(context.seed);
    let vs = VarStore::new(context.device);
    let mut model = GptModel::new(&vs.root(), config)?;
    options.choose_kernels(&mut model);
    shared::core::init::gpt2_init(&vs, config.n_layers);
    let optimizer = AdamW::new(&vs, options.optimizer())?.decay_matrices_only();
    Ok((vs, model, optimizer))
}

/// The run's first line: the model, its tokenizer, the data and the device.
fn summary(config: &GptConfig, parameters: i64, (train_tokens, val_tokens): (usize, usize), device: Device) -> String {
    format!(
        "mini-GPT: {parameters} parameters ({} layers, {} heads, width {}, block {}), {} tokenizer of {} ids, \
         {train_tokens} training and {val_tokens} validation tokens, on {}",
        config.n_layers,
        config.n_heads,
        config.emb_dim,
        config.context_length,
        config.tokenizer.name(),
        config.vocab_size,
        device_name(device)
    )
}

/// The tokenizer and the model: a resumed checkpoint's, or new ones from the options (the
/// tokenizer built from `text` where it needs a vocabulary).
fn tokenizer_and_config(
    options: &MiniGptOptions,
    resumed: Option<&CheckpointMeta>,
    text: &str,
) -> Result<(Box<dyn Tokenizer>, GptConfig)> {
    if let Some(meta) = resumed {
        return Ok((meta.config.tokenizer.build()?, meta.config.clone()));
    }
    let tokenizer = match &options.tokenizer_spec {
        Some(spec) => spec.build()?,
        None => options.tokenizer.build(text),
    };
    let config = options.config(tokenizer.as_ref());
    Ok((tokenizer, config))
}

/// Exercise 21.35's loss, when the run learns from a teacher.
fn distillation<'t>(
    options: &MiniGptOptions,
    teacher: Option<&'t LoadedModel>,
    student: &GptModel,
) -> Result<Option<DistillationLoss<'t>>> {
    let (Some(distill), Some(teacher)) = (&options.distill, teacher) else {
        return Ok(None);
    };
    let loss = DistillationLoss { teacher: &teacher.model, temperature: distill.temperature, weight: distill.weight };
    loss.validate(student)?;
    Ok(Some(loss))
}

/// A continuation of `prompt` from a saved mini-GPT (any checkpoint of ours), decoded with
/// the model's own tokenizer over the KV cache with `decoding`.
pub fn generate(
    checkpoint: &Path,
    prompt: &str,
    max_new_tokens: i64,
    decoding: &mut shared::generate::Decoding,
    int8: bool,
    context: &RunContext,
) -> Result<String> {
    let mut loaded = ModelSource::checkpoint(checkpoint).load(context.device, context.seed)?;
    if int8 {
        loaded.model.use_int8_kernels()?;
    }
    seed_everything(context.seed);
    let model = &loaded.model;
    Ok(shared::generate::continue_text(model, prompt, |idx| decoding.generate(model, idx, max_new_tokens))?.text)
}

/// A run of `options` on `text` in the subfolder `name` of the output folder, and its
/// model loaded back from the checkpoint (the exercises that study a trained model).
pub fn train_and_load(
    context: &RunContext,
    name: &str,
    text: &str,
    options: &MiniGptOptions,
) -> Result<(MiniGptReport, shared::app::model_source::LoadedModel)> {
    let run_context = RunContext { out_dir: context.out_dir.join(name), ..context.clone() };
    let report = run(&run_context, text, options)?;
    let loaded = ModelSource::checkpoint(&report.checkpoint).load(context.device, context.seed)?;
    Ok((report, loaded))
}

/// The training part (the first `train_ratio` of the tokens) and the validation part.
fn split(ids: &[u32], train_ratio: f64) -> (&[u32], &[u32]) {
    ids.split_at((ids.len() as f64 * train_ratio) as usize)
}

/// The loss of `model` on `batches` random windows (its context long, 12 a batch) of the
/// training part of `text` (the first `train_ratio`) or of its validation part, seeded with
/// `seed`.
pub fn split_loss(
    model: &GptModel,
    text: &str,
    train_ratio: f64,
    train: bool,
    batches: usize,
    seed: u64,
) -> Result<f64> {
    windows_loss(model, text, train_ratio, train, 0, batches, seed)
}

/// [`split_loss`] of the validation part counting only the tokens after each window's first
/// `prompt` tokens: the loss on the completions.
pub fn completion_loss(
    model: &GptModel,
    text: &str,
    train_ratio: f64,
    prompt: i64,
    batches: usize,
    seed: u64,
) -> Result<f64> {
    windows_loss(model, text, train_ratio, false, prompt, batches, seed)
}

fn windows_loss(
    model: &GptModel,
    text: &str,
    train_ratio: f64,
    train: bool,
    prompt: i64,
    batches: usize,
    seed: u64,
) -> Result<f64> {
    let ids = model.cfg.tokenizer.build()?.encode(text).context("tokenizing the text")?;
    let (train_ids, val_ids) = split(&ids, train_ratio);
    let part = if train { train_ids } else { val_ids };
    let windows =
        RandomWindows::new(part, model.cfg.context_length, 12, batches).context("the split")?.with_prompt(prompt);
    seed_everything(seed);
    Ok(calc_loss_loader(model, &windows, None, model.tok_emb.ws.device()))
}

/// The token ids of the validation part of `text` (all after the first `train_ratio`), with
/// the model's tokenizer.
pub fn validation_ids(model: &GptModel, text: &str, train_ratio: f64) -> Result<Vec<u32>> {
    let ids = model.cfg.tokenizer.build()?.encode(text).context("tokenizing the text")?;
    Ok(split(&ids, train_ratio).1.to_vec())
}

/// The offsets of `ids` that hold a line break, where a line-start window begins.
pub fn line_starts(ids: &[u32], tokenizer: &dyn Tokenizer) -> Result<Vec<i64>> {
    let newline = match tokenizer.encode("\n")?[..] {
        [id] => id,
        _ => anyhow::bail!("the tokenizer has no single token for a line break, so windows cannot start at one"),
    };
    Ok(ids.iter().enumerate().filter(|(_, &id)| id == newline).map(|(i, _)| i as i64).collect())
}

/// The first 200,000 characters of the corpus: the exercises' small runs.
pub fn small_corpus(context: &RunContext) -> Result<String> {
    Ok(corpus(context)?.chars().take(200_000).collect())
}

/// The default corpus: tiny Shakespeare (bundled), or `--data FILE`.
pub fn corpus(context: &RunContext) -> Result<String> {
    Ok(context.data.read_to_string(&TINY_SHAKESPEARE)?)
}
