//! Section A.6: the five-example toy data set and a data loader over it that shuffles like
//! PyTorch's `DataLoader` (see `shared::data::dataset::EpochOrder` for what is replicated).

use shared::data::dataset::{batch_count, EpochOrder};
use tch::{Kind, Tensor};

/// Features `(N, 2)` float32 and class labels `(N,)` int64.
#[derive(Debug)]
pub struct ToyDataset {
    pub features: Tensor,
    pub labels: Tensor,
}

impl ToyDataset {
    fn new(features: &[[f32; 2]], labels: &[i64]) -> Self {
        Self {
            features: Tensor::from_slice(features.as_flattened()).view([features.len() as i64, 2]),
            labels: Tensor::from_slice(labels),
        }
    }

    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The features and labels of the examples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> (Tensor, Tensor) {
        let index = Tensor::from_slice(&indices.iter().map(|&i| i as i64).collect::<Vec<_>>());
        (self.features.index_select(0, &index), self.labels.index_select(0, &index))
    }
}

/// Listing A.5's training examples: three of class 0, two of class 1.
pub fn train_set() -> ToyDataset {
    ToyDataset::new(&[[-1.2, 3.1], [-0.9, 2.9], [-0.5, 2.6], [2.3, -1.1], [2.7, -1.5]], &[0, 0, 0, 1, 1])
}

/// Listing A.5's test examples.
pub fn test_set() -> ToyDataset {
    ToyDataset::new(&[[-0.8, 2.8], [2.6, -1.6]], &[0, 1])
}

/// Batches of (features, labels) over a [`ToyDataset`].
#[derive(Debug)]
pub struct ToyLoader<'a> {
    pub dataset: &'a ToyDataset,
    pub batch_size: usize,
    pub shuffle: bool,
    pub drop_last: bool,
}

impl<'a> ToyLoader<'a> {
    pub fn new(dataset: &'a ToyDataset, batch_size: usize, shuffle: bool, drop_last: bool) -> Self {
        assert!(batch_size > 0, "batch_size must be at least 1");
        Self { dataset, batch_size, shuffle, drop_last }
    }

    pub fn len(&self) -> usize {
        batch_count(self.dataset.len(), self.batch_size, self.drop_last)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One epoch of batches.
    pub fn iter(&self) -> impl Iterator<Item = (Tensor, Tensor)> + '_ {
        let mut order = EpochOrder::start(self.dataset.len(), self.shuffle);
        (0..self.len()).map(move |batch| self.dataset.select(order.batch(batch, self.batch_size)))
    }
}

/// A batch's features and labels as plain vectors.
pub fn batch_values(features: &Tensor, labels: &Tensor) -> (Vec<[f32; 2]>, Vec<i64>) {
    let flat = Vec::<f32>::try_from(features.to_kind(Kind::Float).contiguous().view(-1)).expect("float features");
    let pairs = flat.chunks(2).map(|c| [c[0], c[1]]).collect();
    (pairs, Vec::<i64>::try_from(labels).expect("int64 labels"))
}
