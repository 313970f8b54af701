//! Exercise 21.26: sliding-window attention (Longformer, Mistral) with windows of 1/8, 1/4
//! and 1/2 of the context and the full causal mask: validation loss, and the attention
//! scores and FLOPs per layer a banded kernel needs. A synthetic copy task shows the reach of
//! information: a window of `W` lets a layer read `W - 1` positions back, so `L` layers
//! reach `L x (W - 1)`, and a token further back cannot be copied.

use anyhow::{ensure, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::core::device::seed_everything;
use shared::model::attention::AttentionMask;
use shared::model::positions::PosEncoding;
use shared::model::{GptConfig, GptModel};
use shared::train::{cross_entropy, AdamW, AdamWConfig, WarmupCosine, IGNORE_INDEX};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::{Findings, Plan, Trained};
use crate::minigpt::MiniGptOptions;

/// Training steps of each copy-task model (fewer when the study's budget is smaller).
pub const COPY_STEPS: usize = 400;

pub struct Window;

impl Plan for Window {
    fn variants(&self, base: &MiniGptOptions) -> Vec<(String, MiniGptOptions)> {
        let block = base.block_size;
        let mut variants: Vec<(String, MiniGptOptions)> = [8, 4, 2]
            .into_iter()
            .map(|fraction| {
                let window = (block / fraction).max(1);
                let options = MiniGptOptions { attention_mask: AttentionMask::SlidingWindow(window), ..base.clone() };
                (format!("window {window}"), options)
            })
            .collect();
        variants.push((format!("window {block} (full causal)"), base.clone()));
        variants
    }

    fn columns(&self) -> Vec<String> {
        vec!["scores/layer (KiB)".to_string(), "attention MFLOP/layer".to_string()]
    }

    fn measure(&mut self, trained: &Trained) -> Result<Vec<Option<f64>>> {
        let cfg = &trained.model.cfg;
        let window = match cfg.attention_mask {
            AttentionMask::SlidingWindow(window) => window,
            _ => cfg.context_length,
        };
        let cost = attention_cost(cfg.context_length, window, cfg.n_heads, cfg.emb_dim / cfg.n_heads);
        Ok(vec![Some(cost.score_bytes as f64 / 1024.0), Some(cost.flops as f64 / 1e6)])
    }

    fn findings(&mut self, context: &RunContext, base: &MiniGptOptions) -> Result<Findings> {
        let mut notes = vec![format!(
            "Scores and FLOPs: one sequence of {} tokens, per layer, for a kernel that computes only the scores a \
             query sees (QK^T and the weighted sum: 4 x visible pairs x width); the dense kernels here compute all \
             of them and mask.",
            base.block_size
        )];
        let full = attention_cost(1024, 1024, 12, 64);
        let windowed = attention_cost(1024, 128, 12, 64);
        notes.push(format!(
            "GPT-2 small's shape (1,024 tokens, 12 heads of 64) by the same formula: {:.1} MiB of scores and {:.0} \
             MFLOP per layer causal, {:.1} MiB and {:.0} MFLOP with a window of 128.",
            full.score_bytes as f64 / 1048576.0,
            full.flops as f64 / 1e6,
            windowed.score_bytes as f64 / 1048576.0,
            windowed.flops as f64 / 1e6
        ));
        let steps = base.iters.min(COPY_STEPS);
        notes.extend(reach_table(steps, context.device, context.seed)?);
        Ok(Findings { notes, charts: Vec::new() })
    }
}

/// What one attention layer computes for one sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AttentionCost {
    /// (query, key) pairs a query sees: the scores a banded kernel computes, per head.
    pub visible_pairs: i64,
    /// Those scores for every head, float32.
    pub score_bytes: i64,
    /// Multiply-adds of `Q K^T` and of the weighted sum, counted as 2 FLOPs each.
    pub flops: i64,
}

/// The cost of causal attention over `tokens` tokens in which each query sees its last
/// `window` positions (itself included), with `heads` heads of `head_dim`.
pub fn attention_cost(tokens: i64, window: i64, heads: i64, head_dim: i64) -> AttentionCost {
    let visible_pairs: i64 = (0..tokens).map(|q| (q + 1).min(window)).sum();
    AttentionCost {
        visible_pairs,
        score_bytes: heads * visible_pairs * 4,
        flops: 2 * 2 * visible_pairs * heads * head_dim,
    }
}

/// One run of the copy task: sequences of `length` random symbols (of `vocab`) that repeat
/// with period `distance`, so from position `distance - 1` on each next token is the one
/// `distance - 1` places before the current position, which is all that can predict it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CopyTask {
    pub vocab: i64,
    pub length: i64,
    pub distance: i64,
    pub layers: i64,
    pub window: i64,
    pub steps: usize,
}

impl CopyTask {
    /// A batch: inputs `(batch, length)`, targets with the unpredictable first `distance - 1`
    /// ignored.
    fn draw(&self, batch: i64) -> (Tensor, Tensor) {
        let period = Tensor::randint(self.vocab, [batch, self.distance], (Kind::Int64, Device::Cpu));
        let repeats = (self.length + 1 + self.distance - 1) / self.distance;
        let sequence = period.repeat([1, repeats]).narrow(1, 0, self.length + 1);
        let targets = sequence.narrow(1, 1, self.length).copy();
        let _ = targets.narrow(1, 0, self.distance - 1).fill_(IGNORE_INDEX);
        (sequence.narrow(1, 0, self.length), targets)
    }

    /// The model: `layers` blocks of width 64 and 4 heads, rotary positions, the window.
    fn config(&self) -> GptConfig {
        GptConfig {
            vocab_size: self.vocab,
            context_length: self.length,
            emb_dim: 64,
            n_heads: 4,
            n_layers: self.layers,
            drop_rate: 0.0,
            pos_encoding: PosEncoding::Rope,
            attention_mask: AttentionMask::SlidingWindow(self.window),
            ..GptConfig::gpt2_small()
        }
    }
}

/// Trains a fresh model on `task` (batch 32, AdamW at 3e-3 with warmup and cosine decay) and
/// returns its accuracy on the predictable positions of 8 new batches.
pub fn copy_task(task: &CopyTask, device: Device, seed: u64) -> Result<f64> {
    ensure!(task.distance >= 2 && task.distance < task.length, "the distance must be in 2..length");
    seed_everything(seed);
    let vs = VarStore::new(device);
    let mut model = GptModel::new(&vs.root(), &task.config())?;
    model.use_fused_kernels();
    let mut optimizer =
        AdamW::new(&vs, AdamWConfig { lr: 3e-3, beta2: 0.99, ..AdamWConfig::default() })?.decay_matrices_only();
    let warmup = (task.steps / 10) as i64;
    let schedule = WarmupCosine {
        initial_lr: 3e-3 / (warmup + 1) as f64,
        peak_lr: 3e-3,
        min_lr: 3e-4,
        warmup_steps: warmup,
        total_steps: task.steps as i64,
    };
    for step in 1..=task.steps {
        let (inputs, targets) = task.draw(32);
        optimizer.zero_grad();
        optimizer.config.lr = schedule.lr(step as i64);
        let loss = cross_entropy(&model.forward_t(&inputs.to_device(device), true), &targets.to_device(device));
        loss.backward();
        optimizer.clip_grad_norm(1.0);
        optimizer.step();
    }
    let _no_grad = tch::no_grad_guard();
    let (mut correct, mut counted) = (0, 0);
    for _ in 0..8 {
        let (inputs, targets) = task.draw(32);
        let predicted = model.forward_t(&inputs.to_device(device), false).argmax(-1, false).to_device(Device::Cpu);
        let scored = targets.ne(IGNORE_INDEX);
        correct += predicted.eq_tensor(&targets).logical_and(&scored).sum(Kind::Int64).int64_value(&[]);
        counted += scored.sum(Kind::Int64).int64_value(&[]);
    }
    Ok(correct as f64 / counted as f64)
}

/// The copy task over layers x distances with a window of 8, as a Markdown table.
fn reach_table(steps: usize, device: Device, seed: u64) -> Result<Vec<String>> {
    const WINDOW: i64 = 8;
    // Each side of the reach of 1, 2 and 3 layers (7, 14, 21 positions back).
    const DISTANCES: [i64; 4] = [8, 15, 16, 23];
    let mut lines = vec![
        format!(
            "Copy task (16 symbols repeating with period D in sequences of 48, window {WINDOW}, rotary positions, \
             {steps} steps each): accuracy on the predictable tokens (chance 0.06), which sit D - 1 positions back; \
             'reach' is layers x (window - 1):"
        ),
        format!("| layers | reach | {} |", DISTANCES.map(|d| format!("D = {d}")).join(" | ")),
        format!("|---:|---:|{}", "---:|".repeat(DISTANCES.len())),
    ];
    for layers in 1..=3 {
        let mut cells = Vec::new();
        for distance in DISTANCES {
            let task = CopyTask { vocab: 16, length: 48, distance, layers, window: WINDOW, steps };
            let accuracy = copy_task(&task, device, seed)?;
            let within = distance - 1 <= layers * (WINDOW - 1);
            cells.push(format!("{accuracy:.2}{}", if within { "" } else { " (out of reach)" }));
        }
        lines.push(format!("| {layers} | {} | {} |", layers * (WINDOW - 1), cells.join(" | ")));
    }
    Ok(lines)
}
