//! Exercise 21.34: post-training quantization of every linear layer of the large model
//! ([`shared::gpt::Quantization`]): naive round-to-nearest on a fixed grid, absmax (symmetric)
//! and zero-point (asymmetric) grids, per tensor and per channel, at 8, 6, 4, 3 and 2 bits.
//! Each is measured by the validation perplexity, the model's bytes with the weights packed,
//! and greedy generation speed. The quantized layers compute with the dequantized weight (the
//! simulation; slower than float32, since it dequantizes at every call); 8-bit absmax per
//! channel also runs with LibTorch's int8 weight-only kernel (`_weight_int8pack_mm`), the one
//! real int8 matrix product LibTorch's C++ API offers without its quantized-tensor engine.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::cli::RunContext;
use shared::exercise::{Exercise, Report};
use shared::generate::generate_greedy_cached;
use shared::gpt::{GptModel, Granularity, LinearWeight, QuantScheme, Quantization};
use shared::timing::median_seconds;
use tch::Tensor;

use crate::minigpt::split_loss;
use crate::models::{self, Budget, Sizes, MODEL_FLAGS};

pub const EXERCISE: Exercise = Exercise {
    id: "21.34",
    summary: "post-training quantization of the large model's linear layers: fixed-grid round-to-nearest, absmax and zero-point, per tensor and per channel, at 8, 6, 4, 3 and 2 bits: validation perplexity, bytes, tokens/s, and LibTorch's int8 weight-only kernel",
    run: |context| Report::new(&run(context, &Budget::from_flags(&MODEL_FLAGS.get()), Sizes::STANDARD, 50)?),
};

pub const BITS: [u8; 5] = [8, 6, 4, 3, 2];

/// Every quantization of the table, bits first.
pub fn quantizations() -> Vec<Quantization> {
    let mut all = Vec::new();
    for bits in BITS {
        all.push(Quantization { bits, scheme: QuantScheme::Fixed, granularity: Granularity::PerTensor });
        for scheme in [QuantScheme::Absmax, QuantScheme::ZeroPoint] {
            for granularity in [Granularity::PerTensor, Granularity::PerChannel] {
                all.push(Quantization { bits, scheme, granularity });
            }
        }
    }
    all
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `None`: the float32 model.
    pub quantization: Option<Quantization>,
    pub int8_kernel: bool,
    pub perplexity: f64,
    /// Perplexity over float32's.
    pub relative: f64,
    pub bytes: i64,
    pub tokens_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Result21_34 {
    pub model: String,
    pub validation_batches: usize,
    pub generated_tokens: i64,
    pub rows: Vec<Row>,
}

/// Runs `measure` on `model` with its linear layers quantized (`None`: as they are), then
/// gives the layers their float weights back.
fn with_quantized<T>(
    model: &mut GptModel,
    quantization: Option<Quantization>,
    int8_kernel: bool,
    measure: impl FnOnce(&mut GptModel) -> Result<T>,
) -> Result<T> {
    let dense: Vec<Tensor> =
        model.linear_layers_mut().into_iter().map(|(_, layer)| layer.ws().shallow_clone()).collect();
    let mut quantize = || -> Result<()> {
        if let Some(quantization) = quantization {
            model.quantize(quantization)?;
        }
        if int8_kernel {
            for (_, layer) in model.linear_layers_mut() {
                if let LinearWeight::Quantized(q) = &mut layer.weight {
                    q.use_int8_kernel()?;
                }
            }
        }
        Ok(())
    };
    let result = quantize().and_then(|()| measure(model));
    for ((_, layer), weight) in model.linear_layers_mut().into_iter().zip(dense) {
        layer.weight = LinearWeight::Dense(weight);
    }
    result
}

pub fn run(context: &RunContext, budget: &Budget, sizes: Sizes, validation_batches: usize) -> Result<Result21_34> {
    let mut large = models::large(context, &MODEL_FLAGS.get(), budget)?;
    let text = budget.corpus(context)?;
    let prompt = sizes.prompts(context, budget)?.remove(0);
    let train_ratio = budget.large.train_ratio;
    let model = &mut large.loaded.model;
    let device = context.device;
    let prompt_ids: Vec<i64> = model.cfg.tokenizer.build()?.encode(&prompt)?.into_iter().map(i64::from).collect();
    let prompt_ids = Tensor::from_slice(&prompt_ids).view([1, -1]).to_device(device);
    // Generation inside the context, where each token is one cached step.
    let new_tokens = sizes.new_tokens.min(model.cfg.context_length - prompt_ids.size()[1]).max(1);
    let mut measure = |quantization: Option<Quantization>, int8_kernel: bool| -> Result<Row> {
        with_quantized(model, quantization, int8_kernel, |m| {
            let loss = split_loss(m, &text, train_ratio, false, validation_batches, context.seed)?;
            let seconds = median_seconds(device, 1, 3, || {
                let _ = generate_greedy_cached(m, &prompt_ids, new_tokens, None);
            });
            Ok(Row {
                quantization,
                int8_kernel,
                perplexity: loss.exp(),
                relative: 1.0,
                bytes: m.parameter_bytes(),
                tokens_per_second: new_tokens as f64 / seconds,
            })
        })
    };
    let float = measure(None, false)?;
    let mut rows = vec![float.clone()];
    for quantization in quantizations() {
        rows.push(measure(Some(quantization), false)?);
    }
    if device == tch::Device::Cpu {
        rows.push(measure(Some(Quantization::INT8), true)?);
    }
    for row in &mut rows {
        row.relative = row.perplexity / float.perplexity;
    }
    Ok(Result21_34 { model: large.name, validation_batches, generated_tokens: new_tokens, rows })
}

impl fmt::Display for Result21_34 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: validation perplexity over {} batches, greedy generation of {} tokens (median of 3)",
            self.model, self.validation_batches, self.generated_tokens
        )?;
        writeln!(f, "| weights | perplexity | vs float32 | bytes | tokens/s |")?;
        writeln!(f, "|---|---:|---:|---:|---:|")?;
        for row in &self.rows {
            let name = match (row.quantization, row.int8_kernel) {
                (None, _) => "float32".to_string(),
                (Some(q), false) => q.to_string(),
                (Some(q), true) => format!("{q}, int8 kernel"),
            };
            writeln!(
                f,
                "| {name} | {:.3} | {:+.2} % | {:.2} MB | {:.0} |",
                row.perplexity,
                100.0 * (row.relative - 1.0),
                row.bytes as f64 / 1e6,
                row.tokens_per_second
            )?;
        }
        Ok(())
    }
}
