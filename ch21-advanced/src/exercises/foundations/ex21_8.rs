//! Exercise 21.8: the KV cache of a 12-layer, 12-head model with heads of 64 and a context of
//! 1,024 (GPT-2 small's shape). The memory is read off real caches built by the model's
//! decoder in float32 and float16, batch 1 and 8; the attention FLOPs of a 256-token prompt
//! plus 512 new tokens are counted with and without the cache.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::Report;

use crate::exercises::Exercise;
use shared::model::{GptConfig, GptModel};
use tch::{nn, Device, Kind};

pub const EXERCISE: Exercise = Exercise {
    id: "21.8",
    summary:
        "KV-cache memory (float32/float16, batch 1/8) read off real caches; attention FLOPs with and without the cache",
    run: |_| Report::new(&run()?),
};

/// The model of the exercise: 12 layers, 12 heads of 64 (width 768), context 1,024. A tiny
/// vocabulary keeps the model small: the cache does not depend on it.
pub fn config() -> GptConfig {
    GptConfig { vocab_size: 16, ..GptConfig::gpt2_small() }
}

#[derive(Debug, Clone, Serialize)]
pub struct CacheSize {
    pub dtype: String,
    pub batch: i64,
    pub bytes: i64,
    /// `2 (K and V) x layers x batch x heads x context x head size x bytes per number`.
    pub formula_bytes: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_8 {
    pub caches: Vec<CacheSize>,
    pub prompt_tokens: i64,
    pub new_tokens: i64,
    /// Multiply-adds x 2 of the attention scores and weighted sums (`QK^T` and `AV`), all
    /// layers, over the whole generation.
    pub flops_without_cache: i64,
    pub flops_with_cache: i64,
}

/// The FLOPs of `QK^T` and `AV` for `queries` queries over `keys` keys, in every layer and head.
pub fn attention_flops(cfg: &GptConfig, queries: i64, keys: i64) -> i64 {
    2 * 2 * cfg.n_layers * cfg.n_heads * queries * keys * cfg.head_dim()
}

/// Generating `new` tokens after a `prompt`: without a cache, step `i` re-runs all
/// `prompt + i` positions over each other (causal, but the book's code computes the full
/// square); with one, the prompt is processed once and each step runs one query over the
/// keys so far.
pub fn generation_flops(cfg: &GptConfig, prompt: i64, new: i64) -> (i64, i64) {
    let without: i64 = (0..new).map(|i| attention_flops(cfg, prompt + i, prompt + i)).sum();
    let with =
        attention_flops(cfg, prompt, prompt) + (1..new).map(|i| attention_flops(cfg, 1, prompt + i)).sum::<i64>();
    (without, with)
}

pub fn run() -> Result<Ex21_8> {
    let cfg = config();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = {
        let _rng = shared::core::device::global_rng_lock();
        GptModel::new(&vs.root(), &cfg)?
    };
    let mut caches = Vec::new();
    for (kind, name, size) in [(Kind::Float, "float32", 4), (Kind::Half, "float16", 2)] {
        vs.set_kind(kind); // the cache takes the weights' dtype
        for batch in [1, 8] {
            let bytes = model.new_cache(batch).bytes();
            let formula_bytes = 2 * cfg.n_layers * batch * cfg.n_heads * cfg.context_length * cfg.head_dim() * size;
            caches.push(CacheSize { dtype: name.to_string(), batch, bytes, formula_bytes });
        }
    }
    let (prompt_tokens, new_tokens) = (256, 512);
    let (flops_without_cache, flops_with_cache) = generation_flops(&cfg, prompt_tokens, new_tokens);
    Ok(Ex21_8 { caches, prompt_tokens, new_tokens, flops_without_cache, flops_with_cache })
}

impl fmt::Display for Ex21_8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "KV cache of 12 layers x 12 heads x head size 64 x context 1,024 (keys and values):")?;
        for c in &self.caches {
            let mib = c.bytes as f64 / (1024.0 * 1024.0);
            writeln!(
                f,
                "  {:7} batch {}: {:>12} bytes = {mib:.0} MiB (formula: {})",
                c.dtype, c.batch, c.bytes, c.formula_bytes
            )?;
        }
        writeln!(
            f,
            "Attention FLOPs (QK^T and AV) for a {}-token prompt and {} new tokens:",
            self.prompt_tokens, self.new_tokens
        )?;
        writeln!(
            f,
            "  without a cache: {:.3e} (every step re-attends over the whole sequence)",
            self.flops_without_cache as f64
        )?;
        writeln!(f, "  with a cache:    {:.3e} (one new query per step)", self.flops_with_cache as f64)?;
        write!(
            f,
            "  ratio: {:.0}x fewer with the cache; the cache trades this compute for the memory above",
            self.flops_without_cache as f64 / self.flops_with_cache as f64
        )
    }
}
