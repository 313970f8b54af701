//! Exercise 21.30: the prefix LM, as `compare prefix` at a small budget: windows split into a
//! 32-token prompt and a 32-token completion, causal models (trained on every token or on the
//! completion) against a prefix LM (bidirectional over the prompt), scored on the completion.

use crate::exercises::Exercise;

use crate::compare::{self, Study};

pub const EXERCISE: Exercise = Exercise {
    id: "21.30",
    summary: "causal vs prefix LM on 32-token prompts with 32-token completions: completion loss and greedy completions (`compare prefix`, 300 steps)",
    run: |context| compare::exercise_report(context, Study::Prefix, 300),
};
