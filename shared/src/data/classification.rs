//! Chapter 6's data (sections 6.2-6.4): the spam texts as padded token ids
//! ([`ClassificationDataset`], section 6.3's `SpamDataset`), their loader, and the book's
//! splits and three loaders.

use anyhow::{ensure, Result};
use serde::Serialize;
use tch::Tensor;

use super::dataset::{batch_count, Batch, BatchSource, EpochOrder};
use super::spam::{self, Label, Message};
use super::{DataLocator, SMS_SPAM_COLLECTION};
use crate::tokenizer::{Gpt2Tokenizer, END_OF_TEXT_ID};

/// Section 6.3's `SpamDataset`: each text as GPT-2 token ids, cut to `max_length` and padded
/// with `<|endoftext|>` (50256) up to it.
#[derive(Debug, Clone)]
pub struct ClassificationDataset {
    pub inputs: Vec<Vec<i64>>,
    pub labels: Vec<Label>,
    pub max_length: usize,
}

impl ClassificationDataset {
    /// `max_length`: `None` pads to the longest text (the book's default for the training
    /// set); the validation and test sets take the training set's length.
    pub fn new(messages: &[Message], max_length: Option<usize>) -> Result<Self> {
        Self::within(messages, max_length, usize::MAX)
    }

    /// [`ClassificationDataset::new`] for a model of `context_length` tokens: a padded
    /// length beyond it is an error before anything is padded.
    pub fn within(messages: &[Message], max_length: Option<usize>, context_length: usize) -> Result<Self> {
        ensure!(!messages.is_empty(), "the data set has no messages");
        if let Some(n) = max_length {
            check_padded_length(n, context_length)?;
        }
        let tokenizer = Gpt2Tokenizer::new();
        let encoded: Vec<Vec<i64>> =
            messages.iter().map(|m| tokenizer.encode(&m.text).into_iter().map(i64::from).collect()).collect();
        let max_length = max_length.unwrap_or_else(|| encoded.iter().map(Vec::len).max().unwrap_or(0));
        check_padded_length(max_length, context_length)?;
        let inputs = encoded
            .into_iter()
            .map(|mut ids| {
                ids.truncate(max_length);
                ids.resize(max_length, END_OF_TEXT_ID as i64);
                ids
            })
            .collect();
        Ok(Self { inputs, labels: messages.iter().map(|m| m.label).collect(), max_length })
    }

    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }
}

/// Batches of a [`ClassificationDataset`]: `inputs` `(B, max_length)`, `targets` the labels
/// `(B)`, shuffled like PyTorch's `DataLoader` (see [`EpochOrder`]).
#[derive(Debug, Clone)]
pub struct ClassificationLoader {
    pub dataset: ClassificationDataset,
    pub batch_size: usize,
    pub shuffle: bool,
    pub drop_last: bool,
}

impl ClassificationLoader {
    pub fn new(dataset: ClassificationDataset, batch_size: usize, shuffle: bool, drop_last: bool) -> Result<Self> {
        ensure!(batch_size > 0, "batch_size must be at least 1");
        Ok(Self { dataset, batch_size, shuffle, drop_last })
    }

    fn collate(&self, indices: &[usize]) -> Batch {
        let rows = indices.len() as i64;
        let inputs: Vec<i64> = indices.iter().flat_map(|&i| self.dataset.inputs[i].iter().copied()).collect();
        let labels: Vec<i64> = indices.iter().map(|&i| self.dataset.labels[i]).collect();
        Batch { inputs: Tensor::from_slice(&inputs).view([rows, -1]), targets: Tensor::from_slice(&labels) }
    }
}

impl BatchSource for ClassificationLoader {
    fn batch_count(&self) -> usize {
        batch_count(self.dataset.len(), self.batch_size, self.drop_last)
    }

    fn max_token_id(&self) -> Option<i64> {
        self.dataset.inputs.iter().flatten().copied().max()
    }

    fn batches(&self) -> Box<dyn Iterator<Item = Batch> + '_> {
        let mut order = EpochOrder::start(self.dataset.len(), self.shuffle);
        Box::new((0..self.batch_count()).map(move |i| {
            let indices = order.batch(i, self.batch_size).to_vec();
            self.collate(&indices)
        }))
    }
}

/// A padded length must be at least 1 and fit the model's context.
fn check_padded_length(max_length: usize, context_length: usize) -> Result<()> {
    ensure!(max_length > 0, "max_length must be at least 1");
    ensure!(
        max_length <= context_length,
        "a padded length of {max_length} tokens is more than the model's context length of {context_length}: \
         pass a smaller --max-length"
    );
    Ok(())
}

/// The book's balanced splits (1,045 / 149 / 300 messages).
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: Vec<Message>,
    pub validation: Vec<Message>,
    pub test: Vec<Message>,
    /// Records of the collection that were not used, with their line numbers.
    pub malformed: Vec<(usize, String)>,
}

/// Reads the collection, balances it and splits it 70/10/20 with the book's seed 123.
pub fn prepare(data: &DataLocator) -> Result<Splits> {
    let text = data.read_to_string(&SMS_SPAM_COLLECTION)?;
    let parsed = spam::parse_collection(&text);
    ensure!(!parsed.messages.is_empty(), "the data has no ham<TAB>text or spam<TAB>text records");
    let balanced = spam::balance(&parsed.messages, 123);
    let (train, validation, test) = spam::random_split(&balanced, 0.7, 0.1, 123);
    ensure!(!validation.is_empty() && !test.is_empty(), "too few messages to split into train, validation and test");
    Ok(Splits { train, validation, test, malformed: parsed.malformed })
}

/// How long every text is made by padding or cutting (section 6.3): the longest training
/// text (the book), the model's whole context (exercise 6.1), or a number of tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Padding {
    Longest,
    Context,
    Tokens(usize),
}

impl std::str::FromStr for Padding {
    type Err = String;

    /// `longest`, `context` or a number of tokens (at least 1).
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "longest" => Ok(Self::Longest),
            "context" => Ok(Self::Context),
            _ => match text.parse::<usize>() {
                Ok(0) | Err(_) => {
                    Err(format!("expected longest, context or a number of tokens (1 or more), got '{text}'"))
                }
                Ok(n) => Ok(Self::Tokens(n)),
            },
        }
    }
}

/// The three loaders: batches of `batch_size`, the training loader shuffled with
/// `drop_last`; texts padded (or cut) as `padding` says.
pub struct Loaders {
    pub train: ClassificationLoader,
    pub validation: ClassificationLoader,
    pub test: ClassificationLoader,
    pub max_length: usize,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct LoaderSizes {
    pub max_length: usize,
    pub train_batches: usize,
    pub validation_batches: usize,
    pub test_batches: usize,
}

pub fn loaders(splits: &Splits, padding: Padding, context_length: usize, batch_size: usize) -> Result<Loaders> {
    let max_length = match padding {
        Padding::Longest => None,
        Padding::Context => Some(context_length),
        Padding::Tokens(n) => Some(n),
    };
    let train = ClassificationDataset::within(&splits.train, max_length, context_length)?;
    let max_length = train.max_length;
    Ok(Loaders {
        train: ClassificationLoader::new(train, batch_size, true, true)?,
        validation: ClassificationLoader::new(
            ClassificationDataset::new(&splits.validation, Some(max_length))?,
            batch_size,
            false,
            false,
        )?,
        test: ClassificationLoader::new(
            ClassificationDataset::new(&splits.test, Some(max_length))?,
            batch_size,
            false,
            false,
        )?,
        max_length,
    })
}

impl Splits {
    /// At most the first `limit` messages of each split (a quick experiment).
    pub fn truncate(&mut self, limit: usize) {
        for split in [&mut self.train, &mut self.validation, &mut self.test] {
            split.truncate(limit);
        }
    }
}

impl Loaders {
    pub fn sizes(&self) -> LoaderSizes {
        LoaderSizes {
            max_length: self.max_length,
            train_batches: self.train.batch_count(),
            validation_batches: self.validation.batch_count(),
            test_batches: self.test.batch_count(),
        }
    }
}
