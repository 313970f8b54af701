//! Exercise 7.3: fine-tune on Stanford Alpaca's 52,002 records instead of the book's 1,100,
//! downloaded from their canonical address (`--data alpaca` on the main run does the same).
//! The records are longer, so `--allowed-max-length` and `--batch-size` bound the memory.

use shared::app::cli::RunContext;
use shared::app::exercise::Report;
use shared::data::DataLocator;

use super::{Comparison, Exercise, RunSummary};
use crate::finetune;

pub const EXERCISE: Exercise = Exercise {
    id: "7.3",
    summary: "fine-tune on the 52k Stanford Alpaca records (downloaded; mind --allowed-max-length and --batch-size)",
    run: |context| {
        let data = DataLocator { explicit: Some("alpaca".into()), ..context.data.clone() };
        let run = RunContext { data, ..context.run.clone() };
        let report = finetune::run(&run, &context.flags)?;
        Report::new(&Comparison { runs: vec![RunSummary::new("Stanford Alpaca", &report, run.out_dir)] })
    },
};
