//! Exercise 21.5: weight tying. The parameters it saves, counted from GPT-2 small's config
//! with and without `tie_embeddings` (the counts equal the built models' variables, a
//! `shared` test checks), and a short training of the mini-GPT tied and untied.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::Report;

use crate::exercises::Exercise;
use shared::model::{GptConfig, ParameterCounts};

use crate::minigpt::{self, MiniGptOptions};

pub const EXERCISE: Exercise = Exercise {
    id: "21.5",
    summary: "weight tying: parameters saved in GPT-2 small (50,257 x 768), and the mini-GPT trained tied and untied",
    run: |context| Report::new(&run(context, 300)?),
};

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_5 {
    pub untied: i64,
    pub tied: i64,
    pub saved: i64,
    pub steps: usize,
    /// (tied, parameters, final validation loss) of the two mini-GPT runs.
    pub runs: Vec<(bool, i64, f64)>,
}

pub fn run(context: &RunContext, steps: usize) -> Result<Ex21_5> {
    let small = GptConfig::gpt2_small();
    let untied = ParameterCounts::from_config(&small).total();
    let tied = ParameterCounts::from_config(&GptConfig { tie_embeddings: true, ..small }).total();
    let text = minigpt::small_corpus(context)?;
    let mut runs = Vec::new();
    for tie in [true, false] {
        let out_dir = context.out_dir.join(if tie { "ex21_5-tied" } else { "ex21_5-untied" });
        let run_context = RunContext { out_dir, ..context.clone() };
        let options = MiniGptOptions { tie_embeddings: tie, ..MiniGptOptions::small(steps) };
        let report = minigpt::run(&run_context, &text, &options)?;
        runs.push((tie, report.parameters, report.final_val_loss));
    }
    Ok(Ex21_5 { untied, tied, saved: untied - tied, steps, runs })
}

impl fmt::Display for Ex21_5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "GPT-2 small: {} parameters untied, {} tied: tying saves {} = 50,257 x 768.",
            self.untied, self.tied, self.saved
        )?;
        writeln!(f, "Mini-GPT (2 layers, width 64) on the first 200,000 characters, {} steps:", self.steps)?;
        for (tie, parameters, loss) in &self.runs {
            writeln!(
                f,
                "  {:6}: {parameters} parameters, validation loss {loss:.3}",
                if *tie { "tied" } else { "untied" }
            )?;
        }
        write!(
            f,
            "The embedding maps a token to a vector and the head scores a vector against every token: tying makes \
             both use one notion of similarity and halves the vocabulary's parameters, which matters most when \
             the vocabulary is large next to the model. Untied weights can help when input and output roles differ \
             (rare tokens seen often as outputs, or a model large enough that the saving is negligible)."
        )
    }
}
