//! Section 6.2-6.4: the spam data from the data set to the three loaders.

use super::{ClassificationDataset, ClassificationLoader};
use crate::data::spam::{self, Message};
use crate::data::{DataLocator, SMS_SPAM_COLLECTION};
use anyhow::{ensure, Result};
use serde::Serialize;

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
    /// Every token id of the three splits is inside `model`'s vocabulary.
    pub fn check_token_ids(&self, model: &crate::model::GptModel) -> Result<()> {
        crate::train::check_token_ids(
            model,
            &[("training", &self.train), ("validation", &self.validation), ("test", &self.test)],
        )
    }

    pub fn sizes(&self) -> LoaderSizes {
        use crate::train::BatchSource;
        LoaderSizes {
            max_length: self.max_length,
            train_batches: self.train.batch_count(),
            validation_batches: self.validation.batch_count(),
            test_batches: self.test.batch_count(),
        }
    }
}
