//! Exercise 6.2: fine-tune every parameter instead of only the last block, the final norm
//! and the head.

use shared::app::exercise::Report;
use shared::model::classifier::Trainable;

use super::{compare, Exercise};

pub const EXERCISE: Exercise = Exercise {
    id: "6.2",
    summary: "fine-tune the whole model instead of the last block (the book: 96.67 % test accuracy)",
    run: |context| Report::new(&compare(context, "all parameters trained", |o| o.trainable = Trainable::All)?),
};
