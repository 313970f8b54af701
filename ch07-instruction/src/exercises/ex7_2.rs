//! Exercise 7.2: mask the prompt (instruction and input) in the targets, so the loss covers
//! only the response. The validation loss then measures the response alone.

use shared::exercise::{Exercise, Report};

use super::{base_options, compare};

pub const EXERCISE: Exercise = Exercise {
    id: "7.2",
    summary: "mask the instruction and input tokens out of the loss (targets -100) and compare with the book's run",
    run: |context| {
        let base = base_options();
        Report::new(&compare(context, &base, "prompt masked", |o| o.mask_instructions = true)?)
    },
};
