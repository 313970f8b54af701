//! `compare <study>`: trains the variants of one architecture study with the same seed, data,
//! tokenizer and budget, and reports one table (parameters, KV-cache bytes per token,
//! training time, tokens/s, final validation loss, the study's own metric) and one PNG of the
//! validation-loss curves. Each study is a set of `shared` model configurations.

use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Result};
use clap::ValueEnum;
use serde::Serialize;
use shared::cli::RunContext;
use shared::generate::generate_greedy_cached;
use shared::gpt::{GptConfig, GptModel};
use shared::plot::{Chart, Series, PALETTE};
use tch::{Kind, Tensor};

use crate::minigpt::{self, MiniGptOptions};

/// The studies `compare` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Study {
    /// Exercise 21.28: multi-head vs grouped-query (4 and 2 KV heads) vs multi-query attention
    Gqa,
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
    /// The study's own measurement, named by [`Comparison::metric`].
    pub metric: f64,
    /// (step, validation loss) at each evaluation.
    pub curve: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub study: Study,
    pub steps: usize,
    pub metric: String,
    pub rows: Vec<Row>,
    /// Notes computed for the study beyond the table (e.g. GPT-2 small's cache sizes).
    pub notes: Vec<String>,
    pub chart: PathBuf,
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

/// The variants of `study` built on `base`, by name.
pub fn variants(study: Study, base: &MiniGptOptions) -> Vec<(String, MiniGptOptions)> {
    match study {
        Study::Gqa => {
            [(8, "MHA (8 KV heads)"), (4, "GQA (4 KV heads)"), (2, "GQA (2 KV heads)"), (1, "MQA (1 KV head)")]
                .into_iter()
                .map(|(kv, name)| {
                    (name.to_string(), MiniGptOptions { n_heads: 8, n_kv_heads: Some(kv), ..base.clone() })
                })
                .collect()
        }
    }
}

/// Cached greedy generation speed: `batch` sequences filling the context after an 8-token
/// prompt, so every step reads the cache; tokens per second, the best of 5 runs (the runs
/// are short, and the best is the least disturbed by other work on the machine).
pub fn cached_tokens_per_second(model: &GptModel, batch: i64, seed: u64) -> Result<f64> {
    let _no_grad = tch::no_grad_guard();
    let device = model.tok_emb.ws.device();
    shared::device::seed_everything(seed);
    let prompt_len = 8.min(model.cfg.context_length - 1);
    let prompt = Tensor::randint(model.cfg.vocab_size, [batch, prompt_len], (Kind::Int64, device));
    let new_tokens = model.cfg.context_length - prompt_len;
    let mut best = 0f64;
    for _ in 0..5 {
        let start = Instant::now();
        let _ = generate_greedy_cached(model, &prompt, new_tokens, None)?;
        best = best.max((batch * new_tokens) as f64 / start.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Trains every variant of `study` on `base` (see [`base_options`]) and measures them.
pub fn run(context: &RunContext, text: &str, study: Study, base: &MiniGptOptions) -> Result<Comparison> {
    let steps = base.iters;
    ensure!(steps >= 2, "--steps must be at least 2");
    let mut rows = Vec::new();
    for (i, (variant, options)) in variants(study, base).into_iter().enumerate() {
        let name = format!("compare-{}-{i}", study_name(study));
        let (report, loaded) = minigpt::train_and_load(context, &name, text, &options)?;
        let metric = match study {
            Study::Gqa => cached_tokens_per_second(&loaded.model, 8, context.seed)?,
        };
        rows.push(Row {
            variant,
            parameters: report.parameters,
            kv_cache_bytes_per_token: report.config.kv_cache_bytes_per_token(Kind::Float),
            train_seconds: report.history.train_seconds,
            tokens_per_second: report.history.tokens_per_second,
            final_val_loss: report.final_val_loss,
            metric,
            curve: report.history.evaluations.iter().map(|e| ((e.step + 1) as f64, e.val_loss)).collect(),
        });
    }
    let notes = match study {
        Study::Gqa => gpt2_small_cache_sizes(),
    };
    let chart = context.out_dir.join(format!("compare-{}.png", study_name(study)));
    let xs: Vec<Vec<f64>> = rows.iter().map(|r| r.curve.iter().map(|p| p.0).collect()).collect();
    let ys: Vec<Vec<f64>> = rows.iter().map(|r| r.curve.iter().map(|p| p.1).collect()).collect();
    Chart {
        series: rows
            .iter()
            .enumerate()
            .map(|(i, r)| Series { xs: &xs[i], ys: &ys[i], color: PALETTE[i % PALETTE.len()], label: &r.variant })
            .collect(),
        x_label: "step",
        y_label: "validation loss",
        top_axis: None,
        width: 800,
        height: 500,
    }
    .write_png(&chart)?;
    let metric = match study {
        Study::Gqa => "cached tokens/s (batch 8)",
    };
    Ok(Comparison { study, steps, metric: metric.to_string(), rows, notes, chart })
}

fn study_name(study: Study) -> String {
    study.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string())
}

/// GPT-2 small's shape (12 layers, 12 heads of 64) at context 1,024 in float32, with 12, 4,
/// 2 and 1 KV heads, by the same per-token formula the table uses.
pub fn gpt2_small_cache_sizes() -> Vec<String> {
    [12, 4, 2, 1]
        .into_iter()
        .map(|kv| {
            let cfg = GptConfig { n_kv_heads: Some(kv), ..GptConfig::gpt2_small() };
            let bytes = cfg.kv_cache_bytes_per_token(Kind::Float) * cfg.context_length;
            format!(
                "GPT-2 small with {kv:>2} KV heads: {bytes} bytes ({:.0} MiB) per sequence of 1,024 tokens",
                bytes as f64 / 1048576.0
            )
        })
        .collect()
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "`compare {}`, {} steps each, same seed, data and tokenizer:", study_name(self.study), self.steps)?;
        writeln!(f, "| variant | parameters | KV bytes/token | train s | tokens/s | val loss | {} |", self.metric)?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---:|")?;
        for r in &self.rows {
            writeln!(
                f,
                "| {} | {} | {} | {:.1} | {:.0} | {:.3} | {:.0} |",
                r.variant,
                r.parameters,
                r.kv_cache_bytes_per_token,
                r.train_seconds,
                r.tokens_per_second,
                r.final_val_loss,
                r.metric
            )?;
        }
        for note in &self.notes {
            writeln!(f, "{note}")?;
        }
        write!(f, "Validation curves: {}", self.chart.display())
    }
}
