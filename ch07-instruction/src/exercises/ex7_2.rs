//! Exercise 7.2: mask the prompt (instruction and input) in the targets, so the loss covers
//! only the response. The validation loss then measures the response alone.

use shared::app::exercise::Report;

use super::{compare, Exercise};

pub const EXERCISE: Exercise = Exercise {
    id: "7.2",
    summary: "mask the instruction and input tokens out of the loss (targets -100) and compare with the book's run",
    run: |context| {
        let base = &context.flags;
        Report::new(&compare(context, base, "prompt masked", |o| o.mask_instructions = true)?)
    },
};
