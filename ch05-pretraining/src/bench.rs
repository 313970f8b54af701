//! The performance commands: `bench-step` times one training step of section 5.2 split into
//! forward pass (with the loss), backward pass and optimizer, in book or fast mode, against
//! the float32 matrix-multiply rate measured in the same run; `bench-generate` times decoding
//! over the KV cache in float32 and with int8 weights, one prompt at a time and batched, and
//! compares the int8 model's perplexity with float32's. `scripts/bench-compare.sh` runs both
//! beside the book's PyTorch code (`scripts/reference/bench_pytorch.py`).

use std::fmt;
use std::time::Instant;

use anyhow::{ensure, Result};
use serde::Serialize;
use shared::app::model_source::ModelSource;
use shared::core::device::{device_name, seed_everything};
use shared::core::timing::{median_seconds, synchronize, timed};
use shared::generate::batch::generate_batch;
use shared::generate::{generate_greedy_cached, Sampler, Sampling};
use shared::model::{GptConfig, GptModel};
use shared::train::{calc_loss_batch, AdamW, AdamWConfig, TrainMode};
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::decode::text_losses;
use crate::pretrain::loaders;

/// Model FLOPs of one training step (forward and backward): `6 N` per token for the `N`
/// weights of the matrix products (attention and feed-forward projections, output heads;
/// embedding lookups do no products), plus `12 L T d` per token for attention's two products
/// over `T` keys (the PaLM paper's accounting, appendix B).
pub fn train_flops_per_token(cfg: &GptConfig, tokens_per_row: i64) -> f64 {
    let (d, kv) = (cfg.emb_dim, cfg.kv_heads() * cfg.head_dim());
    let per_layer = (d * d + 2 * d * kv) + d * d + 8 * d * d; // query, key, value; output; feed-forward
    let matmul_weights = cfg.n_layers * per_layer + cfg.n_future_heads * d * cfg.vocab_size;
    6.0 * matmul_weights as f64 + 12.0 * (cfg.n_layers * tokens_per_row * d) as f64
}

/// GFLOP/s of a matrix product in `kind` shaped like the feed-forward layer's:
/// `(rows, d) x (d, 4d)`, the median of 5 after 2 warm-up runs.
pub fn matmul_gflops(rows: i64, emb_dim: i64, kind: Kind, device: Device) -> f64 {
    let a = Tensor::randn([rows, emb_dim], (kind, device));
    let b = Tensor::randn([emb_dim, 4 * emb_dim], (kind, device));
    let seconds = median_seconds(device, 2, 5, || {
        let _ = a.matmul(&b);
    });
    2.0 * (rows * emb_dim * 4 * emb_dim) as f64 / seconds / 1e9
}

#[derive(Debug, Clone)]
pub struct StepBenchOptions {
    pub config: GptConfig,
    /// How the config was named on the command line.
    pub config_name: String,
    pub batch_size: usize,
    /// Timed steps, after `warmup` untimed ones.
    pub steps: usize,
    pub warmup: usize,
    pub mode: TrainMode,
}

/// One `bench-step` run: mean seconds per timed step and phase, and what they mean.
#[derive(Debug, Clone, Serialize)]
pub struct StepBench {
    pub model: String,
    pub mode: TrainMode,
    pub device: String,
    pub threads: i32,
    pub batch_size: usize,
    pub context_length: i64,
    pub steps: usize,
    pub forward_s: f64,
    pub backward_s: f64,
    pub optimizer_s: f64,
    pub step_s: f64,
    pub tokens_per_s: f64,
    pub model_gflops_per_step: f64,
    pub achieved_gflops: f64,
    pub matmul_gflops: f64,
    /// Model FLOPs utilisation: achieved over the measured matmul rate.
    pub mfu: f64,
    /// The training loss of every step, warm-up included.
    pub losses: Vec<f64>,
}

/// Trains a seeded model of `options.config` on The Verdict's training batches (the book's
/// loader, cycled) and times each step.
pub fn bench_step(text: &str, options: &StepBenchOptions, device: Device, seed: u64) -> Result<StepBench> {
    ensure!(options.steps > 0, "--steps must be at least 1");
    let cfg = &options.config;
    cfg.validate()?;
    let context = cfg.context_length as usize;
    seed_everything(seed);
    let (train, _) = loaders(text, 0.9, context, options.batch_size)?;
    let batches: Vec<_> = train.iter().collect();
    seed_everything(seed);
    let vs = VarStore::new(device);
    let mut model = GptModel::new(&vs.root(), cfg)?;
    let mut optimizer = AdamW::new(&vs, AdamWConfig::default())?;
    options.mode.prepare(&mut model, &mut optimizer)?;

    let (mut forward, mut backward, mut update) = (0.0, 0.0, 0.0);
    let mut losses = Vec::new();
    let lap = |start: &mut Instant| {
        synchronize(device);
        let seconds = start.elapsed().as_secs_f64();
        *start = Instant::now();
        seconds
    };
    for step in 0..options.warmup + options.steps {
        let batch = &batches[step % batches.len()];
        synchronize(device);
        let mut start = Instant::now();
        optimizer.zero_grad();
        let zero = lap(&mut start);
        let loss = options.mode.forward(device, || calc_loss_batch(&model, batch, device, true));
        let f = lap(&mut start);
        loss.backward();
        let b = lap(&mut start);
        optimizer.step();
        let o = lap(&mut start) + zero;
        losses.push(loss.double_value(&[]));
        if step >= options.warmup {
            (forward, backward, update) = (forward + f, backward + b, update + o);
        }
    }
    let n = options.steps as f64;
    let (forward_s, backward_s, optimizer_s) = (forward / n, backward / n, update / n);
    let step_s = forward_s + backward_s + optimizer_s;
    let tokens = (options.batch_size * context) as f64;
    let flops = train_flops_per_token(cfg, cfg.context_length) * tokens;
    // The dtype the step's matrix products compute in: bfloat16 under fast mode's autocast.
    let kind = if options.mode == TrainMode::Fast && device.is_cuda() { Kind::BFloat16 } else { Kind::Float };
    let matmul = matmul_gflops(tokens as i64, cfg.emb_dim, kind, device);
    let achieved = flops / step_s / 1e9;
    Ok(StepBench {
        model: options.config_name.clone(),
        mode: options.mode,
        device: device_name(device),
        threads: tch::get_num_threads(),
        batch_size: options.batch_size,
        context_length: cfg.context_length,
        steps: options.steps,
        forward_s,
        backward_s,
        optimizer_s,
        step_s,
        tokens_per_s: tokens / step_s,
        model_gflops_per_step: flops / 1e9,
        achieved_gflops: achieved,
        matmul_gflops: matmul,
        mfu: achieved / matmul,
        losses,
    })
}

impl fmt::Display for StepBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Training step, {} mode: {} at batch {} x {} tokens on {} ({} threads), mean of {} steps",
            match self.mode {
                TrainMode::Book => "book",
                TrainMode::Fast => "fast",
            },
            self.model,
            self.batch_size,
            self.context_length,
            self.device,
            self.threads,
            self.steps
        )?;
        writeln!(f)?;
        writeln!(f, "| forward + loss | backward | optimizer | step | tokens/s | model GFLOP | GFLOP/s | matmul GFLOP/s | MFU |")?;
        writeln!(f, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        writeln!(
            f,
            "| {:.3} s | {:.3} s | {:.3} s | {:.3} s | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} % |",
            self.forward_s,
            self.backward_s,
            self.optimizer_s,
            self.step_s,
            self.tokens_per_s,
            self.model_gflops_per_step,
            self.achieved_gflops,
            self.matmul_gflops,
            100.0 * self.mfu
        )?;
        let losses: Vec<String> = self.losses.iter().map(|l| format!("{l:.4}")).collect();
        write!(f, "\nLosses: {}", losses.join(", "))
    }
}

/// Prompts of different lengths for the batched rows (GPT-2 tokens once encoded).
pub const BATCH_PROMPTS: [&str; 8] = [
    "Every effort moves you",
    "The quick brown fox jumps over the lazy dog, and then",
    "I had always thought Jack Gisburn rather a cheap genius",
    "Hello, I am",
    "In the beginning the painter",
    "She looked at the picture on the wall for a long time before she said",
    "Once upon a time",
    "The history of the world is",
];

#[derive(Debug, Clone)]
pub struct GenerateBenchOptions {
    pub source: ModelSource,
    pub new_tokens: i64,
    /// Prompts decoded together in the batched rows (at most [`BATCH_PROMPTS`]'s 8).
    pub batch: usize,
    /// Add the int8 rows (CPU only).
    pub int8: bool,
    /// Compare the perplexity of float32 and int8 on The Verdict's validation part.
    pub perplexity: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerateRow {
    pub name: String,
    pub sequences: usize,
    pub new_tokens: i64,
    pub seconds: f64,
    pub tokens_per_s: f64,
    /// Against the float32 KV-cache row (batch rows: against decoding the same prompts one
    /// at a time).
    pub speedup: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerateBench {
    pub model: String,
    pub device: String,
    pub threads: i32,
    pub rows: Vec<GenerateRow>,
    /// Whether every batched float32 row decoded the tokens it decodes alone.
    pub batched_tokens_identical: bool,
    /// Validation perplexity on The Verdict (last 10 %), float32 and int8.
    pub perplexity_float32: Option<f64>,
    pub perplexity_int8: Option<f64>,
}

/// Greedy decoding of `new_tokens` tokens after "Hello, I am", as the book's KV-cache script,
/// after an untimed warm-up of 8 tokens (thread pools, first allocations).
fn single_row(model: &GptModel, name: &str, new_tokens: i64, device: Device) -> Result<GenerateRow> {
    let prompt = Tensor::from_slice(&[15496i64, 11, 314, 716]).view([1, 4]).to_device(device);
    let _warm_up = generate_greedy_cached(model, &prompt, new_tokens.min(8), None)?;
    let (_, seconds) = timed(device, || generate_greedy_cached(model, &prompt, new_tokens, None))?;
    Ok(GenerateRow {
        name: name.into(),
        sequences: 1,
        new_tokens,
        seconds,
        tokens_per_s: new_tokens as f64 / seconds,
        speedup: 1.0,
    })
}

pub fn bench_generate(text: &str, options: &GenerateBenchOptions, device: Device, seed: u64) -> Result<GenerateBench> {
    ensure!(options.new_tokens > 0, "--max-new-tokens must be at least 1");
    ensure!((1..=BATCH_PROMPTS.len()).contains(&options.batch), "--batch takes 1 to {}", BATCH_PROMPTS.len());
    ensure!(!options.int8 || device == Device::Cpu, "the int8 rows run on the CPU only (fbgemm's kernels)");
    let mut loaded = options.source.load(device, seed)?;
    let model = &mut loaded.model;
    let tokenizer = model.cfg.tokenizer.build()?;
    let prompts: Vec<Vec<i64>> = BATCH_PROMPTS[..options.batch]
        .iter()
        .map(|p| Ok(tokenizer.encode(p)?.into_iter().map(i64::from).collect()))
        .collect::<Result<_>>()?;
    let mut rows = vec![single_row(model, "KV cache, float32", options.new_tokens, device)?];
    let base = rows[0].seconds;

    // The same prompts one at a time, then together.
    let greedy = Sampling { eos_id: None, ..Sampling::GREEDY };
    let mut alone = Vec::new();
    let (_, one_by_one) = timed(device, || {
        for prompt in &prompts {
            let idx = Tensor::from_slice(prompt).view([1, -1]).to_device(device);
            let out = generate_greedy_cached(model, &idx, options.new_tokens, None)?;
            alone.push(Vec::<i64>::try_from(out.view([-1]).narrow(0, prompt.len() as i64, options.new_tokens))?);
        }
        Ok(())
    })?;
    let (together, batched) =
        timed(device, || generate_batch(model, &prompts, options.new_tokens, &mut Sampler::new(&greedy)?))?;
    let tokens = (options.batch as i64) * options.new_tokens;
    let row = |name: String, seconds: f64, speedup: f64| GenerateRow {
        name,
        sequences: options.batch,
        new_tokens: tokens,
        seconds,
        tokens_per_s: tokens as f64 / seconds,
        speedup,
    };
    rows.push(row(format!("KV cache, float32, {} prompts one at a time", options.batch), one_by_one, 1.0));
    rows.push(row(format!("KV cache, float32, {} prompts batched", options.batch), batched, one_by_one / batched));

    let perplexity = |model: &GptModel| -> Result<f64> {
        let context = model.cfg.context_length.min(256) as usize;
        Ok(text_losses(model, text, 0.9, context, seed)?.val_perplexity)
    };
    let perplexity_float32 = options.perplexity.then(|| perplexity(model)).transpose()?;
    let mut perplexity_int8 = None;
    if options.int8 {
        model.use_int8_kernels()?;
        let mut int8 = single_row(model, "KV cache, int8 (fbgemm)", options.new_tokens, device)?;
        int8.speedup = base / int8.seconds;
        rows.push(int8);
        let (_, batched_int8) =
            timed(device, || generate_batch(model, &prompts, options.new_tokens, &mut Sampler::new(&greedy)?))?;
        rows.push(row(
            format!("KV cache, int8, {} prompts batched", options.batch),
            batched_int8,
            one_by_one / batched_int8,
        ));
        perplexity_int8 = options.perplexity.then(|| perplexity(model)).transpose()?;
    }
    // The same model with LibTorch's fused kernels (layer norm, GELU, scaled dot-product
    // attention over stacked query/key/value weights): fewer kernels per token, which is
    // what bounds decoding a small model on a GPU, where each kernel launch costs more than
    // its arithmetic.
    let fused = {
        let mut fused = options.source.load(device, seed)?;
        fused.model.use_fused_kernels();
        let mut row = single_row(&fused.model, "KV cache, float32, fused kernels", options.new_tokens, device)?;
        row.speedup = base / row.seconds;
        row
    };
    rows.push(fused);
    Ok(GenerateBench {
        model: loaded.description,
        device: device_name(device),
        threads: tch::get_num_threads(),
        rows,
        batched_tokens_identical: alone == together,
        perplexity_float32,
        perplexity_int8,
    })
}

impl fmt::Display for GenerateBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Greedy decoding with {} on {} ({} threads)", self.model, self.device, self.threads)?;
        writeln!(f)?;
        writeln!(f, "| decoding | sequences | new tokens | seconds | tokens/s | speedup |")?;
        write!(f, "|---|---:|---:|---:|---:|---:|")?;
        for r in &self.rows {
            write!(
                f,
                "\n| {} | {} | {} | {:.2} | {:.1} | {:.2}x |",
                r.name, r.sequences, r.new_tokens, r.seconds, r.tokens_per_s, r.speedup
            )?;
        }
        let identical = self.batched_tokens_identical;
        write!(f, "\n\nBatched float32 rows decode the tokens each prompt decodes alone: {identical}")?;
        if let Some(float) = self.perplexity_float32 {
            write!(f, "\nValidation perplexity on The Verdict: float32 {float:.3}")?;
            if let Some(int8) = self.perplexity_int8 {
                write!(f, ", int8 {int8:.3} ({:+.2} %)", 100.0 * (int8 / float - 1.0))?;
            }
        }
        Ok(())
    }
}
