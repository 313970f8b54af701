//! `compare <study>`: trains the variants of one architecture study with the same seed, data,
//! tokenizer and budget, and reports one table (parameters, KV-cache bytes per token,
//! training time, tokens/s, final validation loss, the study's own measurements), the
//! study's findings below it, and one PNG of the validation-loss curves (some studies draw
//! more charts). Each study is a set of `shared` model configurations; each lives in its own
//! module, which says which exercise of chapter 21 it answers.

mod gqa;
mod mtp;
mod prefix;
mod rope;
mod sinks;
mod window;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use clap::ValueEnum;
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::Report;
use shared::app::plot::{write_png, Area, Chart, Figure, Series, PALETTE};
use shared::model::GptModel;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::minigpt::{self, MiniGptOptions};

pub use gqa::{cached_tokens_per_second, gpt2_small_cache_sizes};
pub use rope::rotation_example;
pub use sinks::{generate_streaming, stream, StreamMode, Streamed};
pub use window::{attention_cost, copy_task, CopyTask};

/// The studies `compare` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Study {
    /// Exercise 21.25: learned positions vs RoPE vs none, evaluated at 1x, 2x and 4x the training length
    Rope,
    /// Exercise 21.26: sliding windows of 8, 16, 32 and 64 (full) positions, and the copy task's reach
    Window,
    /// Exercise 21.28: multi-head vs grouped-query (4 and 2 KV heads) vs multi-query attention
    Gqa,
    /// Exercise 21.29: attention sinks: streaming far past the context with window-only, sinks + window, recomputation
    Sinks,
    /// Exercise 21.30: causal vs prefix LM on prompt/completion windows, loss on the completion
    Prefix,
    /// Exercise 21.33: multi-token prediction with 1, 2, 4 and 8 heads, and self-speculative decoding
    Mtp,
}

impl Study {
    pub fn name(self) -> String {
        self.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string())
    }

    fn plan(self) -> Box<dyn Plan> {
        match self {
            Self::Rope => Box::new(rope::Rope::default()),
            Self::Window => Box::new(window::Window),
            Self::Gqa => Box::new(gqa::Gqa),
            Self::Sinks => Box::new(sinks::Sinks::default()),
            Self::Prefix => Box::new(prefix::Prefix::default()),
            Self::Mtp => Box::new(mtp::Mtp::default()),
        }
    }
}

/// A trained variant, as a study's measurements see it.
pub struct Trained<'a> {
    pub context: &'a RunContext,
    /// The whole text (the study splits it as training did, with `options.train_ratio`).
    pub text: &'a str,
    pub variant: &'a str,
    pub options: &'a MiniGptOptions,
    pub model: &'a GptModel,
    pub vs: &'a VarStore,
}

/// What a study adds below its table.
#[derive(Debug, Default)]
struct Findings {
    notes: Vec<String>,
    charts: Vec<PathBuf>,
}

/// One study: its variants, its own columns and how it measures them.
trait Plan {
    /// The variants built on `base`, by name.
    fn variants(&self, base: &MiniGptOptions) -> Vec<(String, MiniGptOptions)>;
    /// The study's own columns.
    fn columns(&self) -> Vec<String>;
    /// The study's columns for one trained variant (`None`: cannot be measured, the notes
    /// say why).
    fn measure(&mut self, trained: &Trained) -> Result<Vec<Option<f64>>>;
    /// The notes (and extra charts) once every variant is measured.
    fn findings(&mut self, context: &RunContext, base: &MiniGptOptions) -> Result<Findings>;
}

/// One trained variant of a study.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub variant: String,
    pub parameters: i64,
    pub kv_cache_bytes_per_token: i64,
    pub train_seconds: f64,
    pub tokens_per_second: f64,
    pub final_val_loss: f64,
    /// The study's own measurements, named by [`Comparison::columns`].
    pub measurements: Vec<Option<f64>>,
    /// (step, validation loss) at each evaluation.
    pub curve: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub study: Study,
    pub steps: usize,
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
    /// What the study found beyond the table (e.g. GPT-2 small's cache sizes, a second table).
    pub notes: Vec<String>,
    /// The validation curves first, then the study's own charts.
    pub charts: Vec<PathBuf>,
}

/// The walk-through's model and training at `steps` steps, quiet, in up to 8 rounds (as many
/// as divide `steps`), each ending with an evaluation.
pub fn base_options(steps: usize) -> MiniGptOptions {
    let rounds = (1..=8).rev().find(|r| steps % r == 0).unwrap_or(1);
    MiniGptOptions {
        iters: steps,
        eval_interval: steps / rounds,
        warmup_steps: (steps / 20) as i64,
        final_eval_batches: steps.clamp(10, 200),
        samples: false,
        verbose: false,
        ..MiniGptOptions::default()
    }
}

/// Trains every variant of `study` on `base` (see [`base_options`]) and measures them.
pub fn run(context: &RunContext, text: &str, study: Study, base: &MiniGptOptions) -> Result<Comparison> {
    let steps = base.iters;
    ensure!(steps >= 2, "--steps must be at least 2");
    let mut plan = study.plan();
    let mut rows = Vec::new();
    for (i, (variant, options)) in plan.variants(base).into_iter().enumerate() {
        let name = format!("compare-{}-{i}", study.name());
        let (report, mut loaded) = minigpt::train_and_load(context, &name, text, &options)?;
        options.choose_kernels(&mut loaded.model);
        let trained =
            Trained { context, text, variant: &variant, options: &options, model: &loaded.model, vs: &loaded.vs };
        let measurements = plan.measure(&trained).with_context(|| format!("measuring {variant}"))?;
        rows.push(Row {
            parameters: report.parameters,
            kv_cache_bytes_per_token: report.config.kv_cache_bytes_per_token(Kind::Float),
            train_seconds: report.history.train_seconds,
            tokens_per_second: report.history.tokens_per_second,
            final_val_loss: report.final_val_loss,
            measurements,
            curve: report.history.evaluations.iter().map(|e| ((e.step + 1) as f64, e.val_loss)).collect(),
            variant,
        });
    }
    let findings = plan.findings(context, base)?;
    let curves = context.out_dir.join(format!("compare-{}.png", study.name()));
    write_curves(&rows, &curves)?;
    Ok(Comparison {
        study,
        steps,
        columns: plan.columns(),
        rows,
        notes: findings.notes,
        charts: std::iter::once(curves).chain(findings.charts).collect(),
    })
}

/// `exercise 21.N`: `study` on the default corpus at `steps` steps.
pub fn exercise_report(context: &RunContext, study: Study, steps: usize) -> Result<Report> {
    Report::new(&run(context, &minigpt::corpus(context)?, study, &base_options(steps))?)
}

/// Every variant's validation loss against the step, one line each.
fn write_curves(rows: &[Row], path: &Path) -> Result<()> {
    let lines: Vec<Line> = rows.iter().map(|r| Line { label: r.variant.clone(), points: r.curve.clone() }).collect();
    write_lines(path, "step", "validation loss", &lines)
}

/// One labelled line of a chart.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
}

/// A line chart that owns its data (`shared::app::plot::Chart` borrows it when drawn).
struct Lines<'a> {
    x_label: &'a str,
    y_label: &'a str,
    lines: &'a [Line],
}

impl Figure for Lines<'_> {
    fn draw(&self, area: &Area) -> Result<()> {
        let xs: Vec<Vec<f64>> = self.lines.iter().map(|l| l.points.iter().map(|p| p.0).collect()).collect();
        let ys: Vec<Vec<f64>> = self.lines.iter().map(|l| l.points.iter().map(|p| p.1).collect()).collect();
        Chart {
            series: self
                .lines
                .iter()
                .enumerate()
                .map(|(i, l)| Series { xs: &xs[i], ys: &ys[i], color: PALETTE[i % PALETTE.len()], label: &l.label })
                .collect(),
            x_label: self.x_label,
            y_label: self.y_label,
            top_axis: None,
            width: 800,
            height: 500,
        }
        .draw(area)
    }
}

/// A line chart of `lines` (800 x 500).
fn write_lines(path: &Path, x_label: &str, y_label: &str, lines: &[Line]) -> Result<()> {
    write_png(&Lines { x_label, y_label, lines }, path, (800, 500))
}

/// `count` windows of `tokens` tokens spread evenly over the validation part of the text
/// (starting at line breaks when the variant trained that way), each `(1, tokens)` on the
/// run's device.
fn validation_prompts(trained: &Trained, count: usize, tokens: i64) -> Result<Vec<Tensor>> {
    let ids = minigpt::validation_ids(trained.model, trained.text, trained.options.train_ratio)?;
    let last = ids.len().checked_sub(tokens as usize).context("the validation part is shorter than a prompt")?;
    let starts: Vec<usize> = if trained.options.line_starts {
        let tokenizer = trained.model.cfg.tokenizer.build()?;
        minigpt::line_starts(&ids, tokenizer.as_ref())?.into_iter().map(|s| s as usize).filter(|&s| s <= last).collect()
    } else {
        (0..=last).collect()
    };
    ensure!(!starts.is_empty(), "no prompt of {tokens} tokens fits the validation part");
    Ok((0..count)
        .map(|i| {
            let start = starts[i * starts.len() / count];
            let window: Vec<i64> = ids[start..start + tokens as usize].iter().map(|&id| i64::from(id)).collect();
            Tensor::from_slice(&window).view([1, -1]).to_device(trained.context.device)
        })
        .collect())
}

/// The ids of a `(1, T)` token tensor, for a tokenizer to decode.
fn token_ids(tokens: &Tensor) -> Result<Vec<u32>> {
    Ok(Vec::<i64>::try_from(tokens.view([-1]))?.into_iter().map(|id| id as u32).collect())
}

/// `value` with `decimals`, or "–" where it could not be measured.
fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.decimals$}"))
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "`compare {}`, {} steps each, same seed, data and tokenizer:", self.study.name(), self.steps)?;
        writeln!(
            f,
            "| variant | parameters | KV bytes/token | train s | tokens/s | val loss | {} |",
            self.columns.join(" | ")
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|{}", "---:|".repeat(self.columns.len()))?;
        for r in &self.rows {
            let own: Vec<String> = r
                .measurements
                .iter()
                .map(|&m| cell(m, if m.is_some_and(|m| m.abs() >= 100.0) { 0 } else { 3 }))
                .collect();
            writeln!(
                f,
                "| {} | {} | {} | {:.1} | {:.0} | {:.3} | {} |",
                r.variant,
                r.parameters,
                r.kv_cache_bytes_per_token,
                r.train_seconds,
                r.tokens_per_second,
                r.final_val_loss,
                own.join(" | ")
            )?;
        }
        for note in &self.notes {
            writeln!(f, "{note}")?;
        }
        let charts: Vec<String> = self.charts.iter().map(|c| c.display().to_string()).collect();
        write!(f, "Charts: {}", charts.join(", "))
    }
}
