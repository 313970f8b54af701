//! Exercise 21.28: multi-head vs grouped-query (4 and 2 KV heads) vs multi-query attention on
//! the mini-GPT with 8 query heads: parameters, KV-cache bytes, cached generation speed and
//! validation loss; GPT-2 small's cache sizes by the same per-token formula.

use std::time::Instant;

use anyhow::Result;
use shared::app::cli::RunContext;
use shared::generate::generate_greedy_cached;
use shared::model::{GptConfig, GptModel};
use tch::{Kind, Tensor};

use super::{Findings, Plan, Trained};
use crate::minigpt::MiniGptOptions;

pub struct Gqa;

impl Plan for Gqa {
    fn variants(&self, base: &MiniGptOptions) -> Vec<(String, MiniGptOptions)> {
        [(8, "MHA (8 KV heads)"), (4, "GQA (4 KV heads)"), (2, "GQA (2 KV heads)"), (1, "MQA (1 KV head)")]
            .into_iter()
            .map(|(kv, name)| (name.to_string(), MiniGptOptions { n_heads: 8, n_kv_heads: Some(kv), ..base.clone() }))
            .collect()
    }

    fn columns(&self) -> Vec<String> {
        vec!["cached tokens/s (batch 8)".to_string()]
    }

    fn measure(&mut self, trained: &Trained) -> Result<Vec<Option<f64>>> {
        Ok(vec![Some(cached_tokens_per_second(trained.model, 8, trained.context.seed)?)])
    }

    fn findings(&mut self, _: &RunContext, _: &MiniGptOptions) -> Result<Findings> {
        Ok(Findings { notes: gpt2_small_cache_sizes(), charts: Vec::new() })
    }
}

/// Cached greedy generation speed: `batch` sequences filling the context after an 8-token
/// prompt, so every step reads the cache; tokens per second, the best of 5 runs (the runs
/// are short, and the best is the least disturbed by other work on the machine).
pub fn cached_tokens_per_second(model: &GptModel, batch: i64, seed: u64) -> Result<f64> {
    let _no_grad = tch::no_grad_guard();
    let device = model.tok_emb.ws.device();
    shared::core::device::seed_everything(seed);
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
