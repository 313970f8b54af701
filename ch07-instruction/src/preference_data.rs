//! Making preference data with a local model served by Ollama, as the companion's
//! `create-preference-data-ollama.ipynb` does: for every instruction record the model
//! rewrites the expected output to be slightly more polite or slightly more impolite (a
//! seeded coin decides which); the politer of the two responses becomes `chosen`, the other
//! `rejected`. The requests go through the judge's client ([`OllamaClient`]: seed 123,
//! temperature 0), so a run repeats.

use anyhow::Result;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::judge::OllamaClient;
use crate::preference::PreferenceRecord;
use crate::records::InstructionRecord;
use crate::template::PromptTemplate;

/// Which way a record's output is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Politeness {
    Polite,
    Impolite,
}

impl Politeness {
    pub fn word(self) -> &'static str {
        match self {
            Self::Polite => "polite",
            Self::Impolite => "impolite",
        }
    }
}

/// The request for one rewrite: the record as the model's prompt shows it, its expected
/// output, and the direction, asking for a minimal change and nothing but the response.
pub fn rewrite_prompt(template: &dyn PromptTemplate, record: &InstructionRecord, politeness: Politeness) -> String {
    format!(
        "Given the input `{}` and correct output `{}`, slightly rewrite the output to be more {}. Keep the \
         modification minimal. Only return the generated response and nothing else.",
        template.format_input(record),
        record.output,
        politeness.word()
    )
}

/// A record with the rewrite in place: the politer response is chosen.
pub fn pair(record: &InstructionRecord, politeness: Politeness, rewrite: String) -> PreferenceRecord {
    let (chosen, rejected) = match politeness {
        Politeness::Polite => (rewrite, record.output.clone()),
        Politeness::Impolite => (record.output.clone(), rewrite),
    };
    PreferenceRecord { record: InstructionRecord { model_response: None, ..record.clone() }, chosen, rejected }
}

/// Rewrites every record's output through `client`, the direction of each drawn from a
/// generator seeded with `seed`; `on_pair` sees each pair as it is made (for a progress
/// bar, or to keep what was made when the server fails midway).
pub fn make_preference_data(
    client: &OllamaClient,
    template: &dyn PromptTemplate,
    records: &[InstructionRecord],
    seed: u64,
    mut on_pair: impl FnMut(&PreferenceRecord),
) -> Result<Vec<PreferenceRecord>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pairs = Vec::with_capacity(records.len());
    for record in records {
        let politeness = if rng.random_bool(0.5) { Politeness::Polite } else { Politeness::Impolite };
        let rewrite = client.chat(&rewrite_prompt(template, record, politeness))?;
        let made = pair(record, politeness, rewrite.trim().to_string());
        on_pair(&made);
        pairs.push(made);
    }
    Ok(pairs)
}
