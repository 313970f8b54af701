//! Appendix D, "Adding bells and whistles to the training loop", as its companion notebook
//! runs it: chapter 5's pretraining of GPT-2 small (context 256) on The Verdict for 15
//! epochs, with the learning rate warmed up linearly from 1e-5 to 0.001 over the first 20 %
//! of the steps, then half a cosine down to 1e-5, and the gradients clipped to a global norm
//! of 1.0 from the end of the warmup on; losses logged every 5 steps on one batch of each
//! split. The loop is chapter 5's (`train_model_simple`) with the schedule of
//! [`shared::train::AppendixD`], which `train` (and chapters 6 and 7) take as flags too.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::plot::{Chart, Series, PALETTE};
use shared::app::recipe::TrainFlags;
use shared::model::GptConfig;
use shared::train::LrDecay;

use crate::check_run::{self, Reference, RunCheck};
use crate::pretrain::{self, book_config, Chapter5, PretrainOptions, PretrainReport};

/// The appendix's peak learning rate (AdamW's `lr`).
pub const PEAK_LR: f64 = 0.001;
/// Where the warmup starts and the cosine ends.
pub const INITIAL_LR: f64 = 1e-5;
pub const MIN_LR: f64 = 1e-5;
/// The share of the steps that warm up.
pub const WARMUP_SHARE: f64 = 0.2;
pub const MAX_GRAD_NORM: f64 = 1.0;

/// What can change about the appendix's run (for tests and quick looks); the defaults are
/// the appendix's.
#[derive(Debug, Clone, Serialize)]
pub struct AppendixDOptions {
    pub config: GptConfig,
    pub epochs: usize,
    pub batch_size: usize,
    pub verbose: bool,
}

impl Default for AppendixDOptions {
    fn default() -> Self {
        Self { config: book_config(), epochs: 15, batch_size: 2, verbose: true }
    }
}

impl AppendixDOptions {
    /// Whether this is the appendix's own run, which the PyTorch reference recorded.
    pub fn is_the_appendix_run(&self) -> bool {
        let appendix = Self::default();
        (self.config == appendix.config) && (self.epochs, self.batch_size) == (appendix.epochs, appendix.batch_size)
    }
}

/// What the run did: chapter 5's report, its schedule, and the learning-rate plot.
#[derive(Debug, Clone, Serialize)]
pub struct AppendixDReport {
    pub warmup_steps: i64,
    pub total_steps: i64,
    pub run: PretrainReport,
    pub lr_plot: PathBuf,
    /// Against the PyTorch reference, for the appendix's own run.
    pub check: Option<RunCheck>,
}

/// Runs the appendix on `text` into `<out-dir>/appendix-d/`: checkpoint, `metrics.json`,
/// `losses.png` and `learning-rates.png`; the appendix's own run is compared with the
/// PyTorch reference (`reference/pytorch-appendix-d.json`) within `tolerance`.
pub fn run(context: &RunContext, text: &str, options: &AppendixDOptions, tolerance: f64) -> Result<AppendixDReport> {
    let context = RunContext { out_dir: context.out_dir.join("appendix-d"), ..context.clone() };
    let (train, _) = pretrain::loaders(text, 0.9, options.config.context_length as usize, options.batch_size)?;
    let total_steps = (train.len() * options.epochs) as i64;
    let warmup_steps = (WARMUP_SHARE * total_steps as f64) as i64;
    let train = TrainFlags::<Chapter5> {
        epochs: options.epochs,
        lr: Some(PEAK_LR),
        weight_decay: Some(0.1),
        batch_size: options.batch_size,
        eval_freq: 5,
        eval_iter: 1,
        warmup_steps,
        lr_schedule: LrDecay::Cosine,
        initial_lr: INITIAL_LR,
        min_lr: MIN_LR,
        clip_grad_norm: Some(MAX_GRAD_NORM),
        ..TrainFlags::defaults()
    };
    let pretrain_options = PretrainOptions {
        config: Some(options.config.clone()),
        train,
        initial_losses: false,
        verbose: options.verbose,
        ..PretrainOptions::default()
    };
    let run = pretrain::run(&context, text, &pretrain_options)?;
    let lr_plot = context.out_dir.join("learning-rates.png");
    let rates = &run.history.learning_rates;
    let steps: Vec<f64> = (0..rates.len()).map(|s| s as f64).collect();
    Chart {
        series: vec![Series { xs: &steps, ys: rates, color: PALETTE[0], label: "learning rate" }],
        x_label: "Step",
        y_label: "Learning rate",
        top_axis: None,
        width: 640,
        height: 400,
    }
    .write_png(&lr_plot)?;
    let check = options
        .is_the_appendix_run()
        .then(|| check_run::check_file(&run.metrics, &Reference::appendix_d(), tolerance))
        .transpose()?;
    Ok(AppendixDReport { warmup_steps, total_steps, run, lr_plot, check })
}
