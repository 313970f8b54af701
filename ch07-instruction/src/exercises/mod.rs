//! Chapter 7's exercises: each is the chapter's run with one setting changed, next to the run
//! with the book's settings. They start from the command line's run flags (`--init`,
//! `--limit`, `--epochs`, ...), so `--init random --config FILE --limit 200` makes any of them
//! a quick experiment.

pub mod ex7_1;
pub mod ex7_2;
pub mod ex7_3;
pub mod ex7_4;

use std::fmt;
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::ExerciseContext;

use crate::collate::TokenStats;
use crate::finetune::{self, FinetuneOptions, FinetuneReport};

/// Every exercise of the chapter, in book order.
pub const ALL: &[Exercise] = &[ex7_1::EXERCISE, ex7_2::EXERCISE, ex7_3::EXERCISE, ex7_4::EXERCISE];

/// What an exercise receives: the run's context and the binary's run flags, the settings
/// the exercises start from (the book's by default).
pub type Context = ExerciseContext<FinetuneOptions>;

/// A chapter 7 exercise.
pub type Exercise = shared::app::exercise::Exercise<Context>;

/// What one fine-tuning run came to.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub setting: String,
    pub train_tokens: TokenStats,
    pub trainable_parameters: i64,
    pub total_parameters: i64,
    pub seconds_per_epoch: f64,
    pub final_train_loss: f64,
    pub final_val_loss: f64,
    pub out_dir: PathBuf,
}

impl RunSummary {
    pub fn new(setting: &str, report: &FinetuneReport, out_dir: PathBuf) -> Self {
        let last = report.history.evaluations.last();
        Self {
            setting: setting.to_string(),
            train_tokens: report.train_tokens,
            trainable_parameters: report.trainable_parameters,
            total_parameters: report.total_parameters,
            seconds_per_epoch: report.seconds_per_epoch,
            final_train_loss: last.map_or(f64::NAN, |e| e.train_loss),
            final_val_loss: last.map_or(f64::NAN, |e| e.val_loss),
            out_dir,
        }
    }
}

/// Runs in a table, one row each.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub runs: Vec<RunSummary>,
}

/// Fine-tunes with `base` (the main setting) and with `change` applied to it, in `main/` and
/// `variant/` under the output folder.
pub fn compare(
    context: &RunContext,
    base: &FinetuneOptions,
    variant: &str,
    change: impl FnOnce(&mut FinetuneOptions),
) -> Result<Comparison> {
    let mut changed = base.clone();
    change(&mut changed);
    let mut runs = Vec::new();
    for (setting, options, dir) in [("main (book's settings)", base, "main"), (variant, &changed, "variant")] {
        let context = RunContext { out_dir: context.out_dir.join(dir), ..context.clone() };
        let report = finetune::run(&context, options)?;
        runs.push(RunSummary::new(setting, &report, context.out_dir));
    }
    Ok(Comparison { runs })
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<28} {:>12} {:>13} {:>13} {:>10} {:>9}",
            "setting", "tokens/ex.", "trainable", "s/epoch", "train loss", "val loss"
        )?;
        for run in &self.runs {
            writeln!(
                f,
                "{:<28} {:>12.1} {:>13} {:>13.1} {:>10.3} {:>9.3}",
                run.setting,
                run.train_tokens.mean,
                run.trainable_parameters,
                run.seconds_per_epoch,
                run.final_train_loss,
                run.final_val_loss
            )?;
        }
        write!(f, "Outputs (responses, plots, checkpoints) in ")?;
        let dirs: Vec<String> = self.runs.iter().map(|r| r.out_dir.display().to_string()).collect();
        write!(f, "{}", dirs.join(" and "))
    }
}
