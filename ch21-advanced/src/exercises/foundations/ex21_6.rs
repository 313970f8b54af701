//! Exercise 21.6: softmax with a temperature for the logits [2.0, 1.0, 0.5, -1.0]: the
//! probabilities and entropies at tau 0.5, 1 and 2, entropy as a function of tau (a PNG), the
//! smallest tau whose entropy is within 1 % of the uniform ln 4, and the limits.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::Report;

use crate::exercises::Exercise;
use shared::app::plot::{Chart, Series, PALETTE};
use shared::generate::temperature_probabilities;
use tch::Tensor;

pub const EXERCISE: Exercise = Exercise {
    id: "21.6",
    summary: "temperature: probabilities and entropies of [2, 1, 0.5, -1] at tau 0.5, 1, 2; entropy against tau (PNG)",
    run: |context| Report::new(&run(context)?),
};

pub const LOGITS: [f32; 4] = [2.0, 1.0, 0.5, -1.0];

#[derive(Debug, Clone, Serialize)]
pub struct AtTemperature {
    pub tau: f64,
    pub probabilities: Vec<f64>,
    /// In nats.
    pub entropy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_6 {
    pub rows: Vec<AtTemperature>,
    /// ln 4: the entropy of the uniform distribution over 4 tokens.
    pub uniform_entropy: f64,
    /// The smallest tau whose entropy is at least 99 % of ln 4 (bisection).
    pub near_uniform_tau: f64,
    /// tau 0.01 and tau 1000, for the limits.
    pub cold: AtTemperature,
    pub hot: AtTemperature,
    pub figure: std::path::PathBuf,
}

/// The distribution and its entropy at `tau`, through the decoder's temperature code.
pub fn at(tau: f64) -> AtTemperature {
    let probabilities = Vec::<f32>::try_from(temperature_probabilities(&Tensor::from_slice(&LOGITS), tau))
        .expect("a float tensor")
        .into_iter()
        .map(f64::from)
        .collect::<Vec<_>>();
    let entropy = -probabilities.iter().filter(|&&p| p > 0.0).map(|p| p * p.ln()).sum::<f64>();
    AtTemperature { tau, probabilities, entropy }
}

pub fn run(context: &RunContext) -> Result<Ex21_6> {
    let uniform_entropy = 4f64.ln();
    // Entropy grows with tau here: bisect for 99 % of ln 4.
    let (mut lo, mut hi): (f64, f64) = (0.01, 1000.0);
    for _ in 0..60 {
        let mid = (lo * hi).sqrt();
        if at(mid).entropy >= 0.99 * uniform_entropy {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    context.create_out_dir()?;
    let figure = context.out_dir.join("ex21_6-entropy.png");
    let taus: Vec<f64> = (1..=200).map(|i| i as f64 * 0.05).collect();
    let entropies: Vec<f64> = taus.iter().map(|&tau| at(tau).entropy).collect();
    let uniform = vec![uniform_entropy; taus.len()];
    Chart {
        series: vec![
            Series { xs: &taus, ys: &entropies, color: PALETTE[0], label: "entropy of softmax(logits / tau)" },
            Series { xs: &taus, ys: &uniform, color: PALETTE[1], label: "ln 4 (uniform)" },
        ],
        x_label: "temperature tau",
        y_label: "entropy (nats)",
        top_axis: None,
        width: 800,
        height: 500,
    }
    .write_png(&figure)?;
    Ok(Ex21_6 {
        rows: [0.5, 1.0, 2.0].into_iter().map(at).collect(),
        uniform_entropy,
        near_uniform_tau: hi,
        cold: at(0.01),
        hot: at(1000.0),
        figure,
    })
}

impl fmt::Display for Ex21_6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |p: &[f64]| p.iter().map(|p| format!("{p:.4}")).collect::<Vec<_>>().join(", ");
        writeln!(f, "Logits z = {LOGITS:?}")?;
        for row in &self.rows {
            writeln!(f, "  tau {:3}: p = [{}], entropy {:.4} nats", row.tau, list(&row.probabilities), row.entropy)?;
        }
        writeln!(
            f,
            "Entropy rises with tau towards ln 4 = {:.4}; it is within 1 % of it from tau = {:.1} on (see {}).",
            self.uniform_entropy,
            self.near_uniform_tau,
            self.figure.display()
        )?;
        writeln!(
            f,
            "Limits: tau -> 0+ puts all the mass on the largest logit (tau 0.01: [{}], entropy {:.4}): greedy decoding;",
            list(&self.cold.probabilities),
            self.cold.entropy
        )?;
        write!(
            f,
            "tau -> infinity flattens every difference (tau 1000: [{}], entropy {:.4}): the uniform distribution.",
            list(&self.hot.probabilities),
            self.hot.entropy
        )
    }
}
