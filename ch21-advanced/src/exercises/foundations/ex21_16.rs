//! Exercise 21.16: generation with and without the key/value cache. Both loops are written
//! out here on `shared`'s model: the uncached one re-runs the whole sequence for every new
//! token (listing 5.4), the cached one feeds only the newest token through
//! [`shared::generate::Decoder`], whose attention layers append to their cache. Greedy
//! decoding makes the two produce the same tokens; the wall times give the speedup, plotted
//! against the number of new tokens.

use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::Report;

use crate::exercises::Exercise;
use shared::app::plot::{Chart, Series, PALETTE};
use shared::generate::Decoder;
use shared::model::{GptConfig, GptModel};
use tch::{nn::VarStore, Kind, Tensor};

pub const EXERCISE: Exercise = Exercise {
    id: "21.16",
    summary: "KV-cached vs uncached greedy generation of 100, 200 and 500 tokens: times, speedup (PNG), same tokens",
    run: |context| Report::new(&run(context, &[100, 200, 500])?),
};

/// The mini-GPT's shape (4 layers, 4 heads, width 128) with room for 16 + 500 tokens.
pub fn config() -> GptConfig {
    GptConfig {
        vocab_size: 65,
        context_length: 1024,
        emb_dim: 128,
        n_heads: 4,
        n_layers: 4,
        drop_rate: 0.0,
        qkv_bias: false,
        ..GptConfig::gpt2_small()
    }
}

/// The next token of each row, `(B, 1)`: the argmax of its logits `(B, V)`.
fn greedy(logits: &Tensor) -> Tensor {
    logits.argmax(-1, true)
}

/// Without a cache: every step runs the model on the whole sequence so far.
pub fn generate_uncached(model: &GptModel, prompt: &Tensor, new_tokens: i64) -> Tensor {
    let _no_grad = tch::no_grad_guard();
    let mut ids = prompt.shallow_clone();
    for _ in 0..new_tokens {
        let next = greedy(&model.forward_t(&ids, false).select(1, -1));
        ids = Tensor::cat(&[ids, next], 1);
    }
    ids
}

/// With the cache: the prompt once, then one token per step.
pub fn generate_cached(model: &GptModel, prompt: &Tensor, new_tokens: i64) -> Result<Tensor> {
    let _no_grad = tch::no_grad_guard();
    let mut decoder = Decoder::new(model, prompt.size()[0]);
    let mut next = greedy(&decoder.prefill(prompt)?);
    for step in 0..new_tokens {
        if step + 1 < new_tokens {
            let logits = decoder.step(&next)?;
            next = greedy(&logits);
        } else {
            // The last token needs no forward pass of its own.
            return Ok(Tensor::cat(&[decoder.tokens().shallow_clone(), next], 1));
        }
    }
    Ok(decoder.tokens().shallow_clone())
}

#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub new_tokens: i64,
    pub uncached_seconds: f64,
    pub cached_seconds: f64,
    pub speedup: f64,
    pub same_tokens: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_16 {
    pub prompt_tokens: i64,
    pub timings: Vec<Timing>,
    pub figure: PathBuf,
}

pub fn run(context: &RunContext, lengths: &[i64]) -> Result<Ex21_16> {
    let cfg = config();
    let prompt_tokens = 16;
    ensure!(
        lengths.iter().all(|&n| n > 0 && prompt_tokens + n <= cfg.context_length),
        "lengths must be between 1 and {}",
        cfg.context_length - prompt_tokens
    );
    let vs = VarStore::new(context.device);
    let (model, prompt) = {
        let _rng = shared::core::device::global_rng_lock();
        shared::core::device::seed_everything(context.seed);
        let model = GptModel::new(&vs.root(), &cfg)?;
        shared::core::init::gpt2_init(&vs, cfg.n_layers);
        let prompt = Tensor::randint(cfg.vocab_size, [1, prompt_tokens], (Kind::Int64, context.device));
        (model, prompt)
    };
    // One short run of each first, so that neither pays the allocator's first-use costs.
    let _ = generate_uncached(&model, &prompt, 4);
    let _ = generate_cached(&model, &prompt, 4)?;
    let mut timings = Vec::new();
    for &new_tokens in lengths {
        let start = Instant::now();
        let uncached = generate_uncached(&model, &prompt, new_tokens);
        let uncached_seconds = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let cached = generate_cached(&model, &prompt, new_tokens)?;
        let cached_seconds = start.elapsed().as_secs_f64();
        timings.push(Timing {
            new_tokens,
            uncached_seconds,
            cached_seconds,
            speedup: uncached_seconds / cached_seconds,
            same_tokens: uncached.equal(&cached),
        });
    }
    let figure = context.out_dir.join("ex21_16-speedup.png");
    let xs: Vec<f64> = timings.iter().map(|t| t.new_tokens as f64).collect();
    let ys: Vec<f64> = timings.iter().map(|t| t.speedup).collect();
    Chart {
        series: vec![Series { xs: &xs, ys: &ys, color: PALETTE[0], label: "uncached time / cached time" }],
        x_label: "new tokens",
        y_label: "speedup",
        top_axis: None,
        width: 640,
        height: 420,
    }
    .write_png(&figure)?;
    Ok(Ex21_16 { prompt_tokens, timings, figure })
}

impl fmt::Display for Ex21_16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Greedy decoding after a {}-token prompt, mini-GPT shape with context 1,024:", self.prompt_tokens)?;
        writeln!(f, "  new tokens | uncached (s) | cached (s) | speedup | same tokens")?;
        for t in &self.timings {
            writeln!(
                f,
                "  {:>10} | {:>12.3} | {:>10.3} | {:>6.1}x | {}",
                t.new_tokens, t.uncached_seconds, t.cached_seconds, t.speedup, t.same_tokens
            )?;
        }
        writeln!(
            f,
            "Without the cache, step t runs all layers on t tokens, so n new tokens cost about n^2/2 token passes; \
             with it each step runs one token (its attention still reads t cached keys), so the work grows about \
             linearly and the speedup grows with the length."
        )?;
        write!(f, "Speedup chart: {}", self.figure.display())
    }
}
