//! Exercise 5.6: GPT-2 small and GPT-2 XL (or any other size) continue the same prompt with
//! the same settings. Weights are streamed into the model one tensor at a time, so loading
//! needs about one copy of them in memory (the peak resident size is reported).

use std::fmt;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::{Exercise, Report};
use shared::app::model_source::ModelSource;
use shared::core::device::seed_everything;
use shared::generate::Sampling;
use shared::model::ParameterCounts;

use crate::decode::generate_text;
use crate::pretrain::START_CONTEXT;

pub const EXERCISE: Exercise = Exercise {
    id: "5.6",
    summary: "GPT-2 small vs GPT-2 XL on one prompt (`compare-models --model NAME` for other sizes; needs the weights)",
    run: |context| {
        let sources = [ModelSource::Weights("gpt2-small".into()), ModelSource::Weights("gpt2-xl".into())];
        Report::new(&run(&sources, START_CONTEXT, 25, &BOOK_SAMPLING, context.device, context.seed)?)
    },
};

/// The settings of the book's solution: top-k 50 at temperature 1.5.
pub const BOOK_SAMPLING: Sampling = Sampling { temperature: 1.5, top_k: Some(50), eos_id: None };

#[derive(Debug, Clone, Serialize)]
pub struct ModelOutput {
    pub model: String,
    pub parameters: i64,
    pub load_seconds: f64,
    /// The process's peak resident memory after loading (Linux), in MB.
    pub peak_rss_mb: Option<f64>,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex5_6 {
    pub prompt: String,
    pub sampling: Sampling,
    pub outputs: Vec<ModelOutput>,
}

/// Loads each model in turn (dropping the previous one) and continues `prompt`, reseeding
/// with `seed` before each.
pub fn run(
    sources: &[ModelSource],
    prompt: &str,
    max_new_tokens: i64,
    sampling: &Sampling,
    device: tch::Device,
    seed: u64,
) -> Result<Ex5_6> {
    let mut outputs = Vec::new();
    for source in sources {
        let start = Instant::now();
        let loaded = source.load(device, seed)?;
        let load_seconds = start.elapsed().as_secs_f64();
        let peak_rss_mb = peak_rss_mb();
        seed_everything(seed);
        let text = generate_text(&loaded.model, prompt, max_new_tokens, sampling)?.text;
        let parameters =
            ParameterCounts::from_named(loaded.vs.variables().iter().map(|(n, t)| (n.as_str(), t.numel() as i64)))
                .total();
        outputs.push(ModelOutput { model: loaded.description, parameters, load_seconds, peak_rss_mb, text });
    }
    Ok(Ex5_6 { prompt: prompt.to_string(), sampling: *sampling, outputs })
}

/// `VmHWM` from `/proc/self/status`.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

impl fmt::Display for Ex5_6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Prompt {:?}, temperature {}, top-k {:?}",
            self.prompt, self.sampling.temperature, self.sampling.top_k
        )?;
        for output in &self.outputs {
            let peak = output.peak_rss_mb.map_or(String::new(), |mb| format!(", peak memory {mb:.0} MB"));
            writeln!(
                f,
                "\n{} ({} parameters, loaded in {:.1} s{peak}):\n{}",
                output.model, output.parameters, output.load_seconds, output.text
            )?;
        }
        Ok(())
    }
}
