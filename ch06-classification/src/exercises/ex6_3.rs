//! Exercise 6.3: classify from the first output token instead of the last. Under the causal
//! mask the first token sees only itself, so it knows nothing of the rest of the message.

use shared::app::exercise::Report;
use shared::model::classifier::TokenPosition;

use super::{compare, Exercise};

pub const EXERCISE: Exercise = Exercise {
    id: "6.3",
    summary: "classify from the first output token instead of the last (the book: 75.00 % test accuracy)",
    run: |context| Report::new(&compare(context, "first token decides", |o| o.position = TokenPosition::First)?),
};
