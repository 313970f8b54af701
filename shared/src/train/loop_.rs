//! Section 5.2, listing 5.3: `train_model_simple`, with a progress bar, the book's log lines,
//! and the bookkeeping a checkpoint needs to resume.

use std::sync::LazyLock;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::{calc_loss_loader, AdamW, NextTokenLoss, StepSchedule, TrainMode, TrainingLoss};
use crate::core::device::seed_everything;
use crate::data::dataset::BatchSource;
use crate::generate::generate_text_simple;
use crate::model::GptModel;
use crate::tokenizer::{Gpt2Tokenizer, TokenId, Tokenizer};

/// The loop's settings (the book's `num_epochs`, `eval_freq`, `eval_iter`, `start_context`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    pub num_epochs: usize,
    /// Evaluate every this many steps.
    pub eval_freq: usize,
    /// Batches per evaluation (train and validation each).
    pub eval_iter: usize,
    /// After each epoch, print a greedy continuation of this text (50 tokens).
    pub start_context: Option<String>,
    /// See [`super::CheckpointMeta::epoch_seed`].
    pub epoch_seed: Option<u64>,
    /// Print the book's lines and show a progress bar.
    pub verbose: bool,
    /// How each step computes (the model and optimizer are prepared by [`TrainMode::prepare`]).
    #[serde(default)]
    pub mode: TrainMode,
    /// Appendix D's learning-rate schedule and gradient clipping (none in the chapters).
    #[serde(default)]
    pub schedule: StepSchedule,
}

/// Where a run stands: the book's `global_step` and `tokens_seen`, and completed epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainProgress {
    pub epoch: usize,
    pub global_step: i64,
    pub tokens_seen: i64,
}

impl Default for TrainProgress {
    fn default() -> Self {
        Self { epoch: 0, global_step: -1, tokens_seen: 0 }
    }
}

/// One evaluation: the book's `train_losses`, `val_losses` and `track_tokens_seen` entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// 1-based, as printed.
    pub epoch: usize,
    pub step: i64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub tokens_seen: i64,
}

impl std::fmt::Display for Evaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Ep {} (Step {:06}): Train loss {:.3}, Val loss {:.3}",
            self.epoch, self.step, self.train_loss, self.val_loss
        )
    }
}

/// What a run produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainHistory {
    pub evaluations: Vec<Evaluation>,
    /// The sample printed after each epoch.
    pub samples: Vec<String>,
    /// The learning rate of every step (appendix D's `track_lrs`).
    #[serde(default)]
    pub learning_rates: Vec<f64>,
    pub train_seconds: f64,
    /// Training tokens per second over the run (evaluations and samples included).
    pub tokens_per_second: f64,
}

/// What [`train_model`] can change about a step beyond [`TrainSettings`]. The book's loop
/// ([`TrainHooks::book`]) minimises next-token cross-entropy and prints its samples with
/// GPT-2's tokenizer.
pub struct TrainHooks<'a> {
    /// The loss each step minimises (evaluations always report next-token cross-entropy,
    /// comparable across losses).
    pub loss: &'a dyn TrainingLoss,
    /// Decodes the samples printed after each epoch.
    pub tokenizer: &'a dyn Tokenizer,
    /// Runs after every epoch (and its sample) with the progress so far and the optimizer,
    /// e.g. to save a checkpoint, so that a run killed midway loses at most one epoch.
    pub on_epoch_end: &'a mut dyn FnMut(&TrainProgress, &AdamW) -> Result<()>,
    /// Runs after each `backward`, before clipping and the optimizer step: data-parallel
    /// training averages the gradients over the processes here
    /// ([`crate::train::distributed::DataParallel`]).
    pub after_backward: Option<&'a mut dyn FnMut() -> Result<()>>,
}

impl<'a> TrainHooks<'a> {
    /// Listing 5.3's step: next-token loss, GPT-2 samples.
    pub fn book(on_epoch_end: &'a mut dyn FnMut(&TrainProgress, &AdamW) -> Result<()>) -> Self {
        static GPT2: LazyLock<Gpt2Tokenizer> = LazyLock::new(Gpt2Tokenizer::new);
        Self { loss: &NextTokenLoss, tokenizer: &*GPT2, on_epoch_end, after_backward: None }
    }
}

/// Trains `model` for `settings.num_epochs` more epochs from `progress`, evaluating every
/// `eval_freq` steps on `eval_iter` batches of each loader, as the book's listing 5.3 does,
/// with the book's step ([`train_model`] with [`TrainHooks::book`]), its samples in the
/// model's tokenizer (GPT-2's in the book). `progress` is updated, so a checkpoint taken
/// afterwards can resume the run; `on_epoch_end` runs after every epoch.
#[allow(clippy::too_many_arguments)]
pub fn train_model_simple(
    model: &GptModel,
    optimizer: &mut AdamW,
    train_loader: &dyn BatchSource,
    val_loader: &dyn BatchSource,
    settings: &TrainSettings,
    progress: &mut TrainProgress,
    device: Device,
    on_epoch_end: &mut dyn FnMut(&TrainProgress, &AdamW) -> Result<()>,
) -> Result<TrainHistory> {
    let tokenizer = model.cfg.tokenizer.build()?;
    let hooks = TrainHooks { tokenizer: tokenizer.as_ref(), ..TrainHooks::book(on_epoch_end) };
    train_model(model, optimizer, train_loader, val_loader, settings, progress, device, hooks)
}

/// Listing 5.3's loop with the step that `hooks` describes (the loss) and the settings'
/// schedule and clipping (appendix D).
#[allow(clippy::too_many_arguments)]
pub fn train_model(
    model: &GptModel,
    optimizer: &mut AdamW,
    train_loader: &dyn BatchSource,
    val_loader: &dyn BatchSource,
    settings: &TrainSettings,
    progress: &mut TrainProgress,
    device: Device,
    mut hooks: TrainHooks,
) -> Result<TrainHistory> {
    anyhow::ensure!(settings.eval_freq > 0, "the evaluation frequency must be at least 1 step");
    anyhow::ensure!(train_loader.batch_count() > 0, "the training data has no complete batch");
    settings.schedule.validate()?;
    super::check_token_ids(model, &[("training", train_loader), ("validation", val_loader)])?;
    let bar = progress_bar(settings.verbose, (settings.num_epochs * train_loader.batch_count()) as u64);
    let say = |line: &str| {
        if settings.verbose {
            bar.suspend(|| println!("{line}"));
        }
    };
    let mut history = TrainHistory::default();
    let start = Instant::now();
    let first_tokens = progress.tokens_seen;
    let last_epoch = progress.epoch.checked_add(settings.num_epochs).with_context(|| {
        format!("cannot train {} more epochs after epoch {}: the count overflows", settings.num_epochs, progress.epoch)
    })?;
    while progress.epoch < last_epoch {
        if let Some(seed) = settings.epoch_seed {
            seed_everything(seed.wrapping_add(progress.epoch as u64));
        }
        for batch in train_loader.batches() {
            optimizer.zero_grad();
            let step = progress.global_step.checked_add(1).context("the step count overflows")?;
            let tokens_seen = progress.tokens_seen.checked_add(batch.inputs.numel() as i64);
            let tokens_seen = tokens_seen.context("the count of tokens seen overflows")?;
            settings.schedule.set_lr(optimizer, step);
            history.learning_rates.push(optimizer.config.lr);
            let loss = settings.mode.forward(device, || hooks.loss.loss(model, &batch, device, true));
            // Read before the update, so that a diverged run stops with the weights of its
            // last good step, and the checkpoint on disk is the last finite one.
            let loss_value = loss.double_value(&[]);
            ensure!(
                loss_value.is_finite(),
                "training diverged at step {step} (epoch {}): the loss is {loss_value}. Nothing more is saved; \
                 the last checkpoint written is kept. Lower the learning rate (--lr)",
                progress.epoch + 1
            );
            loss.backward();
            if let Some(after_backward) = hooks.after_backward.as_mut() {
                after_backward()?;
            }
            settings.schedule.clip(optimizer, step);
            optimizer.step();
            progress.tokens_seen = tokens_seen;
            progress.global_step = step;
            let rate = (progress.tokens_seen - first_tokens) as f64 / start.elapsed().as_secs_f64();
            bar.set_message(format!(
                "epoch {}/{last_epoch} step {} loss {loss_value:.3} {rate:.0} tokens/s",
                progress.epoch + 1,
                progress.global_step
            ));
            bar.inc(1);
            // After a step `global_step` is at least 0; an `eval_freq` above `i64::MAX` (never
            // evaluate) must not wrap to a negative divisor.
            if progress.global_step as u64 % settings.eval_freq as u64 == 0 {
                let evaluation = Evaluation {
                    epoch: progress.epoch + 1,
                    step: progress.global_step,
                    train_loss: calc_loss_loader(model, train_loader, Some(settings.eval_iter), device),
                    val_loss: calc_loss_loader(model, val_loader, Some(settings.eval_iter), device),
                    tokens_seen: progress.tokens_seen,
                };
                say(&evaluation.to_string());
                history.evaluations.push(evaluation);
            }
        }
        progress.epoch += 1;
        // The last step's update can leave weights that are not finite although its loss was:
        // such weights are never saved.
        if let Some(name) = optimizer.first_non_finite_parameter() {
            bail!(
                "training diverged in epoch {}: parameter {name} is no longer finite. Nothing more is saved; the \
                 last checkpoint written is kept. Lower the learning rate (--lr)",
                progress.epoch
            );
        }
        if let Some(context) = &settings.start_context {
            let sample = sample_text_with(model, hooks.tokenizer, context, 50, device)?;
            say(&sample);
            history.samples.push(sample);
        }
        bar.suspend(|| (hooks.on_epoch_end)(progress, optimizer))?;
    }
    bar.finish_and_clear();
    history.train_seconds = start.elapsed().as_secs_f64();
    history.tokens_per_second = (progress.tokens_seen - first_tokens) as f64 / history.train_seconds;
    Ok(history)
}

/// The book's `generate_and_print_sample`: a greedy continuation of `context`, on one line.
pub fn sample_text(model: &GptModel, context: &str, max_new_tokens: i64, device: Device) -> Result<String> {
    sample_text_with(model, &Gpt2Tokenizer::new(), context, max_new_tokens, device)
}

/// [`sample_text`] with any tokenizer.
pub fn sample_text_with(
    model: &GptModel,
    tokenizer: &dyn Tokenizer,
    context: &str,
    max_new_tokens: i64,
    device: Device,
) -> Result<String> {
    let ids: Vec<i64> = tokenizer.encode(context)?.into_iter().map(i64::from).collect();
    let idx = Tensor::from_slice(&ids).view([1, -1]).to_device(device);
    let out = generate_text_simple(model, &idx, max_new_tokens, model.cfg.context_length)?;
    let out: Vec<TokenId> =
        Vec::<i64>::try_from(out.get(0).to_device(Device::Cpu))?.iter().map(|&id| id as TokenId).collect();
    Ok(tokenizer.decode(&out)?.replace('\n', " "))
}

/// A progress bar on stderr (hidden unless `visible`) for `steps` training steps.
pub fn progress_bar(visible: bool, steps: u64) -> ProgressBar {
    let target = if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(steps), target);
    bar.set_style(
        ProgressStyle::with_template("[{elapsed_precise}] [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}
