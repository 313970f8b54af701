//! Exercise 2.2: data loaders with other window lengths and strides.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::{Exercise, Report};
use shared::core::tensors::rows_i64;
use shared::data::dataset::{create_dataloader_v1, LoaderConfig};
use shared::data::THE_VERDICT;

pub const EXERCISE: Exercise = Exercise {
    id: "2.2",
    summary: "first batches of loaders with max_length 2 / stride 2 and max_length 8 / stride 2 (batch 4)",
    run: |context| Report::new(&run(context)?),
};

/// One loader's settings and its first batch.
#[derive(Debug, Clone, Serialize)]
pub struct FirstBatch {
    pub batch_size: usize,
    pub max_length: usize,
    pub stride: usize,
    pub inputs: Vec<Vec<i64>>,
    pub targets: Vec<Vec<i64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex2_2 {
    pub loaders: Vec<FirstBatch>,
}

/// The two loaders of the exercise, in order, unshuffled as in the book's solution.
pub fn run(context: &RunContext) -> Result<Ex2_2> {
    let raw_text = context.data.read_to_string(&THE_VERDICT)?;
    let loaders = [(2, 2), (8, 2)]
        .into_iter()
        .map(|(max_length, stride)| -> Result<FirstBatch> {
            let config = LoaderConfig { batch_size: 4, max_length, stride, shuffle: false, drop_last: false };
            let batch = create_dataloader_v1(&raw_text, config)?.iter().next().expect("The Verdict fills a batch");
            Ok(FirstBatch {
                batch_size: config.batch_size,
                max_length,
                stride,
                inputs: rows_i64(&batch.inputs),
                targets: rows_i64(&batch.targets),
            })
        })
        .collect::<Result<_>>()?;
    Ok(Ex2_2 { loaders })
}

impl fmt::Display for Ex2_2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, loader) in self.loaders.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(
                f,
                "batch_size={}, max_length={}, stride={}:",
                loader.batch_size, loader.max_length, loader.stride
            )?;
            writeln!(f, "  inputs:  {:?}", loader.inputs)?;
            write!(f, "  targets: {:?}", loader.targets)?;
        }
        Ok(())
    }
}
