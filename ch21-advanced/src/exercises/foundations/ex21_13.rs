//! Exercise 21.13: a sampler written out (divide the logits by the temperature, keep the top
//! k, softmax, draw one id by inverting the cumulative distribution), 1,000 draws at several
//! settings, their histograms against the exact distributions (a PNG), and a chi-square
//! statistic per setting.

use std::fmt;
use std::path::PathBuf;

use anyhow::{ensure, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::Report;

use crate::exercises::Exercise;
use shared::app::plot::{write_grid, BarSeries, Bars, Figure, PALETTE};
use tch::{Device, Kind, Tensor};

pub const EXERCISE: Exercise = Exercise {
    id: "21.13",
    summary: "a temperature/top-k sampler: 1,000 draws at tau 0.5, 1, 2 and top-3, histograms (PNG), chi-square",
    run: |context| Report::new(&run(context, 1000)?),
};

/// The example's logits: eight tokens.
pub const LOGITS: [f64; 8] = [2.0, 1.0, 0.5, -1.0, 1.5, 0.0, -0.5, 0.8];

/// The chi-square distribution's 99.9 % quantile for 1 to 7 degrees of freedom (statistical
/// tables): a correct sampler exceeds it once in a thousand runs.
pub fn chi_square_critical(degrees_of_freedom: usize) -> f64 {
    [10.828, 13.816, 16.266, 18.467, 20.515, 22.458, 24.322][degrees_of_freedom.clamp(1, 7) - 1]
}

/// One sampling setting (`temperature`, optional top-k).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Setting {
    pub temperature: f64,
    pub top_k: Option<usize>,
}

/// The probabilities the sampler draws from: `softmax(logits / temperature)` over the `top_k`
/// largest logits (all of them without a k; ties at the k-th value are kept), zero elsewhere.
pub fn distribution(logits: &[f64], setting: Setting) -> Result<Vec<f64>> {
    ensure!(setting.temperature > 0.0, "the temperature must be positive (0 is greedy decoding, not sampling)");
    ensure!(!logits.is_empty(), "no logits");
    let scaled: Vec<f64> = logits.iter().map(|z| z / setting.temperature).collect();
    let threshold = match setting.top_k {
        Some(k) => {
            ensure!(k > 0, "top-k needs k >= 1");
            let mut sorted = scaled.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            sorted[k.min(sorted.len()) - 1]
        }
        None => f64::NEG_INFINITY,
    };
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scaled.iter().map(|&z| if z >= threshold { (z - max).exp() } else { 0.0 }).collect();
    let total: f64 = weights.iter().sum();
    Ok(weights.into_iter().map(|w| w / total).collect())
}

/// Draws one id from `probabilities` with a uniform number `u` in [0, 1): the first id whose
/// cumulative probability exceeds `u`.
pub fn draw(probabilities: &[f64], u: f64) -> usize {
    let mut cumulative = 0.0;
    for (id, p) in probabilities.iter().enumerate() {
        cumulative += p;
        if u < cumulative {
            return id;
        }
    }
    // Rounding can leave the total a hair under 1: the last id with any probability.
    probabilities.iter().rposition(|&p| p > 0.0).unwrap_or(0)
}

/// The sampler: one id from `logits` at `setting`, drawing `u` from the global generator.
pub fn sample(logits: &[f64], setting: Setting) -> Result<usize> {
    let u = Tensor::rand([1], (Kind::Double, Device::Cpu)).double_value(&[0]);
    Ok(draw(&distribution(logits, setting)?, u))
}

#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    pub setting: Setting,
    pub expected: Vec<f64>,
    /// How often each id was drawn.
    pub counts: Vec<usize>,
    /// Pearson's statistic over the ids the setting can draw.
    pub chi_square: f64,
    pub degrees_of_freedom: usize,
    /// [`chi_square_critical`] of those degrees of freedom.
    pub critical: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_13 {
    pub samples: usize,
    pub histograms: Vec<Histogram>,
    pub figure: PathBuf,
}

pub fn settings() -> [Setting; 4] {
    [
        Setting { temperature: 0.5, top_k: None },
        Setting { temperature: 1.0, top_k: None },
        Setting { temperature: 2.0, top_k: None },
        Setting { temperature: 1.0, top_k: Some(3) },
    ]
}

/// `samples` draws per setting (seeded by the run's seed), counted and compared.
pub fn run(context: &RunContext, samples: usize) -> Result<Ex21_13> {
    shared::core::device::seed_everything(context.seed);
    let mut histograms = Vec::new();
    for setting in settings() {
        let expected = distribution(&LOGITS, setting)?;
        let mut counts = vec![0; LOGITS.len()];
        for _ in 0..samples {
            counts[sample(&LOGITS, setting)?] += 1;
        }
        let possible: Vec<usize> = (0..LOGITS.len()).filter(|&i| expected[i] > 0.0).collect();
        let chi_square = possible
            .iter()
            .map(|&i| {
                let e = expected[i] * samples as f64;
                (counts[i] as f64 - e).powi(2) / e
            })
            .sum();
        let degrees_of_freedom = possible.len() - 1;
        let critical = chi_square_critical(degrees_of_freedom);
        histograms.push(Histogram { setting, expected, counts, chi_square, degrees_of_freedom, critical });
    }
    let figure = context.out_dir.join("ex21_13-histograms.png");
    let shares: Vec<Vec<f64>> =
        histograms.iter().map(|h| h.counts.iter().map(|&c| c as f64 / samples as f64).collect()).collect();
    let panels: Vec<(String, Bars)> = histograms
        .iter()
        .zip(&shares)
        .map(|(h, share)| {
            let title = match h.setting.top_k {
                Some(k) => format!("temperature {}, top-{k}", h.setting.temperature),
                None => format!("temperature {}", h.setting.temperature),
            };
            let bars = Bars {
                categories: (0..LOGITS.len()).map(|i| i.to_string()).collect(),
                series: vec![
                    BarSeries { values: share, color: PALETTE[0], label: "sampled" },
                    BarSeries { values: &h.expected, color: PALETTE[1], label: "exact" },
                ],
                x_label: "token id",
                y_label: "share of draws",
            };
            (title, bars)
        })
        .collect();
    let grid: Vec<(&str, &dyn Figure)> = panels.iter().map(|(t, b)| (t.as_str(), b as &dyn Figure)).collect();
    write_grid(&figure, &grid, 2, (520, 340))?;
    Ok(Ex21_13 { samples, histograms, figure })
}

impl fmt::Display for Ex21_13 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Logits {LOGITS:?}; {} draws per setting:", self.samples)?;
        for h in &self.histograms {
            let top_k = h.setting.top_k.map_or("-".to_string(), |k| k.to_string());
            writeln!(
                f,
                "  tau {:3}, top-k {top_k}: counts {:?}, chi-square {:.2} on {} degrees of freedom (0.1 % critical \
                 value {})",
                h.setting.temperature, h.counts, h.chi_square, h.degrees_of_freedom, h.critical
            )?;
        }
        let within = self.histograms.iter().filter(|h| h.chi_square < h.critical).count();
        writeln!(
            f,
            "A low temperature piles the draws onto token 0 and a high one spreads them out; top-3 can only draw the \
             three largest logits. {within} of {} settings are within the critical value, i.e. consistent with the \
             exact distributions.",
            self.histograms.len()
        )?;
        write!(f, "Histograms: {}", self.figure.display())
    }
}
