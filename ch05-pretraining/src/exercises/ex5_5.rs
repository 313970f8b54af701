//! Exercise 5.5: the training and validation losses of OpenAI's GPT-2 124M on The Verdict,
//! computed as section 5.1.3 does for the untrained model.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::{Exercise, Report};
use shared::app::model_source::ModelSource;
use shared::data::THE_VERDICT;

use crate::decode::{text_losses, TextLosses};

pub const EXERCISE: Exercise = Exercise {
    id: "5.5",
    summary: "training and validation loss of OpenAI's GPT-2 124M on The Verdict (needs the weights)",
    run: |context| {
        let text = context.data.read_to_string(&THE_VERDICT)?;
        Report::new(&run(&ModelSource::Weights("gpt2-small".into()), &text, 256, context.device, context.seed)?)
    },
};

#[derive(Debug, Clone, Serialize)]
pub struct Ex5_5 {
    pub model: String,
    pub losses: TextLosses,
}

/// The losses of the model from `source` on the book's 90/10 split of `text`.
pub fn run(source: &ModelSource, text: &str, context_length: usize, device: tch::Device, seed: u64) -> Result<Ex5_5> {
    let loaded = source.load(device, seed)?;
    let losses = text_losses(&loaded.model, text, 0.9, context_length, seed)?;
    Ok(Ex5_5 { model: loaded.description, losses })
}

impl fmt::Display for Ex5_5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Model: {}", self.model)?;
        write!(f, "{}", self.losses)
    }
}
