//! Exercise 5.2: the same prompt decoded over a grid of temperatures and top-k settings.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::{Exercise, Report};
use shared::app::model_source::ModelSource;
use shared::core::device::seed_everything;
use shared::generate::Sampling;
use shared::model::GptModel;
use shared::train::Checkpoint;

use crate::decode::generate_text;
use crate::pretrain::{book_config, START_CONTEXT};

pub const EXERCISE: Exercise = Exercise {
    id: "5.2",
    summary: "a temperature x top-k sweep of one prompt (the main run's model, `sweep` for any model)",
    run: |context| Report::new(&run_default(context)?),
};

pub const TEMPERATURES: [f64; 4] = [0.0, 0.7, 1.4, 3.0];
pub const TOP_KS: [Option<i64>; 3] = [Some(3), Some(25), None];

#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    pub temperature: f64,
    pub top_k: Option<i64>,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    pub model: String,
    pub prompt: String,
    pub rows: Vec<SweepRow>,
}

/// Decodes `prompt` once per setting, reseeding with `seed` before each.
pub fn sweep(
    model: &GptModel,
    description: &str,
    prompt: &str,
    max_new_tokens: i64,
    temperatures: &[f64],
    top_ks: &[Option<i64>],
    seed: u64,
) -> Result<Sweep> {
    let mut rows = Vec::new();
    for &temperature in temperatures {
        for &top_k in top_ks {
            seed_everything(seed);
            let sampling = Sampling { temperature, top_k, eos_id: None };
            let text = generate_text(model, prompt, max_new_tokens, &sampling)?.text;
            rows.push(SweepRow { temperature, top_k, text: text.replace('\n', " ") });
        }
    }
    Ok(Sweep { model: description.to_string(), prompt: prompt.to_string(), rows })
}

/// The main run's checkpoint when it exists (`runs/ch05-pretraining/checkpoint`), else an
/// untrained model (the sweep still shows how the settings spread the choices).
fn run_default(context: &RunContext) -> Result<Sweep> {
    let checkpoint = Checkpoint::at(&context.out_dir.join("checkpoint"));
    let source = if checkpoint.meta.is_file() {
        ModelSource::checkpoint(checkpoint.model)
    } else {
        ModelSource::Fresh(book_config())
    };
    let loaded = source.load(context.device, context.seed)?;
    let description = match source {
        ModelSource::Fresh(_) => {
            "an untrained model (run `cargo run --release -p ch05-pretraining` first for the trained one)".to_string()
        }
        _ => loaded.description.clone(),
    };
    sweep(&loaded.model, &description, START_CONTEXT, 15, &TEMPERATURES, &TOP_KS, context.seed)
}

impl fmt::Display for Sweep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Model: {}", self.model)?;
        for row in &self.rows {
            let top_k = row.top_k.map_or("all".to_string(), |k| k.to_string());
            let temperature =
                if row.temperature == 0.0 { "greedy".to_string() } else { format!("T={}", row.temperature) };
            writeln!(f, "{temperature:>7} top-k {top_k:>3} | {}", row.text)?;
        }
        write!(f, "Low temperature or small top-k: repeatable, conservative text; high values: varied, riskier text.")
    }
}
