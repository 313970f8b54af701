//! Sections 7.3-7.4: the pre-tokenised instruction data set, the book's
//! `custom_collate_fn` (padding with end-of-text tokens, shifted targets, padding targets
//! after the first replaced by -100, optional truncation), exercise 7.2's masking of the
//! prompt in the targets, and a loader that batches and shuffles like PyTorch's
//! `DataLoader`.

use anyhow::{Context, Result};
use serde::Serialize;
use shared::data::dataset::BatchSource;
use shared::data::dataset::{batch_count, Batch, EpochOrder};
use shared::tokenizer::{Gpt2Tokenizer, Tokenizer, END_OF_TEXT_ID};
use shared::train::IGNORE_INDEX;
use tch::Tensor;

use crate::records::InstructionRecord;
use crate::template::PromptTemplate;

/// The padding token: GPT-2's `<|endoftext|>` (50256).
pub const PAD_TOKEN_ID: i64 = END_OF_TEXT_ID as i64;

/// One tokenised example: the whole text (prompt and response) and how many of its tokens
/// are the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub tokens: Vec<i64>,
    pub prompt_len: usize,
}

/// The book's `InstructionDataset`: every record formatted with a template and tokenised
/// once, up front; with the token its rows are padded with.
#[derive(Debug, Clone)]
pub struct InstructionDataset {
    examples: Vec<Example>,
    pad_id: i64,
}

impl InstructionDataset {
    /// The book's: GPT-2's tokenizer, padded with `<|endoftext|>`.
    pub fn new(records: &[InstructionRecord], template: &dyn PromptTemplate) -> Self {
        Self::tokenized_with(records, template, &Gpt2Tokenizer::new()).expect("GPT-2's tokenizer encodes any text")
    }

    /// With a model's own tokenizer (Llama, Qwen3, Gemma), padded with its end-of-text token.
    pub fn tokenized_with(
        records: &[InstructionRecord],
        template: &dyn PromptTemplate,
        tokenizer: &dyn Tokenizer,
    ) -> Result<Self> {
        let pad_id = tokenizer.end_of_text().context("the tokenizer has no end-of-text token to pad with")?;
        let encode = |text: &str| template.encode_ids(tokenizer, text);
        let examples = records
            .iter()
            .map(|record| {
                let tokens = encode(&template.format_example(record))?;
                Ok(Example { tokens, prompt_len: encode(&template.format_input(record))?.len() })
            })
            .collect::<Result<_>>()?;
        Ok(Self { examples, pad_id: i64::from(pad_id) })
    }

    /// The token rows are padded with.
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    pub fn get(&self, index: usize) -> &Example {
        &self.examples[index]
    }

    /// Token counts of the examples (exercise 7.1 compares them between templates).
    pub fn token_stats(&self) -> TokenStats {
        let total: usize = self.examples.iter().map(|e| e.tokens.len()).sum();
        TokenStats {
            examples: self.len(),
            total,
            mean: total as f64 / self.len().max(1) as f64,
            longest: self.examples.iter().map(|e| e.tokens.len()).max().unwrap_or(0),
        }
    }
}

/// How many tokens a data set's examples hold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TokenStats {
    pub examples: usize,
    pub total: usize,
    pub mean: f64,
    pub longest: usize,
}

/// The collate function's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CollateOptions {
    /// Keep at most this many positions per row (the book: 1,024, the model's context).
    pub allowed_max_length: Option<usize>,
    /// Exercise 7.2: targets that predict prompt tokens become -100 too, so only the
    /// response (and its end-of-text token) is learned.
    pub mask_instructions: bool,
}

/// The book's `custom_collate_fn`: each example gets one end-of-text token and is padded with
/// more to the longest example of the batch plus one; inputs drop the last position, targets
/// the first; every padding target after the first becomes -100 (the first stays, so the
/// model learns to end its answer); with `mask_instructions`, so do the targets of the first
/// `prompt_len - 1` positions; finally rows are cut to `allowed_max_length`.
pub fn collate(examples: &[&Example], options: CollateOptions) -> Batch {
    collate_padded(examples, options, PAD_TOKEN_ID)
}

/// [`collate`] padding with `pad_id` (a model's own end-of-text token).
pub fn collate_padded(examples: &[&Example], options: CollateOptions, pad_id: i64) -> Batch {
    let batch_max_length = examples.iter().map(|e| e.tokens.len() + 1).max().unwrap_or(1);
    let mut inputs = Vec::new();
    let mut targets = Vec::new();
    let mut width = 0;
    for example in examples {
        let mut padded = example.tokens.clone();
        padded.resize(batch_max_length, pad_id);
        let row_inputs = &padded[..batch_max_length - 1];
        let mut row_targets = padded[1..].to_vec();
        let mut pads = row_targets.iter_mut().filter(|t| **t == pad_id);
        pads.next();
        pads.for_each(|t| *t = IGNORE_INDEX);
        if options.mask_instructions {
            let prompt = example.prompt_len.saturating_sub(1).min(row_targets.len());
            row_targets[..prompt].fill(IGNORE_INDEX);
        }
        width = options.allowed_max_length.map_or(row_inputs.len(), |max| row_inputs.len().min(max));
        inputs.extend_from_slice(&row_inputs[..width]);
        targets.extend_from_slice(&row_targets[..width]);
    }
    let rows = examples.len() as i64;
    Batch {
        inputs: Tensor::from_slice(&inputs).view([rows, width as i64]),
        targets: Tensor::from_slice(&targets).view([rows, width as i64]),
    }
}

/// The book's `DataLoader(dataset, batch_size, collate_fn=..., shuffle, drop_last)`, with
/// PyTorch's epoch order and draws from the global generator ([`EpochOrder`]).
#[derive(Debug, Clone)]
pub struct InstructionLoader {
    pub dataset: InstructionDataset,
    pub batch_size: usize,
    pub shuffle: bool,
    pub drop_last: bool,
    pub collate: CollateOptions,
}

impl BatchSource for InstructionLoader {
    fn batch_count(&self) -> usize {
        batch_count(self.dataset.len(), self.batch_size, self.drop_last)
    }

    /// Every batch is padded with at least one end-of-text token.
    fn max_token_id(&self) -> Option<i64> {
        (0..self.dataset.len())
            .flat_map(|i| self.dataset.get(i).tokens.iter().copied())
            .chain([self.dataset.pad_id])
            .max()
    }

    fn batches(&self) -> Box<dyn Iterator<Item = Batch> + '_> {
        let mut order = EpochOrder::start(self.dataset.len(), self.shuffle);
        Box::new((0..self.batch_count()).map(move |i| {
            let examples: Vec<&Example> =
                order.batch(i, self.batch_size).iter().map(|&j| self.dataset.get(j)).collect();
            collate_padded(&examples, self.collate, self.dataset.pad_id)
        }))
    }
}
