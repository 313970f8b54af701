//! Exercise 21.33: multi-token prediction, as `compare mtp` at a small budget: 1, 2, 4 and 8
//! output heads on one trunk, the next-token head's loss, and self-speculative decoding with
//! the extra heads drafting.

use crate::exercises::Exercise;

use crate::compare::{self, Study};

pub const EXERCISE: Exercise = Exercise {
    id: "21.33",
    summary: "multi-token prediction with 1, 2, 4 and 8 heads: next-token loss, samples, self-speculative decoding's tokens per pass and speedup with identical output (`compare mtp`, 300 steps)",
    run: |context| compare::exercise_report(context, Study::Mtp, 300),
};
