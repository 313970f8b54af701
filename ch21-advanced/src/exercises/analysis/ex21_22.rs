//! Exercise 21.22: three sizes of the mini-GPT (2 layers of width 128 with 4 heads, 4 of 256
//! with 8, 6 of 384 with 12), GPT-2's tokenizer with tied embeddings, trained alike on the same
//! text (the first 200,000 characters of tiny Shakespeare) for the same number of epochs: one
//! chart of their loss curves, validation perplexity, a sample each, training time per epoch,
//! and their real parameter counts beside the exercise's rough figures. With GPT-2's 50,257
//! ids the token embedding holds most of the smaller models' parameters. With `--weights`
//! (or `--checkpoint`) the loaded model is scored on the same validation text as a reference.

use std::fmt;
use std::path::PathBuf;

use anyhow::{ensure, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::Report;

use crate::exercises::Exercise;
use shared::app::model_source::LoadedModel;
use shared::app::plot::{Chart, Series, PALETTE};
use shared::tokenizer::{Gpt2Tokenizer, Tokenizer, TokenizerSpec};

use crate::analysis::seeded_sample;
use crate::minigpt::{self, split_loss, MiniGptOptions, TokenizerChoice};
use crate::models::{self, Model};
use crate::pretrained::Pretraining;

pub const EXERCISE: Exercise = Exercise {
    id: "21.22",
    summary: "three model sizes (2/128/4, 4/256/8, 6/384/12) trained alike with GPT-2's tokenizer: loss curves, validation perplexity, samples, time per epoch, real parameter counts",
    run: |context| {
        let reference = models::from_flags(context, &context.flags)?;
        Report::new(&run(context, &SizeStudy::standard(), reference.as_ref())?)
    },
};

/// One size of the exercise, with its rough parameter count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Size {
    pub name: &'static str,
    pub n_layers: i64,
    pub emb_dim: i64,
    pub n_heads: i64,
    pub rough_parameters: f64,
}

pub const SIZES: [Size; 3] = [
    Size { name: "small", n_layers: 2, emb_dim: 128, n_heads: 4, rough_parameters: 2e6 },
    Size { name: "medium", n_layers: 4, emb_dim: 256, n_heads: 8, rough_parameters: 10e6 },
    Size { name: "large", n_layers: 6, emb_dim: 384, n_heads: 12, rough_parameters: 30e6 },
];

/// What every size trains on, and for how long.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SizeStudy {
    pub sizes: Vec<Size>,
    /// The first this many characters of tiny Shakespeare (90 % to train on).
    pub corpus_chars: usize,
    pub epochs: usize,
    pub block_size: i64,
    pub batch_size: i64,
    pub sample_tokens: i64,
}

impl SizeStudy {
    /// The three sizes, 3 epochs of 200,000 characters in batches of 8 windows of 128 tokens.
    pub fn standard() -> Self {
        Self {
            sizes: SIZES.to_vec(),
            corpus_chars: 200_000,
            epochs: 3,
            block_size: 128,
            batch_size: 8,
            sample_tokens: 40,
        }
    }

    /// For tests: two tiny sizes, 2 epochs of 6,000 characters.
    pub fn tiny() -> Self {
        let size = |name, n_layers, emb_dim| Size { name, n_layers, emb_dim, n_heads: 2, rough_parameters: 0.0 };
        Self {
            sizes: vec![size("tiny", 1, 16), size("less tiny", 2, 32)],
            corpus_chars: 6_000,
            epochs: 2,
            block_size: 32,
            batch_size: 4,
            sample_tokens: 8,
        }
    }

    /// Steps per evaluation and evaluations per epoch: one epoch holds about as many tokens
    /// as the training split, in four evaluation rounds.
    fn schedule(&self, train_tokens: usize) -> (usize, usize) {
        let steps = (train_tokens / (self.block_size * self.batch_size) as usize).max(4);
        (steps / 4, 4)
    }

    fn options(&self, size: &Size, train_tokens: usize) -> MiniGptOptions {
        let (interval, rounds) = self.schedule(train_tokens);
        let base = MiniGptOptions {
            n_layers: size.n_layers,
            n_heads: size.n_heads,
            emb_dim: size.emb_dim,
            block_size: self.block_size,
            batch_size: self.batch_size,
            tie_embeddings: true,
            tokenizer: TokenizerChoice::Gpt2,
            eval_iters: 5,
            final_eval_batches: 20,
            samples: false,
            verbose: false,
            ..MiniGptOptions::default()
        }
        .with_steps(interval * rounds * self.epochs);
        MiniGptOptions { eval_interval: interval, final_eval_batches: 20, ..base }
    }
}

/// Parameters: all of them, and those of the token and position embeddings.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Parameters {
    pub total: i64,
    pub embeddings: i64,
}

impl Parameters {
    /// Counted from the model's variables (a tied head shares the token embedding's).
    pub fn of(model: &LoadedModel) -> Self {
        let variables = model.vs.variables();
        let count = |embedding: bool| -> i64 {
            let is_embedding = |name: &str| ["tok_emb", "pos_emb", "out_head"].iter().any(|e| name.starts_with(e));
            variables.iter().filter(|(name, _)| is_embedding(name) == embedding).map(|(_, t)| t.numel() as i64).sum()
        };
        Self { total: count(true) + count(false), embeddings: count(true) }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub size: Size,
    pub parameters: Parameters,
    pub validation_loss: f64,
    pub validation_perplexity: f64,
    pub seconds_per_epoch: f64,
    pub tokens_per_second: f64,
    /// `(tokens seen, training loss, validation loss)` at each evaluation.
    pub curve: Vec<(i64, f64, f64)>,
    pub sample: String,
}

/// A loaded model scored on the same validation text.
#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub model: String,
    pub parameters: Parameters,
    pub validation_perplexity: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_22 {
    pub study: SizeStudy,
    pub train_tokens: usize,
    pub steps: usize,
    pub rows: Vec<Row>,
    pub reference: Option<Reference>,
    pub figure: PathBuf,
}

const VALIDATION_BATCHES: usize = 20;
const PROMPT: &str = "ROMEO:";

/// Trains every size of `study` and writes the loss curves; `reference` (a loaded model) is
/// scored on the same validation text, which needs it to read GPT-2's tokens as the sizes do
/// (a perplexity is per token of a tokenizer).
pub fn run(context: &RunContext, study: &SizeStudy, reference: Option<&Model>) -> Result<Ex21_22> {
    if let Some(model) = reference {
        let tokenizer = &model.gpt().cfg.tokenizer;
        ensure!(
            *tokenizer == TokenizerSpec::Gpt2,
            "{} reads its own tokenizer ({}), and the sizes trained here read GPT-2's: their perplexities per \
             token cannot be compared; run 21.22 with --weights gpt2, a checkpoint of ours, or neither",
            model.name,
            tokenizer.name()
        );
    }
    let text: String = Pretraining::corpus_text(context)?.chars().take(study.corpus_chars).collect();
    let train_tokens = (Tokenizer::encode(&Gpt2Tokenizer::new(), &text)?.len() as f64 * 0.9) as usize;
    let mut rows = Vec::new();
    let mut steps = 0;
    for size in &study.sizes {
        let options = study.options(size, train_tokens);
        steps = options.iters;
        let folder = format!("ex21_22/{}-{}x{}", size.name.replace(' ', "-"), size.n_layers, size.emb_dim);
        let (report, loaded) = minigpt::train_and_load(context, &folder, &text, &options)?;
        let history = &report.history;
        let validation_loss =
            split_loss(&loaded.model, &text, options.train_ratio, false, VALIDATION_BATCHES, context.seed)?;
        rows.push(Row {
            size: *size,
            parameters: Parameters::of(&loaded),
            validation_loss,
            validation_perplexity: validation_loss.exp(),
            seconds_per_epoch: history.train_seconds / study.epochs as f64,
            tokens_per_second: history.tokens_per_second,
            curve: history.evaluations.iter().map(|e| (e.tokens_seen, e.train_loss, e.val_loss)).collect(),
            sample: seeded_sample(&loaded.model, PROMPT, study.sample_tokens, context.seed, 200)?,
        });
    }
    let reference = reference
        .map(|model| -> Result<Reference> {
            let loss = split_loss(model.gpt(), &text, 0.9, false, VALIDATION_BATCHES, context.seed)?;
            let parameters = Parameters::of(&model.loaded);
            Ok(Reference { parameters, validation_perplexity: loss.exp(), model: model.name.clone() })
        })
        .transpose()?;

    let curves: Vec<(String, Vec<f64>, Vec<f64>)> = rows
        .iter()
        .flat_map(|row| {
            let xs: Vec<f64> = row.curve.iter().map(|c| c.0 as f64).collect();
            [
                (format!("{} (training)", row.size.name), xs.clone(), row.curve.iter().map(|c| c.1).collect()),
                (format!("{} (validation)", row.size.name), xs, row.curve.iter().map(|c| c.2).collect()),
            ]
        })
        .collect();
    let figure = context.out_dir.join("ex21_22-loss-curves.png");
    Chart {
        series: curves
            .iter()
            .enumerate()
            .map(|(i, (label, xs, ys))| Series { xs, ys, color: PALETTE[i % PALETTE.len()], label })
            .collect(),
        x_label: "tokens seen",
        y_label: "loss",
        top_axis: None,
        width: 900,
        height: 560,
    }
    .write_png(&figure)?;
    Ok(Ex21_22 { study: study.clone(), train_tokens, steps, rows, reference, figure })
}

fn millions(n: i64) -> String {
    format!("{:.2}M", n as f64 / 1e6)
}

impl fmt::Display for Ex21_22 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.study;
        writeln!(
            f,
            "The first {} characters of tiny Shakespeare, GPT-2's tokenizer ({} training tokens); each size trains {} epochs = {} steps of {} windows of {} tokens, tied embeddings",
            s.corpus_chars, self.train_tokens, s.epochs, self.steps, s.batch_size, s.block_size
        )?;
        writeln!(f, "| size | layers / width / heads | rough figure | parameters | of them embeddings | validation perplexity | seconds per epoch | tokens/s |")?;
        writeln!(f, "|---|---|---:|---:|---:|---:|---:|---:|")?;
        for r in &self.rows {
            let z = &r.size;
            writeln!(
                f,
                "| {} | {} / {} / {} | {} | {} | {} ({:.0} %) | {:.1} | {:.0} | {:.0} |",
                z.name,
                z.n_layers,
                z.emb_dim,
                z.n_heads,
                millions(z.rough_parameters as i64),
                millions(r.parameters.total),
                millions(r.parameters.embeddings),
                100.0 * r.parameters.embeddings as f64 / r.parameters.total as f64,
                r.validation_perplexity,
                r.seconds_per_epoch,
                r.tokens_per_second
            )?;
        }
        if let Some(r) = &self.reference {
            writeln!(
                f,
                "| reference: {} | | | {} | {} | {:.1} | | |",
                r.model,
                millions(r.parameters.total),
                millions(r.parameters.embeddings),
                r.validation_perplexity
            )?;
        }
        writeln!(f, "\nSamples after {PROMPT:?} (temperature 0.8, top-k 40, the same seed):")?;
        for r in &self.rows {
            writeln!(f, "- {}: {}", r.size.name, r.sample)?;
        }
        write!(f, "Loss curves: {}", self.figure.display())
    }
}
