//! Exercise 21.34: post-training quantization of every linear layer of the large model
//! ([`shared::nn::Quantization`]): naive round-to-nearest on a fixed grid, absmax (symmetric)
//! and zero-point (asymmetric) grids, per tensor and per channel, at 8, 6, 4, 3 and 2 bits.
//! Each is measured by the validation perplexity and the model's bytes with the weights
//! packed. The quantized layers compute with the dequantized weight (a simulation: the same
//! work at every bit width, plus the dequantization), so generation speed is measured once for
//! it, against float32 and against fbgemm's dynamically quantized int8 kernel (the one
//! `--int8` uses everywhere, reached through `shared::core::native`): real int8 products, the
//! activations quantized at every call; the three are timed in turn, several rounds, and the
//! medians kept.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::Report;

use crate::exercises::{Context, Exercise};
use shared::core::timing::median_seconds;
use shared::generate::generate_greedy_cached;
use shared::model::GptModel;
use shared::nn::{Granularity, LinearWeight, QuantScheme, Quantization};
use tch::Tensor;

use crate::minigpt::split_loss;
use crate::models::{self, Budget, Sizes};

pub const EXERCISE: Exercise = Exercise {
    id: "21.34",
    summary: "post-training quantization of the large model's linear layers: fixed-grid round-to-nearest, absmax and zero-point, per tensor and per channel, at 8, 6, 4, 3 and 2 bits: validation perplexity, bytes, tokens/s, and fbgemm's int8 kernel",
    run: |context| Report::new(&run(context, &Budget::from_flags(&context.flags), Sizes::STANDARD, 50)?),
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
}

/// Greedy generation speed of one way of computing.
#[derive(Debug, Clone, Serialize)]
pub struct Speed {
    pub weights: String,
    pub tokens_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_34 {
    pub model: String,
    pub validation_batches: usize,
    pub generated_tokens: i64,
    pub timing_rounds: usize,
    pub rows: Vec<Row>,
    pub speeds: Vec<Speed>,
}

/// Timing rounds of each way of computing, taken in turn.
pub const TIMING_ROUNDS: usize = 5;

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

pub fn run(context: &Context, budget: &Budget, sizes: Sizes, validation_batches: usize) -> Result<Ex21_34> {
    let mut large = models::large(context, &context.flags, budget)?;
    let text = budget.corpus(context)?;
    let prompt = sizes.prompts(context, budget)?.remove(0);
    let train_ratio = budget.large.train_ratio;
    let model = &mut large.loaded.model;
    let device = context.device;
    let on_cpu = device == tch::Device::Cpu;

    let mut rows = Vec::new();
    let ways = std::iter::once((None, false))
        .chain(quantizations().into_iter().map(|q| (Some(q), false)))
        .chain(on_cpu.then_some((Some(Quantization::INT8), true)));
    for (quantization, int8_kernel) in ways {
        rows.push(with_quantized(model, quantization, int8_kernel, |m| {
            let loss = split_loss(m, &text, train_ratio, false, validation_batches, context.seed)?;
            Ok(Row { quantization, int8_kernel, perplexity: loss.exp(), relative: 1.0, bytes: m.parameter_bytes() })
        })?);
    }
    let float = rows[0].perplexity;
    for row in &mut rows {
        row.relative = row.perplexity / float;
    }

    // Generation inside the context, where each token is one cached step.
    let prompt_ids: Vec<i64> = model.cfg.tokenizer.build()?.encode(&prompt)?.into_iter().map(i64::from).collect();
    let prompt_ids = Tensor::from_slice(&prompt_ids).view([1, -1]).to_device(device);
    let new_tokens = sizes.new_tokens.min(model.cfg.context_length - prompt_ids.size()[1]).max(1);
    let mut timed = vec![
        ("float32".to_string(), None, false),
        (format!("{}, dequantized", Quantization::INT8), Some(Quantization::INT8), false),
    ];
    if on_cpu {
        timed.push((format!("{}, int8 kernel", Quantization::INT8), Some(Quantization::INT8), true));
    }
    let mut seconds = vec![Vec::new(); timed.len()];
    for _ in 0..TIMING_ROUNDS {
        for ((_, quantization, int8_kernel), times) in timed.iter().zip(&mut seconds) {
            times.push(with_quantized(model, *quantization, *int8_kernel, |m| {
                Ok(median_seconds(device, 1, 1, || {
                    let _ = generate_greedy_cached(m, &prompt_ids, new_tokens, None);
                }))
            })?);
        }
    }
    let speeds = timed
        .into_iter()
        .zip(seconds)
        .map(|((weights, _, _), mut times)| {
            times.sort_by(f64::total_cmp);
            Speed { weights, tokens_per_second: new_tokens as f64 / times[times.len() / 2] }
        })
        .collect();
    Ok(Ex21_34 {
        model: large.name,
        validation_batches,
        generated_tokens: new_tokens,
        timing_rounds: TIMING_ROUNDS,
        rows,
        speeds,
    })
}

impl fmt::Display for Ex21_34 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: validation perplexity over {} batches", self.model, self.validation_batches)?;
        writeln!(f, "| weights | perplexity | vs float32 | bytes |")?;
        writeln!(f, "|---|---:|---:|---:|")?;
        for row in &self.rows {
            let name = match (row.quantization, row.int8_kernel) {
                (None, _) => "float32".to_string(),
                (Some(q), false) => q.to_string(),
                (Some(q), true) => format!("{q}, int8 kernel"),
            };
            let bytes = row.bytes as f64 / 1e6;
            writeln!(f, "| {name} | {:.3} | {:+.2} % | {bytes:.2} MB |", row.perplexity, 100.0 * (row.relative - 1.0))?;
        }
        writeln!(
            f,
            "Greedy generation of {} tokens, median of {} rounds taken in turn:",
            self.generated_tokens, self.timing_rounds
        )?;
        writeln!(f, "| weights | tokens/s |")?;
        writeln!(f, "|---|---:|")?;
        for speed in &self.speeds {
            writeln!(f, "| {} | {:.0} |", speed.weights, speed.tokens_per_second)?;
        }
        Ok(())
    }
}
