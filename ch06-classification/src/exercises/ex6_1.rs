//! Exercise 6.1: pad every text to the model's full context (1,024 tokens for GPT-2) instead
//! of the longest training text (120 tokens).

use shared::app::exercise::Report;
use shared::data::classification::Padding;

use super::{compare, Exercise};

pub const EXERCISE: Exercise = Exercise {
    id: "6.1",
    summary: "pad to the model's full context (GPT-2: 1,024 tokens) instead of the longest message (the book: 78.33 % test accuracy)",
    run: |context| Report::new(&compare(context, "padded to the full context", |o| o.padding = Padding::Context)?),
};
