//! Preference data for DPO (the companion's `ch07/04_preference-tuning-with-dpo`):
//! instruction records with a `chosen` and a `rejected` response, tokenised once (the prompt,
//! and the prompt followed by each response in the template's format), and the notebook's
//! collate function: both responses of every pair padded to one length with the end-of-text
//! token, and masks that keep only the response tokens for the log-probabilities.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use shared::data::dataset::EpochOrder;
use shared::data::{DataLocator, PREFERENCE_DATA};
use shared::tokenizer::Tokenizer;
use tch::{Kind, Tensor};

use crate::records::{self, InstructionRecord};
use crate::template::PromptTemplate;

/// An instruction record with the response to prefer and the one to avoid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferenceRecord {
    #[serde(flatten)]
    pub record: InstructionRecord,
    pub chosen: String,
    pub rejected: String,
}

/// The file `--data` names, or by default the companion's preference data (bundled).
pub fn locate(locator: &DataLocator) -> Result<PathBuf> {
    Ok(locator.locate(&PREFERENCE_DATA)?)
}

/// Reads and checks the records of `path` (a JSON array of objects).
pub fn load(path: &Path) -> Result<Vec<PreferenceRecord>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("{} is not a usable preference data file", path.display()))
}

/// Parses a JSON array of preference records: an instruction record's string fields
/// (`instruction`, `input`, `output`) and the strings `chosen` and `rejected`. All problems
/// are reported, each with its record's index.
pub fn parse(text: &str) -> Result<Vec<PreferenceRecord>> {
    records::parse_array(text, |item| {
        let response = |name: &str| records::string_field(item, name, true).map(Option::unwrap_or_default);
        Ok(PreferenceRecord {
            record: records::record(item)?,
            chosen: response("chosen")?,
            rejected: response("rejected")?,
        })
    })
}

/// One tokenised pair: the prompt, and the prompt followed by each response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferenceExample {
    pub prompt: Vec<i64>,
    pub chosen: Vec<i64>,
    pub rejected: Vec<i64>,
}

/// The notebook's `PreferenceDataset`: every record formatted with the template (the
/// response after the template's response marker) and tokenised once, with the token rows
/// are padded with.
#[derive(Debug, Clone)]
pub struct PreferenceDataset {
    pub examples: Vec<PreferenceExample>,
    pub pad_id: i64,
}

impl PreferenceDataset {
    pub fn new(records: &[PreferenceRecord], template: &dyn PromptTemplate, tokenizer: &dyn Tokenizer) -> Result<Self> {
        let pad_id = tokenizer.end_of_text().context("the tokenizer has no end-of-text token to pad with")?;
        let encode = |text: &str| template.encode_ids(tokenizer, text);
        let examples = records
            .iter()
            .map(|pair| {
                let prompt = template.format_input(&pair.record);
                Ok(PreferenceExample {
                    prompt: encode(&prompt)?,
                    chosen: encode(&(prompt.clone() + &template.format_response(&pair.chosen)))?,
                    rejected: encode(&(prompt + &template.format_response(&pair.rejected)))?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { examples, pad_id: i64::from(pad_id) })
    }
}

/// A collated batch: both responses' rows `(B, T)` and their masks (true where a token's
/// log-probability counts).
#[derive(Debug)]
pub struct PreferenceBatch {
    pub chosen: Tensor,
    pub rejected: Tensor,
    pub chosen_mask: Tensor,
    pub rejected_mask: Tensor,
}

/// The collate function's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PreferenceCollate {
    /// Keep at most this many positions per row (the notebook: 1,024, the model's context).
    pub allowed_max_length: Option<usize>,
    /// Leave the prompt out of the masks (the notebook's default), and the two tokens after
    /// it, which in the Alpaca format are the line breaks before `### Response:`.
    pub mask_prompt: bool,
}

/// The notebook's `custom_collate_fn`: every chosen and rejected row padded with `pad_id`
/// to the longest of them plus one; the masks are false on the padding and, with
/// `mask_prompt`, on the prompt and the two tokens after it; rows cut to
/// `allowed_max_length`.
pub fn collate(examples: &[&PreferenceExample], options: PreferenceCollate, pad_id: i64) -> PreferenceBatch {
    let longest = examples.iter().flat_map(|e| [e.chosen.len(), e.rejected.len()]).max().unwrap_or(0) + 1;
    let width = options.allowed_max_length.map_or(longest, |max| longest.min(max));
    let rows = |pick: fn(&PreferenceExample) -> &Vec<i64>| {
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for example in examples {
            let sequence = pick(example);
            let mut padded = sequence.clone();
            padded.resize(longest, pad_id);
            let mut keep: Vec<bool> = (0..longest).map(|i| i < sequence.len()).collect();
            if options.mask_prompt {
                keep[..(example.prompt.len() + 2).min(longest)].fill(false);
            }
            ids.extend_from_slice(&padded[..width]);
            mask.extend_from_slice(&keep[..width]);
        }
        let shape = [examples.len() as i64, width as i64];
        (Tensor::from_slice(&ids).view(shape), Tensor::from_slice(&mask).view(shape).to_kind(Kind::Bool))
    };
    let (chosen, chosen_mask) = rows(|e| &e.chosen);
    let (rejected, rejected_mask) = rows(|e| &e.rejected);
    PreferenceBatch { chosen, rejected, chosen_mask, rejected_mask }
}

/// Batches of a [`PreferenceDataset`], shuffled and with `drop_last` as PyTorch's
/// `DataLoader` draws them ([`EpochOrder`]).
#[derive(Debug, Clone)]
pub struct PreferenceLoader {
    pub dataset: PreferenceDataset,
    pub batch_size: usize,
    pub shuffle: bool,
    pub drop_last: bool,
    pub collate: PreferenceCollate,
}

impl PreferenceLoader {
    pub fn batch_count(&self) -> usize {
        shared::data::dataset::batch_count(self.dataset.examples.len(), self.batch_size, self.drop_last)
    }

    /// One epoch's batches (a shuffled loader draws its order from the global generator).
    pub fn batches(&self) -> impl Iterator<Item = PreferenceBatch> + '_ {
        let mut order = EpochOrder::start(self.dataset.examples.len(), self.shuffle);
        (0..self.batch_count()).map(move |i| {
            let examples: Vec<&PreferenceExample> =
                order.batch(i, self.batch_size).iter().map(|&j| &self.dataset.examples[j]).collect();
            collate(&examples, self.collate, self.dataset.pad_id)
        })
    }
}
