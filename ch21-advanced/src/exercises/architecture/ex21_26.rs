//! Exercise 21.26: sliding-window attention, as `compare window` at a small budget: windows of
//! 8, 16, 32 and 64 (full causal) positions, their score memory and FLOPs per layer, and the
//! copy task that shows the reach of `layers x (window - 1)` positions.

use crate::exercises::Exercise;

use crate::compare::{self, Study};

pub const EXERCISE: Exercise = Exercise {
    id: "21.26",
    summary: "sliding windows of 8, 16, 32 and 64 (full): validation loss, scores and FLOPs per layer, and a copy task's reach of layers x (window - 1) (`compare window`, 400 steps)",
    run: |context| compare::exercise_report(context, Study::Window, 400),
};
