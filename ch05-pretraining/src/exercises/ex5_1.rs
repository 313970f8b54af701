//! Exercise 5.1: how often "pizza" is drawn from section 5.3.1's toy next-token
//! distribution at temperatures 1, 0.1 and 5, by sampling (the book's `print_sampled_tokens`)
//! and exactly (the softmax probability itself, no sampling needed).

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::{Exercise, Report};
use shared::core::device::seed_everything;
use shared::generate::temperature_probabilities;
use tch::Tensor;

pub const EXERCISE: Exercise = Exercise {
    id: "5.1",
    summary: "\"pizza\" under temperature scaling: 0/1000 draws at T=1 and 0.1, 32/1000 at T=5 (exactly 4.3%)",
    run: |context| Report::new(&run(context.seed)?),
};

/// Section 5.3.1's vocabulary and the next-token logits after "every effort moves you"
/// (6.28 is the book's logit for "toward", not an approximation of tau).
pub const VOCAB: [&str; 9] = ["closer", "every", "effort", "forward", "inches", "moves", "pizza", "toward", "you"];
#[allow(clippy::approx_constant)]
pub const LOGITS: [f32; 9] = [4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79];
pub const TEMPERATURES: [f64; 3] = [1.0, 0.1, 5.0];
pub const SAMPLES: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct WordCount {
    pub word: String,
    pub count: usize,
    pub probability: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TemperatureRun {
    pub temperature: f64,
    pub counts: Vec<WordCount>,
    /// Draws of "pizza" out of [`SAMPLES`].
    pub pizza_count: usize,
    pub pizza_sampled_frequency: f64,
    /// The exact answer: softmax(logits / T) at "pizza".
    pub pizza_probability: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex5_1 {
    pub samples: usize,
    pub runs: Vec<TemperatureRun>,
}

/// Draws [`SAMPLES`] tokens one at a time with `torch.multinomial` at each temperature,
/// reseeding with `seed` before each series as the book does.
pub fn run(seed: u64) -> Result<Ex5_1> {
    let logits = Tensor::from_slice(&LOGITS);
    let mut runs = Vec::new();
    for temperature in TEMPERATURES {
        let probas = temperature_probabilities(&logits, temperature);
        let probabilities = Vec::<f32>::try_from(&probas)?;
        seed_everything(seed);
        let mut counts = [0usize; VOCAB.len()];
        for _ in 0..SAMPLES {
            counts[probas.multinomial(1, false).int64_value(&[0]) as usize] += 1;
        }
        let pizza = VOCAB.iter().position(|w| *w == "pizza").expect("pizza is in the vocabulary");
        runs.push(TemperatureRun {
            temperature,
            counts: VOCAB
                .iter()
                .zip(counts)
                .zip(&probabilities)
                .map(|((word, count), p)| WordCount { word: word.to_string(), count, probability: *p as f64 })
                .collect(),
            pizza_count: counts[pizza],
            pizza_sampled_frequency: counts[pizza] as f64 / SAMPLES as f64,
            pizza_probability: probabilities[pizza] as f64,
        });
    }
    Ok(Ex5_1 { samples: SAMPLES, runs })
}

impl fmt::Display for Ex5_1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for run in &self.runs {
            writeln!(f, "Temperature {}: {} draws", run.temperature, self.samples)?;
            for count in &run.counts {
                writeln!(f, "  {:>4} x {}", count.count, count.word)?;
            }
            writeln!(
                f,
                "  \"pizza\": sampled {}/{} = {:.1}%, exact probability {:.4}%",
                run.pizza_count,
                self.samples,
                100.0 * run.pizza_sampled_frequency,
                100.0 * run.pizza_probability
            )?;
        }
        write!(f, "The exact frequency needs no sampling: it is the softmax probability of the token.")
    }
}
