//! Exercise 21.29: attention sinks (StreamingLLM, Xiao et al. 2023). Models trained on
//! windows of the context length (from random offsets, or all from line starts, the way
//! documents all begin with one start token) read a text far longer than that, token by
//! token, in three ways: (a) window attention, keeping only the last `context` keys; (b) the
//! first 4 tokens kept as sinks plus the last `context - 4`; (c) recomputing each step over
//! the last `context` tokens from scratch. The table gives the perplexity of each on the
//! validation text; the notes give their speed, and the attention mass the trained model
//! puts on its first positions (the sink), per layer and head.

use std::time::Instant;

use anyhow::{ensure, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::plot::{write_grid, Figure, Heatmap};
use shared::model::positions::PosEncoding;
use shared::model::GptModel;
use tch::{Kind, Tensor};

use super::{validation_prompts, Findings, Line, Lines, Plan, Trained};
use crate::minigpt::{self, MiniGptOptions};

/// StreamingLLM's default number of sink tokens.
pub const SINKS: i64 = 4;
/// The streamed text, in context lengths.
const STREAM_CONTEXTS: i64 = 32;

/// How a model reads a text longer than its context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StreamMode {
    /// A cache of the last `context` keys (window attention).
    WindowOnly,
    /// The first `SINKS` keys and the last `context - SINKS`.
    SinksAndWindow,
    /// A fresh pass over the last `context` tokens for every token.
    Recompute,
}

impl StreamMode {
    pub const ALL: [Self; 3] = [Self::WindowOnly, Self::SinksAndWindow, Self::Recompute];

    pub fn label(self) -> &'static str {
        match self {
            Self::WindowOnly => "window only",
            Self::SinksAndWindow => "4 sinks + window",
            Self::Recompute => "recompute over the window",
        }
    }
}

/// The per-token losses of a streamed text and the time it took.
#[derive(Debug, Clone, Serialize)]
pub struct Streamed {
    pub mode: StreamMode,
    /// `losses[i]`: the negative log-likelihood of token `i + 1`.
    pub losses: Vec<f64>,
    pub seconds: f64,
}

impl Streamed {
    pub fn perplexity(&self) -> f64 {
        (self.losses.iter().sum::<f64>() / self.losses.len() as f64).exp()
    }
}

/// Reads `tokens` (a text of any length) with `model` one token at a time in `mode`.
pub fn stream(model: &GptModel, tokens: &[i64], mode: StreamMode) -> Result<Streamed> {
    ensure!(tokens.len() >= 2, "streaming needs at least 2 tokens");
    let _no_grad = tch::no_grad_guard();
    let device = model.tok_emb.ws.device();
    let context = model.cfg.context_length;
    let ids = Tensor::from_slice(tokens).view([1, -1]).to_device(device);
    let n = ids.size()[1];
    let start = Instant::now();
    let logits = match mode {
        StreamMode::WindowOnly | StreamMode::SinksAndWindow => {
            let sinks = if mode == StreamMode::WindowOnly { 0 } else { SINKS };
            let mut cache = model.new_streaming_cache(1, sinks, context - sinks)?;
            // The cache feeds the model one token at a time once it is full.
            model.forward_cached(&ids.narrow(1, 0, n - 1), &mut cache)
        }
        StreamMode::Recompute => {
            let steps: Vec<Tensor> = (0..n - 1)
                .map(|t| {
                    let first = (t + 1 - context).max(0);
                    model.forward_t(&ids.narrow(1, first, t + 1 - first), false).narrow(1, t - first, 1)
                })
                .collect();
            Tensor::cat(&steps, 1)
        }
    };
    let targets = ids.narrow(1, 1, n - 1);
    let losses = logits
        .log_softmax(-1, Kind::Float)
        .gather(2, &targets.unsqueeze(-1), false)
        .neg()
        .view([-1])
        .to_kind(Kind::Double);
    let seconds = start.elapsed().as_secs_f64();
    Ok(Streamed { mode, losses: Vec::try_from(losses)?, seconds })
}

/// Greedy generation of `new_tokens` tokens after `prompt` through a streaming cache of
/// `sinks` sink tokens and a window filling the rest of the context: as many tokens as asked,
/// whatever the context length.
pub fn generate_streaming(model: &GptModel, prompt: &[i64], new_tokens: usize, sinks: i64) -> Result<Vec<i64>> {
    ensure!(!prompt.is_empty(), "generation needs a prompt");
    let _no_grad = tch::no_grad_guard();
    let device = model.tok_emb.ws.device();
    let mut cache = model.new_streaming_cache(1, sinks, model.cfg.context_length - sinks)?;
    let mut logits = model.forward_cached(&Tensor::from_slice(prompt).view([1, -1]).to_device(device), &mut cache);
    let mut generated = Vec::with_capacity(new_tokens);
    for _ in 0..new_tokens {
        let next = logits.select(1, -1).argmax(-1, false).int64_value(&[0]);
        generated.push(next);
        logits = model.forward_cached(&Tensor::from_slice(&[next]).view([1, 1]).to_device(device), &mut cache);
    }
    Ok(generated)
}

#[derive(Default)]
pub struct Sinks {
    notes: Vec<String>,
    /// Each variant's mass on the first positions, `(layers, heads)`.
    masses: Vec<(String, Vec<Vec<f64>>)>,
    /// Running loss over the stream of each mode, per variant.
    streams: Vec<(String, Vec<Line>)>,
}

impl Plan for Sinks {
    fn variants(&self, base: &MiniGptOptions) -> Vec<(String, MiniGptOptions)> {
        [
            ("RoPE", PosEncoding::Rope, false),
            ("RoPE, windows from line starts", PosEncoding::Rope, true),
            ("NoPE (none)", PosEncoding::None, false),
        ]
        .into_iter()
        .map(|(name, pos_encoding, line_starts)| {
            (name.to_string(), MiniGptOptions { pos_encoding, line_starts, ..base.clone() })
        })
        .collect()
    }

    fn columns(&self) -> Vec<String> {
        let mut columns = vec![format!("attention on the first {SINKS}")];
        columns.extend(StreamMode::ALL.map(|mode| format!("ppl, {}", mode.label())));
        columns
    }

    fn measure(&mut self, trained: &Trained) -> Result<Vec<Option<f64>>> {
        let model = trained.model;
        let mass = first_positions_mass(model, &validation_prompts(trained, 16, model.cfg.context_length)?)?;
        let mean = mass.iter().flatten().sum::<f64>() / mass.iter().map(Vec::len).sum::<usize>() as f64;
        self.masses.push((trained.variant.to_string(), mass));

        // The stream starts at the validation part's first line break, as line-start windows do.
        let tokenizer = model.cfg.tokenizer.build()?;
        let ids = minigpt::validation_ids(model, trained.text, trained.options.train_ratio)?;
        let first = minigpt::line_starts(&ids, tokenizer.as_ref())?.first().map_or(0, |&s| s as usize);
        let length = (STREAM_CONTEXTS * model.cfg.context_length) as usize;
        let tokens: Vec<i64> = ids.iter().skip(first).take(length).map(|&id| i64::from(id)).collect();
        let mut measurements = vec![Some(mean)];
        let (mut timings, mut lines) = (Vec::new(), Vec::new());
        for mode in StreamMode::ALL {
            let streamed = stream(model, &tokens, mode)?;
            measurements.push(Some(streamed.perplexity()));
            timings.push(format!("{} {:.0} tokens/s", mode.label(), streamed.losses.len() as f64 / streamed.seconds));
            lines.push(Line {
                label: mode.label().to_string(),
                points: running_mean(&streamed.losses, model.cfg.context_length as usize),
            });
        }
        let context = model.cfg.context_length as usize;
        let generated = generate_streaming(model, &tokens[..16.min(tokens.len())], 4 * context, SINKS)?;
        let tail: Vec<u32> = generated[3 * context..].iter().map(|&id| id as u32).collect();
        self.notes.push(format!(
            "{}: {}; greedy generation through the sinks cache, {} characters (4x the context), the last {context}: \
             {:?}.",
            trained.variant,
            timings.join(", "),
            4 * context,
            tokenizer.decode(&tail)?
        ));
        self.streams.push((trained.variant.to_string(), lines));
        Ok(measurements)
    }

    fn findings(&mut self, context: &RunContext, base: &MiniGptOptions) -> Result<Findings> {
        let mut notes = vec![format!(
            "Streaming: {} validation tokens from the first line break ({STREAM_CONTEXTS}x the context of {}), one \
             token at a time, every cache holding {} keys (StreamingLLM numbers positions inside the cache). \
             \"attention on the first {SINKS}\": the weight the queries in the second half of a window give its \
             first {SINKS} positions, mean over layers and heads (spread evenly it would be about {:.2}). Speed, \
             batch 1:",
            STREAM_CONTEXTS * base.block_size,
            base.block_size,
            base.block_size,
            uniform_mass(base.block_size)
        )];
        notes.append(&mut self.notes);
        let mass_chart = context.out_dir.join("compare-sinks-attention.png");
        let heatmaps: Vec<Heatmap> = self
            .masses
            .iter()
            .map(|(_, mass)| Heatmap {
                values: mass,
                x_label: "head",
                y_label: "layer",
                annotate: true,
                tick_labels: None,
            })
            .collect();
        let panels: Vec<(&str, &dyn Figure)> =
            self.masses.iter().zip(&heatmaps).map(|((name, _), map)| (name.as_str(), map as &dyn Figure)).collect();
        write_grid(&mass_chart, &panels, panels.len(), (420, 360))?;
        let stream_chart = context.out_dir.join("compare-sinks-stream.png");
        let (x_label, y_label) = ("position in the stream", "loss (mean over the last context)");
        let charts: Vec<Lines> =
            self.streams.iter().map(|(_, lines)| Lines { x_label, y_label, lines: lines.as_slice() }).collect();
        let panels: Vec<(&str, &dyn Figure)> =
            self.streams.iter().zip(&charts).map(|((name, _), chart)| (name.as_str(), chart as &dyn Figure)).collect();
        write_grid(&stream_chart, &panels, panels.len(), (640, 440))?;
        Ok(Findings { notes, charts: vec![mass_chart, stream_chart] })
    }
}

/// The attention weight queries in the second half of each window give the first `SINKS`
/// positions, averaged over the windows and those queries: `(layers, heads)`.
fn first_positions_mass(model: &GptModel, windows: &[Tensor]) -> Result<Vec<Vec<f64>>> {
    let batch = Tensor::cat(windows, 0);
    let length = batch.size()[1];
    let weights = tch::no_grad(|| model.attention_weights(&batch))?;
    weights
        .iter()
        .map(|layer| {
            // (B, H, T, T) -> the late queries' weight on the first keys -> (H,)
            let late = layer.narrow(2, length / 2, length - length / 2).narrow(3, 0, SINKS.min(length));
            let per_head = late.sum_dim_intlist(-1, false, Kind::Double).mean_dim(&[0i64, 2][..], false, Kind::Double);
            Ok(Vec::try_from(per_head)?)
        })
        .collect()
}

/// What [`first_positions_mass`] would give if every query spread its weight evenly.
fn uniform_mass(length: i64) -> f64 {
    let late = length / 2..length;
    late.clone().map(|q| SINKS.min(q + 1) as f64 / (q + 1) as f64).sum::<f64>() / late.count() as f64
}

/// The mean of the last `window` losses at each position (from `window` on).
fn running_mean(losses: &[f64], window: usize) -> Vec<(f64, f64)> {
    losses
        .windows(window)
        .enumerate()
        .step_by(window / 4 + 1)
        .map(|(i, w)| ((i + window) as f64, w.iter().sum::<f64>() / window as f64))
        .collect()
}
