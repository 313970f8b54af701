//! Exercise 21.7: top-k (k = 3) and nucleus (p = 0.9) truncation of a 10-token distribution
//! with the decoder's own processors, their renormalised probabilities, and a distribution
//! where top-5 keeps tokens that nucleus sampling rightly drops.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::Report;

use crate::exercises::Exercise;
use shared::generate::{LogitsProcessor, TopK, TopP};
use tch::{Kind, Tensor};

pub const EXERCISE: Exercise = Exercise {
    id: "21.7",
    summary: "top-k 3 and top-p 0.9 sets of a 10-token distribution with the shared processors; where top-5 admits unlikely tokens",
    run: |_| Report::new(&run()?),
};

pub const DISTRIBUTION: [f64; 10] = [0.35, 0.20, 0.15, 0.10, 0.08, 0.05, 0.03, 0.02, 0.01, 0.01];
/// One confident token and a tail of unlikely ones (distinct, so that top-k has no ties).
pub const PEAKED: [f64; 10] = [0.95, 0.012, 0.008, 0.007, 0.006, 0.005, 0.004, 0.003, 0.003, 0.002];

#[derive(Debug, Clone, Serialize)]
pub struct Truncation {
    pub method: String,
    /// Token indices kept, most likely first.
    pub kept: Vec<usize>,
    /// Their probabilities after renormalising.
    pub renormalised: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_7 {
    pub top_k: Truncation,
    pub top_p: Truncation,
    pub peaked_top_k: Truncation,
    pub peaked_top_p: Truncation,
}

/// Runs `processor` on the log-probabilities and reads off the kept tokens and the softmax.
pub fn truncate(method: &str, probabilities: &[f64], processor: &mut dyn LogitsProcessor) -> Truncation {
    let logits = Tensor::from_slice(probabilities).to_kind(Kind::Float).log().view([1, -1]);
    let filtered = processor.process(&logits, &Tensor::zeros([1, 0], (Kind::Int64, tch::Device::Cpu)));
    let renormalised = Vec::<f32>::try_from(filtered.softmax(-1, Kind::Float).view([-1])).expect("floats");
    let mut kept: Vec<usize> = (0..probabilities.len()).filter(|&i| renormalised[i] > 0.0).collect();
    kept.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    let renormalised = kept.iter().map(|&i| f64::from(renormalised[i])).collect();
    Truncation { method: method.to_string(), kept, renormalised }
}

pub fn run() -> Result<Ex21_7> {
    Ok(Ex21_7 {
        top_k: truncate("top-k 3", &DISTRIBUTION, &mut TopK(3)),
        top_p: truncate("top-p 0.9", &DISTRIBUTION, &mut TopP(0.9)),
        peaked_top_k: truncate("top-k 5", &PEAKED, &mut TopK(5)),
        peaked_top_p: truncate("top-p 0.9", &PEAKED, &mut TopP(0.9)),
    })
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs: Vec<String> =
            self.kept.iter().zip(&self.renormalised).map(|(i, p)| format!("token {i}: {p:.4}")).collect();
        let plural = if self.kept.len() == 1 { "" } else { "s" };
        write!(f, "{} keeps {} token{plural}: {}", self.method, self.kept.len(), pairs.join(", "))
    }
}

impl fmt::Display for Ex21_7 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "p = {DISTRIBUTION:?}")?;
        writeln!(f, "(a) {}", self.top_k)?;
        writeln!(f, "(b) {}", self.top_p)?;
        writeln!(
            f,
            "(c) The distribution is flat: the first three tokens hold only {:.0} % of the mass, so top-k 3 cuts \
             plausible tokens; top-p adapts to the shape and keeps the {} tokens that reach 90 %.",
            100.0 * DISTRIBUTION[..3].iter().sum::<f64>(),
            self.top_p.kept.len()
        )?;
        writeln!(f, "(d) p = {PEAKED:?}")?;
        writeln!(f, "    {}", self.peaked_top_k)?;
        write!(
            f,
            "    {}: top-k 5 gives four tokens of about 1 % or less a total of {:.1} % of the draws; nucleus \
             sampling keeps only the confident one.",
            self.peaked_top_p,
            100.0 * self.peaked_top_k.renormalised[1..].iter().sum::<f64>()
        )
    }
}
