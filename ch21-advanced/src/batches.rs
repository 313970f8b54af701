//! Training batches as nanoGPT draws them: `batch` windows of `block + 1` tokens at uniformly
//! random offsets of a token stream (`torch.randint(len(data) - block_size, (batch_size,))`),
//! inputs the first `block` tokens, targets the last `block`. Windows may start with a prompt
//! whose tokens are given, not predicted (their targets are [`IGNORE_INDEX`]).

use anyhow::{ensure, Result};
use shared::data::dataset::Batch;
use shared::data::dataset::BatchSource;
use shared::train::IGNORE_INDEX;
use tch::{Device, Kind, Tensor};

/// `batches` random batches per pass, drawn from the global generator (seed it to repeat).
#[derive(Debug)]
pub struct RandomWindows {
    tokens: Tensor,
    block: i64,
    batch: i64,
    batches: usize,
    max_token_id: i64,
    /// Tokens at the start of each window that are not predicted.
    prompt: i64,
    /// The offsets windows may start at (`None`: any).
    starts: Option<Tensor>,
}

impl RandomWindows {
    pub fn new(tokens: &[u32], block: i64, batch: i64, batches: usize) -> Result<Self> {
        ensure!(block > 0 && batch > 0, "the block and batch sizes must be positive");
        ensure!(
            tokens.len() as i64 > block + 1,
            "the text has {} tokens, too few for windows of {block} tokens and their targets",
            tokens.len()
        );
        let ids: Vec<i64> = tokens.iter().map(|&id| i64::from(id)).collect();
        let max_token_id = ids.iter().copied().max().unwrap_or(0);
        Ok(Self { tokens: Tensor::from_slice(&ids), block, batch, batches, max_token_id, prompt: 0, starts: None })
    }

    /// The same stream with windows starting only at `starts` (offsets into it; those too
    /// close to the end for a window are left out).
    pub fn with_starts(self, starts: &[i64]) -> Result<Self> {
        let last = self.tokens.size()[0] - self.block - 1;
        let starts: Vec<i64> = starts.iter().copied().filter(|s| (0..=last).contains(s)).collect();
        ensure!(!starts.is_empty(), "no window of {} tokens starts at the given offsets", self.block);
        Ok(Self { starts: Some(Tensor::from_slice(&starts)), ..self })
    }

    /// The same windows with their first `prompt` tokens a prompt: the targets that are
    /// prompt tokens (the first `prompt - 1`) drop out of the loss.
    pub fn with_prompt(self, prompt: i64) -> Self {
        Self { prompt, ..self }
    }

    /// The same stream, `batches` batches per pass.
    pub fn with_batches(&self, batches: usize) -> Self {
        Self {
            tokens: self.tokens.shallow_clone(),
            batches,
            starts: self.starts.as_ref().map(Tensor::shallow_clone),
            ..*self
        }
    }

    /// One batch of random windows.
    pub fn draw(&self) -> Batch {
        let n = self.tokens.size()[0];
        let starts = match &self.starts {
            None => Tensor::randint_low(0, n - self.block, [self.batch], (Kind::Int64, Device::Cpu)),
            Some(starts) => {
                let pick = Tensor::randint(starts.size()[0], [self.batch], (Kind::Int64, Device::Cpu));
                starts.index_select(0, &pick)
            }
        };
        let offsets = Tensor::arange(self.block + 1, (Kind::Int64, Device::Cpu));
        let index = (starts.unsqueeze(1) + offsets.unsqueeze(0)).view([-1]);
        let windows = self.tokens.index_select(0, &index).view([self.batch, self.block + 1]);
        let targets = windows.narrow(1, 1, self.block).copy();
        if self.prompt > 1 {
            let _ = targets.narrow(1, 0, self.prompt - 1).fill_(IGNORE_INDEX);
        }
        Batch { inputs: windows.narrow(1, 0, self.block), targets }
    }
}

impl BatchSource for RandomWindows {
    fn batch_count(&self) -> usize {
        self.batches
    }

    fn batches(&self) -> Box<dyn Iterator<Item = Batch> + '_> {
        Box::new((0..self.batches).map(|_| self.draw()))
    }

    fn max_token_id(&self) -> Option<i64> {
        Some(self.max_token_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_the_inputs_shifted_by_one() {
        let _rng = shared::core::device::global_rng_lock();
        tch::manual_seed(1);
        let tokens: Vec<u32> = (0..50).collect();
        let windows = RandomWindows::new(&tokens, 8, 3, 2).unwrap();
        let batches: Vec<Batch> = windows.batches().collect();
        assert_eq!(batches.len(), 2);
        for batch in batches {
            assert_eq!(batch.inputs.size(), [3, 8]);
            // consecutive ids: each row counts up from its start, the targets one ahead
            assert!((&batch.targets - &batch.inputs).eq(1).all().int64_value(&[]) == 1);
            assert!((batch.inputs.narrow(1, 1, 7) - batch.inputs.narrow(1, 0, 7)).eq(1).all().int64_value(&[]) == 1);
            assert!(batch.targets.max().int64_value(&[]) <= 49);
        }
        assert!(RandomWindows::new(&tokens[..9], 8, 3, 2).is_err());
        // Windows at given offsets only.
        let batch = RandomWindows::new(&tokens, 8, 3, 2).unwrap().with_starts(&[5, 20, 45]).unwrap().draw();
        assert!(Vec::<i64>::try_from(batch.inputs.select(1, 0)).unwrap().iter().all(|s| [5, 20].contains(s)));
        assert!(RandomWindows::new(&tokens, 8, 3, 2).unwrap().with_starts(&[45]).is_err());
        // A 3-token prompt: the targets inside it (tokens 1 and 2) are ignored.
        let batch = RandomWindows::new(&tokens, 8, 3, 2).unwrap().with_prompt(3).draw();
        assert!(batch.targets.narrow(1, 0, 2).eq(IGNORE_INDEX).all().int64_value(&[]) == 1);
        assert!((batch.targets.narrow(1, 2, 6) - batch.inputs.narrow(1, 2, 6)).eq(1).all().int64_value(&[]) == 1);
    }
}
