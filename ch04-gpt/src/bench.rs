//! `bench-generate`: tokens per second of greedy generation with and without the KV cache.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::core::device::{device_name, dtype_name, seed_everything};
use shared::core::timing::timed;
use shared::generate::{generate_greedy_cached, generate_text_simple};
use shared::model::{GptConfig, GptModel};
use tch::{nn, Device, Kind, Tensor};

#[derive(Debug, Clone, Serialize)]
pub struct GenerateRow {
    pub dtype: String,
    pub without_cache_tokens_per_s: f64,
    pub with_cache_tokens_per_s: f64,
    pub speedup: f64,
    /// Whether both decodings produced the same tokens.
    pub identical: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerateBench {
    pub model: String,
    pub device: String,
    pub threads: i32,
    pub new_tokens: i64,
    pub rows: Vec<GenerateRow>,
}

/// Generates `new_tokens` tokens from "Hello, I am" with a seeded `cfg` model in each dtype.
pub fn run(
    cfg: &GptConfig,
    model_name: &str,
    new_tokens: i64,
    dtypes: &[Kind],
    device: Device,
) -> Result<GenerateBench> {
    let prompt = Tensor::from_slice(&[15496i64, 11, 314, 716]).view([1, 4]).to_device(device);
    let mut rows = Vec::new();
    for &dtype in dtypes {
        seed_everything(123);
        let mut vs = nn::VarStore::new(device);
        let model = GptModel::new(&vs.root(), cfg)?;
        vs.set_kind(dtype);
        let (plain, plain_s) = timed(device, || generate_text_simple(&model, &prompt, new_tokens, cfg.context_length))?;
        let (cached, cached_s) = timed(device, || generate_greedy_cached(&model, &prompt, new_tokens, None))?;
        rows.push(GenerateRow {
            dtype: dtype_name(dtype),
            without_cache_tokens_per_s: new_tokens as f64 / plain_s,
            with_cache_tokens_per_s: new_tokens as f64 / cached_s,
            speedup: plain_s / cached_s,
            identical: plain.equal(&cached),
        });
    }
    Ok(GenerateBench {
        model: model_name.to_string(),
        device: device_name(device),
        threads: tch::get_num_threads(),
        new_tokens,
        rows,
    })
}

impl fmt::Display for GenerateBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Greedy generation of {} tokens with {} on {} ({} threads)",
            self.new_tokens, self.model, self.device, self.threads
        )?;
        writeln!(f)?;
        writeln!(f, "| dtype | without cache (tokens/s) | with KV cache (tokens/s) | speedup | same tokens |")?;
        write!(f, "|---|---:|---:|---:|---|")?;
        for r in &self.rows {
            write!(
                f,
                "\n| {} | {:.1} | {:.1} | {:.1}x | {} |",
                r.dtype, r.without_cache_tokens_per_s, r.with_cache_tokens_per_s, r.speedup, r.identical
            )?;
        }
        Ok(())
    }
}
