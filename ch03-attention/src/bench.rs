//! `bench`: forward and forward+backward time of each multi-head attention variant.

use std::fmt;

use anyhow::{ensure, Result};
use serde::Serialize;
use shared::core::device::{device_name, dtype_name, seed_everything};
use shared::core::timing::median_seconds;
use tch::{nn, Device, Kind, Tensor};

use crate::variants::{AttentionVariants, Variant};

/// What to measure; the default is GPT-2 small's attention on a batch of 8 x 1,024 tokens.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub batch: i64,
    pub tokens: i64,
    pub emb_dim: i64,
    pub heads: i64,
    /// Timed runs per measurement (after one warm-up run); the median is reported.
    pub repeats: usize,
    pub dtypes: Vec<Kind>,
    pub device: Device,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            batch: 8,
            tokens: 1024,
            emb_dim: 768,
            heads: 12,
            repeats: 3,
            dtypes: vec![Kind::Float, Kind::BFloat16],
            device: Device::Cpu,
        }
    }
}

/// One measured variant.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub variant: Variant,
    pub dtype: String,
    pub forward_ms: f64,
    pub forward_backward_ms: f64,
}

/// The whole table, with what it ran on.
#[derive(Debug, Clone, Serialize)]
pub struct BenchTable {
    pub device: String,
    pub threads: i32,
    pub shape: String,
    pub repeats: usize,
    pub rows: Vec<BenchRow>,
}

/// Median of `repeats` timed runs after one warm-up, in milliseconds.
fn median_ms(device: Device, repeats: usize, f: impl FnMut()) -> f64 {
    median_seconds(device, 1, repeats, f) * 1e3
}

/// Times every variant in every dtype, handing each row to `on_row` as soon as it is measured.
pub fn run(config: &BenchConfig, mut on_row: impl FnMut(&BenchRow)) -> Result<BenchTable> {
    ensure!(config.batch > 0 && config.tokens > 0 && config.repeats > 0, "batch, tokens and repeats must be positive");
    ensure!(config.emb_dim > 0 && config.heads > 0, "emb-dim and heads must be positive");
    ensure!(config.emb_dim % config.heads == 0, "emb_dim must be divisible by heads");
    // The book's module materialises (batch, heads, tokens, tokens) float32 scores.
    let scores = [config.batch, config.heads, config.tokens, config.tokens, 4]
        .iter()
        .try_fold(1i64, |acc, &n| acc.checked_mul(n));
    let budget = shared::core::device::memory_budget();
    ensure!(
        scores.is_some_and(|bytes| budget.is_none_or(|budget| bytes <= budget.bytes)),
        "batch {} x {} heads x {} x {} tokens of attention scores do not fit in the memory this process can \
         allocate (the bound: {})",
        config.batch,
        config.heads,
        config.tokens,
        config.tokens,
        budget.map_or("its size", |budget| budget.limit)
    );
    let mut rows = Vec::new();
    for &dtype in &config.dtypes {
        seed_everything(123);
        let mut vs = nn::VarStore::new(config.device);
        let variants = AttentionVariants::new(&vs.root(), config.emb_dim, config.tokens, config.heads)?;
        vs.set_kind(dtype);
        let x = Tensor::randn([config.batch, config.tokens, config.emb_dim], (dtype, config.device));
        for variant in Variant::ALL {
            let forward_ms = median_ms(config.device, config.repeats, || {
                let _ = tch::no_grad(|| variants.forward(variant, &x));
            });
            let forward_backward_ms = median_ms(config.device, config.repeats, || {
                for p in variants.parameters() {
                    let mut grad = p.grad();
                    if grad.defined() {
                        let _ = grad.zero_();
                    }
                }
                variants.forward(variant, &x).sum(Kind::Float).backward();
            });
            let row = BenchRow { variant, dtype: dtype_name(dtype), forward_ms, forward_backward_ms };
            on_row(&row);
            rows.push(row);
        }
    }
    Ok(BenchTable { rows, ..BenchTable::empty(config) })
}

impl BenchTable {
    /// The table's header information, without rows.
    pub fn empty(config: &BenchConfig) -> Self {
        Self {
            device: device_name(config.device),
            threads: tch::get_num_threads(),
            shape: format!(
                "batch {}, {} tokens, d_in = d_out = {}, {} heads",
                config.batch, config.tokens, config.emb_dim, config.heads
            ),
            repeats: config.repeats,
            rows: Vec::new(),
        }
    }
}

impl fmt::Display for BenchRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "| {} | {} | {:.1} | {:.1} |", self.variant, self.dtype, self.forward_ms, self.forward_backward_ms)
    }
}

impl fmt::Display for BenchTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Multi-head attention on {} ({} threads): {}; median of {} runs",
            self.device, self.threads, self.shape, self.repeats
        )?;
        writeln!(f)?;
        writeln!(f, "| variant | dtype | forward (ms) | forward + backward (ms) |")?;
        write!(f, "|---|---|---:|---:|")?;
        for row in &self.rows {
            write!(
                f,
                "\n| {} | {} | {:.1} | {:.1} |",
                row.variant, row.dtype, row.forward_ms, row.forward_backward_ms
            )?;
        }
        Ok(())
    }
}
