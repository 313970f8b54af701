//! Exercise 6.1: pad every text to the model's full context (1,024 tokens) instead of the
//! longest training text (120 tokens).

use shared::exercise::{Exercise, Report};

use super::compare;

pub const EXERCISE: Exercise = Exercise {
    id: "6.1",
    summary: "pad to the full context of 1,024 tokens instead of the longest message (the book: 78.33 % test accuracy)",
    run: |context| Report::new(&compare(context, "padded to 1,024 tokens", |o| o.max_length = Some(1024))?),
};
