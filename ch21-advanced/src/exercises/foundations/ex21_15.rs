//! Exercise 21.15: the complete mini-GPT training, the walk-through itself (nanoGPT's CPU
//! settings on tiny Shakespeare, or `--data FILE`), reported as a table of losses with the
//! sample written after each evaluation round, and the loss curve.

use std::fmt;
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::Report;

use crate::exercises::Exercise;
use shared::train::Evaluation;

use crate::minigpt::{self, MiniGptOptions};

pub const EXERCISE: Exercise = Exercise {
    id: "21.15",
    summary:
        "the walk-through's character-level training (2,000 steps): losses, a sample per round, the loss curve (PNG)",
    run: |context| {
        let text = minigpt::corpus(context)?;
        Report::new(&run(context, &text, &MiniGptOptions { verbose: false, ..MiniGptOptions::default() })?)
    },
};

/// The greedy sample written at the end of a round.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Optimizer steps taken when it was written.
    pub after_steps: usize,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_15 {
    pub parameters: i64,
    pub evaluations: Vec<Evaluation>,
    pub samples: Vec<Sample>,
    pub final_val_loss: f64,
    pub final_eval_batches: usize,
    pub train_seconds: f64,
    pub tokens_per_second: f64,
    pub loss_curve: PathBuf,
    pub checkpoint: PathBuf,
}

pub fn run(context: &RunContext, text: &str, options: &MiniGptOptions) -> Result<Ex21_15> {
    let run_context = RunContext { out_dir: context.out_dir.join("ex21_15"), ..context.clone() };
    let report = minigpt::run(&run_context, text, options)?;
    // Each round of `eval_interval` steps ends with a sample.
    let samples = report
        .history
        .samples
        .iter()
        .enumerate()
        .map(|(round, text)| Sample { after_steps: (round + 1) * options.eval_interval, text: text.clone() })
        .collect();
    Ok(Ex21_15 {
        parameters: report.parameters,
        evaluations: report.history.evaluations.clone(),
        samples,
        final_val_loss: report.final_val_loss,
        final_eval_batches: options.final_eval_batches,
        train_seconds: report.history.train_seconds,
        tokens_per_second: report.history.tokens_per_second,
        loss_curve: report.plot,
        checkpoint: report.checkpoint,
    })
}

impl fmt::Display for Ex21_15 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Character-level mini-GPT, {} parameters. Losses (20 batches each):", self.parameters)?;
        for e in &self.evaluations {
            writeln!(f, "  after {:>5} steps: train {:.3}, validation {:.3}", e.step + 1, e.train_loss, e.val_loss)?;
        }
        writeln!(f, "Greedy continuations of the prompt at the end of each round:")?;
        for s in &self.samples {
            writeln!(f, "  after {:>5} steps: {:?}", s.after_steps, s.text)?;
        }
        writeln!(
            f,
            "Final validation loss {:.3} over {} batches ({:.0} s, {:.0} tokens/s).",
            self.final_val_loss, self.final_eval_batches, self.train_seconds, self.tokens_per_second
        )?;
        write!(f, "Loss curve: {}; checkpoint: {}", self.loss_curve.display(), self.checkpoint.display())
    }
}
