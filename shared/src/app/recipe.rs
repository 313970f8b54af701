//! One recipe for a training run, which chapter 5's pretraining, chapter 6's fine-tuning
//! (and appendix E's), chapter 7's instruction fine-tuning and chapter 21's mini-GPT follow:
//! the training flags with each chapter's defaults ([`TrainFlags`]), the optimizer in the
//! run's mode ([`TrainFlags::optimizer`]), and the [`Reporter`] that prints the run's lines,
//! writes `metrics.json` and the loss plot. Resuming is [`crate::train::Checkpoint::resume`].
//! Each run keeps only what is its own: its data, its model and the lines the book prints.

use std::fmt::{Debug, Display};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Command, FromArgMatches};
use serde::Serialize;
use tch::nn::VarStore;

use super::report::write_history_plot;
use crate::model::GptModel;
use crate::train::{AdamW, AdamWConfig, AppendixD, LrDecay, StepSchedule, TrainHistory, TrainMode, TrainSettings};

/// A chapter's defaults for [`TrainFlags`], as the command line takes them: stated here once,
/// they are both the flags' defaults and (through [`TrainFlags::defaults`]) the run's.
pub trait TrainDefaults: Clone + Debug + Send + Sync + 'static {
    const EPOCHS: &'static str;
    const EPOCHS_HELP: Option<&'static str> = None;
    /// AdamW's learning rate; `None`: [`AdamWConfig::default`]'s, or a resumed checkpoint's.
    const LR: Option<&'static str>;
    const LR_HELP: Option<&'static str> = None;
    /// AdamW's weight decay; `None` as for [`TrainDefaults::LR`].
    const WEIGHT_DECAY: Option<&'static str>;
    const WEIGHT_DECAY_HELP: Option<&'static str> = None;
    const BATCH_SIZE: &'static str;
    const EVAL_FREQ: &'static str;
    const EVAL_ITER: &'static str = "5";
    /// The flags may also follow a subcommand (appendix E's).
    const GLOBAL: bool = false;
}

/// The flags every training run takes, with chapter `D`'s defaults.
#[derive(Args, Debug, Clone, PartialEq, Serialize)]
pub struct TrainFlags<D: TrainDefaults> {
    #[arg(long, default_value = D::EPOCHS, help = D::EPOCHS_HELP, global = D::GLOBAL)]
    pub epochs: usize,
    #[arg(long, default_value = D::LR, help = D::LR_HELP, allow_negative_numbers = true, global = D::GLOBAL)]
    pub lr: Option<f64>,
    #[arg(
        long,
        default_value = D::WEIGHT_DECAY,
        help = D::WEIGHT_DECAY_HELP,
        allow_negative_numbers = true,
        global = D::GLOBAL
    )]
    pub weight_decay: Option<f64>,
    #[arg(long, default_value = D::BATCH_SIZE, global = D::GLOBAL)]
    pub batch_size: usize,
    /// Evaluate every N steps
    #[arg(long, default_value = D::EVAL_FREQ, global = D::GLOBAL)]
    pub eval_freq: usize,
    /// Batches per evaluation
    #[arg(long, default_value = D::EVAL_ITER, global = D::GLOBAL)]
    pub eval_iter: usize,
    /// book: the book's code; fast: fused kernels and AdamW (same model and loss, not bit-exact)
    #[arg(long, value_enum, default_value = "book", global = D::GLOBAL)]
    pub mode: TrainMode,
    /// Appendix D: steps of linear warmup from --initial-lr up to the learning rate
    #[arg(long, default_value_t = 0, value_name = "N", global = D::GLOBAL)]
    pub warmup_steps: i64,
    /// Appendix D: the learning rate after the warmup
    #[arg(long, value_enum, default_value = "constant", global = D::GLOBAL)]
    pub lr_schedule: LrDecay,
    /// Appendix D: the learning rate the warmup starts from
    #[arg(long, default_value_t = 1e-5, value_name = "LR", global = D::GLOBAL)]
    pub initial_lr: f64,
    /// Appendix D: the learning rate the cosine ends at
    #[arg(long, default_value_t = 1e-5, value_name = "LR", global = D::GLOBAL)]
    pub min_lr: f64,
    /// Appendix D: clip the gradients' global norm to NORM from the end of the warmup (the appendix uses 1.0) [default: no clipping]
    #[arg(long, value_name = "NORM", global = D::GLOBAL)]
    pub clip_grad_norm: Option<f64>,
    /// Whose defaults these are.
    #[arg(skip)]
    #[serde(skip)]
    pub chapter: PhantomData<D>,
}

impl<D: TrainDefaults> TrainFlags<D> {
    /// The flags as an empty command line parses them: chapter `D`'s defaults.
    pub fn defaults() -> Self {
        let command = Self::augment_args(Command::new("defaults"));
        let matches = command.try_get_matches_from(["defaults"]).expect("a chapter's defaults parse");
        Self::from_arg_matches(&matches).expect("a chapter's defaults parse")
    }

    /// `base` with the learning rate and weight decay the flags set.
    pub fn adamw(&self, base: AdamWConfig) -> AdamWConfig {
        AdamWConfig {
            lr: self.lr.unwrap_or(base.lr),
            weight_decay: self.weight_decay.unwrap_or(base.weight_decay),
            ..base
        }
    }

    /// AdamW over `vs` ([`TrainFlags::adamw`] of `base`), with the model and the optimizer
    /// switched to the flags' mode.
    pub fn optimizer(&self, vs: &VarStore, model: &mut GptModel, base: AdamWConfig) -> Result<AdamW> {
        let mut optimizer = AdamW::new(vs, self.adamw(base))?;
        self.mode.prepare(model, &mut optimizer)?;
        Ok(optimizer)
    }

    /// The training loop's settings from the flags, for `optimizer` (whose learning rate is
    /// the schedule's peak) and `steps_per_epoch`: no epoch seeds, and a sample of
    /// `start_context` after every epoch when given.
    pub fn settings(
        &self,
        start_context: Option<String>,
        verbose: bool,
        optimizer: &AdamW,
        steps_per_epoch: usize,
    ) -> Result<TrainSettings> {
        Ok(TrainSettings {
            num_epochs: self.epochs,
            eval_freq: self.eval_freq,
            eval_iter: self.eval_iter,
            start_context,
            epoch_seed: None,
            verbose,
            mode: self.mode,
            schedule: self.schedule(optimizer, 0, steps_per_epoch)?,
        })
    }

    /// Appendix D's flags for a run that peaks at `optimizer`'s learning rate and has taken
    /// `steps_done` steps (a resumed run's), with `epochs` epochs of `steps_per_epoch` to go.
    pub fn schedule(&self, optimizer: &AdamW, steps_done: i64, steps_per_epoch: usize) -> Result<StepSchedule> {
        let appendix_d = AppendixD {
            warmup_steps: self.warmup_steps,
            decay: self.lr_schedule,
            initial_lr: self.initial_lr,
            min_lr: self.min_lr,
            clip_grad_norm: self.clip_grad_norm,
        };
        let steps = (self.epochs as i64).saturating_mul(steps_per_epoch as i64).saturating_add(steps_done);
        appendix_d.for_run(optimizer.config.lr, steps).context("the appendix D flags")
    }

    /// The same flags under chapter `E`'s defaults (appendix E runs chapter 6's run).
    pub fn into_chapter<E: TrainDefaults>(self) -> TrainFlags<E> {
        let Self {
            epochs,
            lr,
            weight_decay,
            batch_size,
            eval_freq,
            eval_iter,
            mode,
            warmup_steps,
            lr_schedule,
            initial_lr,
            min_lr,
            clip_grad_norm,
            chapter: _,
        } = self;
        TrainFlags {
            epochs,
            lr,
            weight_decay,
            batch_size,
            eval_freq,
            eval_iter,
            mode,
            warmup_steps,
            lr_schedule,
            initial_lr,
            min_lr,
            clip_grad_norm,
            chapter: PhantomData,
        }
    }
}

/// What a run prints and writes besides its checkpoint: its lines (when verbose), then
/// `metrics.json` and the loss plot in the output folder.
#[derive(Debug, Clone)]
pub struct Reporter {
    pub out_dir: PathBuf,
    pub verbose: bool,
}

impl Reporter {
    pub fn new(out_dir: &Path, verbose: bool) -> Self {
        Self { out_dir: out_dir.to_path_buf(), verbose }
    }

    /// Prints `line` when the run is verbose.
    pub fn say(&self, line: impl Display) {
        if self.verbose {
            println!("{line}");
        }
    }

    /// `name` in the output folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.out_dir.join(name)
    }

    /// Writes `report` as `metrics.json` in the output folder.
    pub fn write_metrics(&self, report: &impl Serialize) -> Result<()> {
        let path = self.path("metrics.json");
        std::fs::write(&path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Writes `report` as `metrics.json` and the losses of `history` over `epochs` as the plot
    /// `plot` (figures 5.12 and 7.17).
    pub fn write_metrics_and_plot(
        &self,
        report: &impl Serialize,
        plot: &Path,
        epochs: usize,
        history: &TrainHistory,
    ) -> Result<()> {
        self.write_metrics(report)?;
        write_history_plot(plot, epochs, history)
    }

    /// A next-token run's ending (chapter 5's, the mini-GPT's): [`Reporter::write_metrics_and_plot`],
    /// then "Wrote CHECKPOINT, METRICS and PLOT".
    pub fn finish(
        &self,
        report: &impl Serialize,
        checkpoint: &Path,
        (plot, epochs, history): (&Path, usize, &TrainHistory),
    ) -> Result<()> {
        self.write_metrics_and_plot(report, plot, epochs, history)?;
        let metrics = self.path("metrics.json");
        self.say(format!("Wrote {}, {} and {}", checkpoint.display(), metrics.display(), plot.display()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Book;

    impl TrainDefaults for Book {
        const EPOCHS: &'static str = "10";
        const LR: Option<&'static str> = None;
        const WEIGHT_DECAY: Option<&'static str> = Some("0.25");
        const BATCH_SIZE: &'static str = "2";
        const EVAL_FREQ: &'static str = "50";
    }

    #[test]
    fn the_defaults_are_the_flags_defaults() {
        let flags = TrainFlags::<Book>::defaults();
        assert_eq!((flags.epochs, flags.lr, flags.weight_decay), (10, None, Some(0.25)));
        assert_eq!((flags.batch_size, flags.eval_freq, flags.eval_iter, flags.mode), (2, 50, 5, TrainMode::Book));
        let adamw = flags.adamw(AdamWConfig { lr: 1e-3, ..AdamWConfig::default() });
        assert_eq!((adamw.lr, adamw.weight_decay), (1e-3, 0.25));
    }

    #[test]
    fn flags_override_the_defaults() {
        let command = TrainFlags::<Book>::augment_args(Command::new("run"));
        let matches = command.try_get_matches_from(["run", "--epochs", "3", "--lr", "0.5", "--mode", "fast"]).unwrap();
        let flags = TrainFlags::<Book>::from_arg_matches(&matches).unwrap();
        assert_eq!((flags.epochs, flags.lr, flags.mode), (3, Some(0.5), TrainMode::Fast));
    }
}
