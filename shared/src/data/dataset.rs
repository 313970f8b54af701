//! The sliding-window next-token dataset and its batch loader (book section 2.6,
//! listings 2.5 and 2.6: `GPTDatasetV1` and `create_dataloader_v1`).

use anyhow::{bail, ensure, Result};
use tch::Tensor;

use crate::core::torch_rng;
use crate::tokenizer::{Gpt2Tokenizer, TokenId, Tokenizer};

/// Listing 2.5: every window of `max_length` tokens whose start advances by `stride`,
/// paired with the same window shifted one token to the right (the next-token targets).
///
/// As in the book, windows start at `0, stride, 2 * stride, ...` while
/// `start < len(token_ids) - max_length`.
#[derive(Debug, Clone)]
pub struct GptDataset {
    token_ids: Vec<i64>,
    starts: Vec<usize>,
    max_length: usize,
}

impl GptDataset {
    pub fn new(token_ids: &[TokenId], max_length: usize, stride: usize) -> Result<Self> {
        ensure!(max_length > 0, "max_length must be at least 1");
        ensure!(stride > 0, "stride must be at least 1");
        let starts = (0..token_ids.len().saturating_sub(max_length)).step_by(stride).collect();
        Ok(Self { token_ids: token_ids.iter().map(|&id| id as i64).collect(), starts, max_length })
    }

    /// Tokenizes `text` with GPT-2's BPE (`<|endoftext|>` allowed), then windows it.
    pub fn from_text(text: &str, max_length: usize, stride: usize) -> Result<Self> {
        Self::new(&Gpt2Tokenizer::new().encode(text), max_length, stride)
    }

    /// Tokenizes `text` with any tokenizer, then windows it.
    pub fn from_text_with(text: &str, tokenizer: &dyn Tokenizer, max_length: usize, stride: usize) -> Result<Self> {
        Self::new(&tokenizer.encode(text)?, max_length, stride)
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The largest token id of the text (`None` when it has none).
    pub fn max_token_id(&self) -> Option<i64> {
        self.token_ids.iter().copied().max()
    }

    /// Sample `index`: (input ids, target ids), each `max_length` long.
    pub fn get(&self, index: usize) -> (&[i64], &[i64]) {
        let start = self.starts[index];
        (&self.token_ids[start..start + self.max_length], &self.token_ids[start + 1..start + self.max_length + 1])
    }
}

/// The arguments of listing 2.6's `create_dataloader_v1`, with the book's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub max_length: usize,
    pub stride: usize,
    pub shuffle: bool,
    pub drop_last: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self { batch_size: 4, max_length: 256, stride: 128, shuffle: true, drop_last: true }
    }
}

/// One batch: `inputs` and `targets`, both int64 of shape `[batch, max_length]` on the CPU.
#[derive(Debug)]
pub struct Batch {
    pub inputs: Tensor,
    pub targets: Tensor,
}

/// The order in which one epoch visits `len` samples, drawn exactly as PyTorch's
/// `DataLoader(dataset, batch_size, shuffle, drop_last, num_workers=0)` does on the CPU.
///
/// Replicated behaviour, which matters for bit-for-bit parity with the book's training runs:
/// - starting an epoch (creating the loader's iterator, `_BaseDataLoaderIter.__init__`)
///   draws one int64 "base seed" from the global generator, shuffled or not;
/// - a shuffled epoch draws a second int64 from the global generator when its first batch is
///   requested (`RandomSampler.__iter__`) and permutes the samples with `torch.randperm` on a
///   fresh generator seeded with it (see [`torch_rng`]).
///
/// So the shuffle is seeded by `tch::manual_seed` (the binaries' `--seed`), as in the book.
#[derive(Debug, Clone)]
pub struct EpochOrder {
    len: usize,
    shuffle: bool,
    order: Option<Vec<usize>>,
}

impl EpochOrder {
    /// Starts an epoch over `len` samples (one draw from the global generator).
    pub fn start(len: usize, shuffle: bool) -> Self {
        let _base_seed = torch_rng::draw_global_seed();
        Self { len, shuffle, order: None }
    }

    /// The sample indices of batch `index` (the last batch may be short); the first call of a
    /// shuffled epoch draws its permutation.
    pub fn batch(&mut self, index: usize, batch_size: usize) -> &[usize] {
        let (len, shuffle) = (self.len, self.shuffle);
        let order = self.order.get_or_insert_with(|| {
            if shuffle {
                torch_rng::randperm(len, torch_rng::draw_global_seed())
            } else {
                (0..len).collect()
            }
        });
        let start = (index * batch_size).min(len);
        &order[start..(start + batch_size).min(len)]
    }
}

/// The number of batches of `batch_size` in `samples` (`len(dataloader)`).
pub fn batch_count(samples: usize, batch_size: usize, drop_last: bool) -> usize {
    if drop_last {
        samples / batch_size
    } else {
        samples.div_ceil(batch_size)
    }
}

/// A batch loader over a [`GptDataset`], ordered by [`EpochOrder`] like PyTorch's `DataLoader`.
#[derive(Debug, Clone)]
pub struct DataLoader {
    dataset: GptDataset,
    batch_size: usize,
    shuffle: bool,
    drop_last: bool,
}

impl DataLoader {
    pub fn new(dataset: GptDataset, batch_size: usize, shuffle: bool, drop_last: bool) -> Result<Self> {
        ensure!(batch_size > 0, "batch_size must be at least 1");
        Ok(Self { dataset, batch_size, shuffle, drop_last })
    }

    pub fn dataset(&self) -> &GptDataset {
        &self.dataset
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Whether every epoch draws a new order.
    pub fn shuffle(&self) -> bool {
        self.shuffle
    }

    /// Whether a last, short batch is left out.
    pub fn drop_last(&self) -> bool {
        self.drop_last
    }

    /// The number of batches in one pass (`len(dataloader)`).
    pub fn len(&self) -> usize {
        let samples = self.dataset.len();
        if self.drop_last {
            samples / self.batch_size
        } else {
            samples.div_ceil(self.batch_size)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One pass over the data set (one epoch).
    pub fn iter(&self) -> Batches<'_> {
        Batches { loader: self, order: EpochOrder::start(self.dataset.len(), self.shuffle), next_batch: 0 }
    }

    /// The batch made of these sample indices.
    pub fn collate(&self, indices: &[usize]) -> Batch {
        let rows = indices.len() as i64;
        let width = self.dataset.max_length as i64;
        let mut inputs = Vec::with_capacity(indices.len() * self.dataset.max_length);
        let mut targets = Vec::with_capacity(inputs.capacity());
        for &index in indices {
            let (input, target) = self.dataset.get(index);
            inputs.extend_from_slice(input);
            targets.extend_from_slice(target);
        }
        Batch {
            inputs: Tensor::from_slice(&inputs).view([rows, width]),
            targets: Tensor::from_slice(&targets).view([rows, width]),
        }
    }
}

impl<'a> IntoIterator for &'a DataLoader {
    type Item = Batch;
    type IntoIter = Batches<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The batches of one epoch, in order.
pub struct Batches<'a> {
    loader: &'a DataLoader,
    order: EpochOrder,
    next_batch: usize,
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let loader = self.loader;
        if self.next_batch >= loader.len() {
            return None;
        }
        let indices = self.order.batch(self.next_batch, loader.batch_size);
        self.next_batch += 1;
        Some(loader.collate(indices))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.loader.len() - self.next_batch;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// Listing 2.6: tokenizes `text` with GPT-2's tokenizer and returns a loader of next-token
/// batches.
pub fn create_dataloader_v1(text: &str, config: LoaderConfig) -> Result<DataLoader> {
    create_dataloader(text, &Gpt2Tokenizer::new(), config)
}

/// [`create_dataloader_v1`] with any tokenizer.
pub fn create_dataloader(text: &str, tokenizer: &dyn Tokenizer, config: LoaderConfig) -> Result<DataLoader> {
    let dataset = GptDataset::from_text_with(text, tokenizer, config.max_length, config.stride)?;
    if dataset.is_empty() {
        bail!(
            "the text is too short for max_length {}: it needs more than {} tokens",
            config.max_length,
            config.max_length
        );
    }
    DataLoader::new(dataset, config.batch_size, config.shuffle, config.drop_last)
}

/// Something that yields a pass of batches, like a PyTorch `DataLoader`.
pub trait BatchSource {
    /// The number of batches in one pass (`len(loader)`).
    fn batch_count(&self) -> usize;
    /// One pass; starting it may draw from the global generator, as PyTorch does.
    fn batches(&self) -> Box<dyn Iterator<Item = Batch> + '_>;
    /// The largest token id any batch's inputs can hold (`None` without data), for
    /// `train::check_token_ids`.
    fn max_token_id(&self) -> Option<i64>;
}

impl BatchSource for DataLoader {
    fn batch_count(&self) -> usize {
        self.len()
    }

    fn max_token_id(&self) -> Option<i64> {
        self.dataset().max_token_id()
    }

    fn batches(&self) -> Box<dyn Iterator<Item = Batch> + '_> {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::device::{global_rng_lock, seed_everything};
    use crate::core::tensors::rows_i64 as rows;

    fn ids(n: u32) -> Vec<TokenId> {
        (0..n).collect()
    }

    #[test]
    fn windows_follow_the_book_range() {
        // range(0, len - max_length, stride): 10 tokens, window 4, stride 2 -> starts 0, 2, 4.
        let dataset = GptDataset::new(&ids(10), 4, 2).unwrap();
        assert_eq!(dataset.len(), 3);
        assert_eq!(dataset.get(2), (&[4, 5, 6, 7][..], &[5, 6, 7, 8][..]));
        assert!(GptDataset::new(&ids(4), 4, 1).unwrap().is_empty());
        assert!(GptDataset::new(&ids(4), 0, 1).is_err());
        assert!(GptDataset::new(&ids(4), 1, 0).is_err());
    }

    #[test]
    fn batches_with_and_without_drop_last() {
        let _rng = global_rng_lock();
        let dataset = GptDataset::new(&ids(12), 2, 1).unwrap(); // 10 samples
        let keep = DataLoader::new(dataset.clone(), 4, false, false).unwrap();
        let sizes: Vec<i64> = keep.iter().map(|b| b.inputs.size()[0]).collect();
        assert_eq!(sizes, [4, 4, 2]);
        let drop = DataLoader::new(dataset, 4, false, true).unwrap();
        assert_eq!(drop.len(), 2);
        let first = drop.iter().next().unwrap();
        assert_eq!(rows(&first.inputs), [[0, 1], [1, 2], [2, 3], [3, 4]]);
        assert_eq!(rows(&first.targets), [[1, 2], [2, 3], [3, 4], [4, 5]]);
    }

    #[test]
    fn shuffling_matches_pytorch_dataloader() {
        // torch.manual_seed(123); DataLoader(9 samples, batch_size=3, shuffle=True,
        // drop_last=True): two draws from the global generator per epoch, randperm on a
        // generator seeded with the second.
        let _rng = global_rng_lock();
        let dataset = GptDataset::new(&ids(10), 1, 1).unwrap(); // 9 samples: sample i = [i]
        let loader = DataLoader::new(dataset, 3, true, true).unwrap();
        seed_everything(123);
        let epoch: Vec<Vec<i64>> = loader.iter().flat_map(|b| rows(&b.inputs)).collect();
        // What torch.utils.data.DataLoader printed (scripts/reference/shared.py).
        let reference: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/pytorch-reference.json")).unwrap();
        let expected: Vec<Vec<i64>> = reference["dataloader_epoch_seed_123"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| vec![v.as_i64().unwrap()])
            .collect();
        assert_eq!(epoch, expected);
        assert_eq!(expected.concat(), [0, 1, 3, 5, 4, 2, 8, 7, 6]);
        // The next epoch draws new seeds, so it is ordered differently.
        let second: Vec<Vec<i64>> = loader.iter().flat_map(|b| rows(&b.inputs)).collect();
        assert_ne!(epoch, second);
    }

    #[test]
    fn too_short_text_is_an_error() {
        let config = LoaderConfig { max_length: 50, ..LoaderConfig::default() };
        let err = create_dataloader_v1("far too short", config).unwrap_err().to_string();
        assert!(err.contains("too short"), "{err}");
    }
}
