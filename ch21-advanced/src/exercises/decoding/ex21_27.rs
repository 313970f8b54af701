//! Exercise 21.27: speculative decoding (Leviathan et al. 2023) with
//! [`shared::generate::speculative::generate_speculative`]. The large model is the target; two
//! small models of the same shape are the drafts, one trained for a sixth of the steps of the
//! other (a weaker draft). For gamma 1, 2, 4 and 8 draft tokens per round, greedily and at
//! temperature 1, it measures the acceptance rate, tokens per target pass and the wall-time
//! speedup over the target decoding alone, and prints beside it the speedup the paper's formula
//! predicts from the measured acceptance rate and the measured cost of a draft pass.

use std::fmt;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::Report;
use shared::core::device::seed_everything;

use crate::exercises::{Context, Exercise};
use shared::core::timing::{median_seconds, synchronize};
use shared::generate::speculative::{expected_speedup, generate_speculative, SpeculativeStats};
use shared::generate::{generate_cached, Decoder, Sampler, Sampling};
use shared::model::GptModel;
use tch::Tensor;

use crate::models::{self, Budget, Sizes};

pub const EXERCISE: Exercise = Exercise {
    id: "21.27",
    summary: "speculative decoding: the 6-layer target (2,000 steps) with 2-layer drafts trained 100 and 600 steps, gamma 1, 2, 4, 8, greedy and at temperature 1: acceptance rate, tokens per target pass, measured speedup and the paper's expected speedup; greedy output identical to the target's",
    run: |context| Report::new(&run(context, &Budget::from_flags(&context.flags), Sizes::STANDARD)?),
};

pub const GAMMAS: [i64; 4] = [1, 2, 4, 8];
pub const TEMPERATURES: [f64; 2] = [0.0, 1.0];

#[derive(Debug, Clone, Serialize)]
pub struct Draft {
    pub name: String,
    /// Training steps of the draft (when trained here).
    pub steps: usize,
    /// Seconds per token of the draft decoding alone, over those of the target: the paper's c.
    pub cost_ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub draft: usize,
    pub temperature: f64,
    pub gamma: i64,
    pub stats: SpeculativeStats,
    pub acceptance_rate: f64,
    pub tokens_per_pass: f64,
    pub seconds: f64,
    pub measured_speedup: f64,
    pub expected_speedup: f64,
    /// Seconds of the target's pass over gamma + 1 new tokens, over those of a pass over one.
    pub verify_cost: f64,
    /// The paper's formula with that pass cost: tokens per round / (gamma c + verify_cost).
    pub expected_with_verify_cost: f64,
    /// Greedy only: the output equals the target's own greedy decoding.
    pub identical_to_target: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_27 {
    pub target: String,
    pub drafts: Vec<Draft>,
    pub prompts: usize,
    pub new_tokens: i64,
    /// Seconds of the target decoding alone, per temperature.
    pub target_seconds: Vec<f64>,
    pub rows: Vec<Row>,
}

/// `run(prompt)` on every prompt, timed; returns the outputs and the seconds.
fn timed(
    prompts: &[Tensor],
    device: tch::Device,
    mut run: impl FnMut(&Tensor) -> Result<Tensor>,
) -> Result<(Vec<Tensor>, f64)> {
    synchronize(device);
    let start = Instant::now();
    let outputs = prompts.iter().map(&mut run).collect::<Result<Vec<_>>>()?;
    synchronize(device);
    Ok((outputs, start.elapsed().as_secs_f64()))
}

/// Seconds of a pass of `model` over `tokens` new tokens after `prompt`, over those of a pass
/// over one (medians of 10).
fn pass_cost(model: &GptModel, prompt: &Tensor, tokens: i64, device: tch::Device) -> Result<f64> {
    let mut decoder = Decoder::new(model, 1);
    let _ = decoder.prefill(prompt)?;
    let start = decoder.len();
    let new = Tensor::zeros([1, tokens], (tch::Kind::Int64, device));
    let mut time = |n: i64| {
        median_seconds(device, 2, 10, || {
            let _ = decoder.truncate(start).and_then(|()| decoder.extend(&new.narrow(1, 0, n)));
        })
    };
    Ok(time(tokens) / time(1))
}

fn sampler(temperature: f64) -> Result<Sampler> {
    Sampler::new(&Sampling { temperature, ..Sampling::GREEDY })
}

pub fn run(context: &Context, budget: &Budget, sizes: Sizes) -> Result<Ex21_27> {
    let target = models::large(context, &context.flags, budget)?;
    let (strong_steps, weak_steps) = (budget.small.iters, (budget.small.iters / 6).max(1));
    let weak = models::small(context, &context.flags, budget, &target, Some(weak_steps))?;
    let strong = models::small(context, &context.flags, budget, &target, None)?;
    let tokenizer = target.gpt().cfg.tokenizer.build()?;
    let device = context.device;
    let prompts: Vec<Tensor> = sizes
        .prompts(context, budget)?
        .iter()
        .map(|p| -> Result<Tensor> {
            let ids: Vec<i64> = tokenizer.encode(p)?.into_iter().map(i64::from).collect();
            Ok(Tensor::from_slice(&ids).view([1, -1]).to_device(device))
        })
        .collect::<Result<_>>()?;
    // Each prompt continued to fill the smallest context: past it, every verification would be
    // recomputed position by position.
    let context_length =
        [&target, &weak, &strong].iter().map(|model| model.gpt().cfg.context_length).min().unwrap_or(1);
    let longest = prompts.iter().map(|p| p.size()[1]).max().unwrap_or(0);
    let new_tokens = sizes.new_tokens.min(context_length - longest).max(1);

    let alone = |model: &GptModel, temperature: f64| -> Result<(Vec<Tensor>, f64)> {
        seed_everything(context.seed);
        let mut sampler = sampler(temperature)?;
        timed(&prompts, device, |p| generate_cached(model, p, new_tokens, &mut sampler))
    };
    let _ = alone(target.gpt(), 0.0)?; // warm-up
    let (greedy_outputs, target_greedy) = alone(target.gpt(), 0.0)?;
    let target_seconds = vec![target_greedy, alone(target.gpt(), 1.0)?.1];
    let drafts: Vec<(&models::Model, usize)> = vec![(&weak, weak_steps), (&strong, strong_steps)];
    let mut draft_rows = Vec::new();
    for (draft, steps) in &drafts {
        let draft_seconds = alone(draft.gpt(), 0.0)?.1;
        draft_rows.push(Draft { name: draft.name.clone(), steps: *steps, cost_ratio: draft_seconds / target_greedy });
    }
    let verify_costs: Vec<f64> =
        GAMMAS.iter().map(|&gamma| pass_cost(target.gpt(), &prompts[0], gamma + 1, device)).collect::<Result<_>>()?;
    let mut rows = Vec::new();
    for (d, (draft, _)) in drafts.iter().enumerate() {
        for (t, &temperature) in TEMPERATURES.iter().enumerate() {
            for (&gamma, &verify_cost) in GAMMAS.iter().zip(&verify_costs) {
                seed_everything(context.seed);
                let mut stats = SpeculativeStats::default();
                let mut sampler = sampler(temperature)?;
                let (outputs, seconds) = timed(&prompts, device, |p| {
                    let run = generate_speculative(target.gpt(), draft.gpt(), p, new_tokens, gamma, &mut sampler)?;
                    stats += run.stats;
                    Ok(run.tokens)
                })?;
                let identical = (temperature == 0.0)
                    .then(|| outputs.iter().zip(&greedy_outputs).all(|(a, b)| a.to_device(b.device()).equal(b)));
                let alpha = stats.acceptance_rate();
                let cost_ratio = draft_rows[d].cost_ratio;
                let expected = expected_speedup(alpha, gamma, cost_ratio);
                rows.push(Row {
                    draft: d,
                    temperature,
                    gamma,
                    stats,
                    acceptance_rate: alpha,
                    tokens_per_pass: stats.tokens_per_pass(),
                    seconds,
                    measured_speedup: target_seconds[t] / seconds,
                    expected_speedup: expected,
                    verify_cost,
                    // The formula divides by (gamma c + 1): one pass of cost 1 per round.
                    expected_with_verify_cost: expected * (gamma as f64 * cost_ratio + 1.0)
                        / (gamma as f64 * cost_ratio + verify_cost),
                    identical_to_target: identical,
                });
            }
        }
    }
    Ok(Ex21_27 { target: target.name, drafts: draft_rows, prompts: prompts.len(), new_tokens, target_seconds, rows })
}

impl fmt::Display for Ex21_27 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Target: {}; {} prompts, {} new tokens each", self.target, self.prompts, self.new_tokens)?;
        writeln!(
            f,
            "Target alone: {:.3} s greedy, {:.3} s at temperature 1",
            self.target_seconds[0], self.target_seconds[1]
        )?;
        for (i, draft) in self.drafts.iter().enumerate() {
            writeln!(f, "Draft {}: {} (cost ratio c = {:.3})", i + 1, draft.name, draft.cost_ratio)?;
        }
        writeln!(f, "| draft | temperature | gamma | acceptance rate | tokens per target pass | seconds | measured speedup | expected speedup | verification pass cost | expected with it | greedy output = target's |")?;
        writeln!(f, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")?;
        for row in &self.rows {
            let identical = match row.identical_to_target {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "–",
            };
            writeln!(
                f,
                "| {} | {} | {} | {:.3} | {:.2} | {:.3} | {:.2}x | {:.2}x | {:.2} | {:.2}x | {identical} |",
                row.draft + 1,
                row.temperature,
                row.gamma,
                row.acceptance_rate,
                row.tokens_per_pass,
                row.seconds,
                row.measured_speedup,
                row.expected_speedup,
                row.verify_cost,
                row.expected_with_verify_cost
            )?;
        }
        write!(
            f,
            "Expected speedup: (1 - a^(gamma+1)) / ((1 - a)(gamma c + 1)) with the measured a and c, which takes a pass over \
             gamma + 1 tokens to cost what a pass over one does; \"expected with it\" puts the measured cost of that pass \
             (in single-token passes) in place of the 1."
        )
    }
}
