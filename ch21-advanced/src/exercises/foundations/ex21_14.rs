//! Exercise 21.14: nucleus (top-p) sampling written out step by step on plain numbers (sort,
//! cumulative sum, cutoff, mask, renormalise, draw), compared with `shared`'s `TopP`
//! processor (the one `generate --top-p` uses) on random distributions, ties and extreme p.

use std::fmt;

use anyhow::{ensure, Result};
use serde::Serialize;
use shared::app::exercise::Report;

use crate::exercises::Exercise;
use shared::generate::{LogitsProcessor, TopP};
use tch::{Device, Kind, Tensor};

use super::ex21_13::draw;

pub const EXERCISE: Exercise = Exercise {
    id: "21.14",
    summary: "nucleus sampling from scratch (sort, cumsum, cutoff, mask, renormalise, draw), equal to the shared top-p",
    run: |_| Report::new(&run(500)?),
};

/// The steps of one top-p filtering, kept for printing.
#[derive(Debug, Clone, Serialize)]
pub struct Nucleus {
    /// (a) Token ids from the most to the least likely (equal probabilities: the later id first).
    pub order: Vec<usize>,
    /// (b) The cumulative probability after each token of `order`.
    pub cumulative: Vec<f64>,
    /// (c) How many tokens of `order` are kept: those before which less than `p` was gathered.
    pub kept: usize,
    /// (d, e) The renormalised distribution over every id (0 for the masked ones).
    pub probabilities: Vec<f64>,
}

/// Filters `logits` to the nucleus of mass `p`.
pub fn nucleus(logits: &[f64], p: f64) -> Result<Nucleus> {
    ensure!(p > 0.0 && p <= 1.0, "top-p needs 0 < p <= 1, got {p}");
    ensure!(!logits.is_empty(), "no logits");
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|z| (z - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    let probs: Vec<f64> = exps.iter().map(|e| e / total).collect();
    // (a) Sort, most likely first.
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(b.cmp(&a)));
    // (b) Cumulative sums along that order.
    let cumulative: Vec<f64> = order
        .iter()
        .scan(0.0, |sum, &id| {
            *sum += probs[id];
            Some(*sum)
        })
        .collect();
    // (c) The cutoff: a token stays while the mass before it is below p (so the first stays);
    // p = 1 keeps every token, however small (sums that round to 1 must not cut the tail).
    let kept = if p >= 1.0 { order.len() } else { 1 + cumulative.iter().take_while(|&&c| c < p).count() };
    // (d) Mask everything after the cutoff; (e) renormalise the rest.
    let kept_mass: f64 = order[..kept].iter().map(|&id| probs[id]).sum();
    let mut probabilities = vec![0.0; probs.len()];
    for &id in &order[..kept] {
        probabilities[id] = probs[id] / kept_mass;
    }
    Ok(Nucleus { order, cumulative, kept, probabilities })
}

/// (e) One id from the nucleus, with `u` uniform in [0, 1).
pub fn sample(logits: &[f64], p: f64, u: f64) -> Result<usize> {
    Ok(draw(&nucleus(logits, p)?.probabilities, u))
}

/// The shared processor's distribution for the same logits: `TopP`, then a softmax.
pub fn shared_top_p(logits: &[f64], p: f64) -> Vec<f64> {
    let row = Tensor::from_slice(logits).to_kind(Kind::Float).view([1, -1]);
    let filtered = TopP(p).process(&row, &Tensor::zeros([1, 0], (Kind::Int64, Device::Cpu)));
    let probs = filtered.softmax(-1, Kind::Double).view([-1]);
    Vec::<f64>::try_from(probs).expect("a double tensor")
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub distributions: usize,
    /// Cases where the kept sets differ.
    pub different_sets: usize,
    /// The largest difference between the two renormalised probabilities.
    pub max_probability_difference: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_14 {
    pub example_logits: Vec<f64>,
    pub example_p: f64,
    pub example: Nucleus,
    pub comparison: Comparison,
}

/// Random logits (normal, scaled so some distributions are peaked and some flat), tied
/// logits, and p from 0.001 to 1.
pub fn cases(count: usize) -> Vec<(Vec<f64>, f64)> {
    let mut cases = Vec::new();
    let ps = [0.001, 0.1, 0.5, 0.9, 0.95, 0.999, 1.0];
    for i in 0..count {
        let size = 2 + (i % 30) as i64;
        let scale = [0.1, 1.0, 3.0, 8.0][i % 4];
        let mut logits = Vec::<f64>::try_from(Tensor::randn([size], (Kind::Double, Device::Cpu)) * scale).unwrap();
        if i % 5 == 0 {
            // Ties: copy some logits over others (float32-exact values, like the processor's).
            for j in (1..logits.len()).step_by(2) {
                logits[j] = logits[j - 1];
            }
        }
        let logits = logits.into_iter().map(|z| z as f32 as f64).collect();
        cases.push((logits, ps[i % ps.len()]));
    }
    // Equal probabilities with a cutoff exactly at a sum: 4 ties, p = 0.5.
    cases.push((vec![0.0; 4], 0.5));
    cases.push((vec![1.0, 1.0, 0.0, 0.0], 0.5));
    cases
}

pub fn compare(cases: &[(Vec<f64>, f64)]) -> Result<Comparison> {
    let (mut different_sets, mut max_probability_difference) = (0, 0f64);
    for (logits, p) in cases {
        let ours = nucleus(logits, *p)?.probabilities;
        let shared = shared_top_p(logits, *p);
        if ours.iter().zip(&shared).any(|(a, b)| (*a > 0.0) != (*b > 0.0)) {
            different_sets += 1;
        }
        for (a, b) in ours.iter().zip(&shared) {
            max_probability_difference = max_probability_difference.max((a - b).abs());
        }
    }
    Ok(Comparison { distributions: cases.len(), different_sets, max_probability_difference })
}

pub fn run(random_cases: usize) -> Result<Ex21_14> {
    let _rng = shared::core::device::global_rng_lock();
    tch::manual_seed(123);
    let example_logits = vec![2.0, 1.0, 0.5, -1.0, 1.5, 0.0, -0.5, 0.8];
    let example_p = 0.9;
    let example = nucleus(&example_logits, example_p)?;
    let comparison = compare(&cases(random_cases))?;
    Ok(Ex21_14 { example_logits, example_p, example, comparison })
}

impl fmt::Display for Ex21_14 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = &self.example;
        writeln!(f, "Logits {:?}, p = {}:", self.example_logits, self.example_p)?;
        writeln!(f, "  (a) ids by probability: {:?}", n.order)?;
        let cumulative: Vec<String> = n.cumulative.iter().map(|c| format!("{c:.3}")).collect();
        writeln!(f, "  (b) cumulative:         [{}]", cumulative.join(", "))?;
        writeln!(
            f,
            "  (c) cutoff: the first {} ids (the mass before the next one, {:.3}, reached p)",
            n.kept,
            n.cumulative[n.kept - 1]
        )?;
        let kept: Vec<String> =
            n.order[..n.kept].iter().map(|&id| format!("{id}: {:.3}", n.probabilities[id])).collect();
        writeln!(f, "  (d, e) masked and renormalised: {}", kept.join(", "))?;
        let c = &self.comparison;
        write!(
            f,
            "Against shared::generate::TopP on {} distributions (random sizes and scales, ties, p from 0.001 to 1): \
             {} kept sets differ, largest probability difference {:.1e}.",
            c.distributions, c.different_sets, c.max_probability_difference
        )
    }
}
