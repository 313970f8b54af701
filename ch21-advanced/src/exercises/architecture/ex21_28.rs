//! Exercise 21.28: multi-head vs grouped-query vs multi-query attention, as `compare gqa` at
//! a small budget: parameters, KV-cache bytes, cached generation speed and validation loss
//! of the mini-GPT with 8 query heads and 8, 4, 2 or 1 key/value heads, and GPT-2 small's
//! cache sizes by the same formula.

use crate::exercises::Exercise;

use crate::compare::{self, Study};

pub const EXERCISE: Exercise = Exercise {
    id: "21.28",
    summary: "MHA vs GQA (4 and 2 KV heads) vs MQA: parameters, KV-cache bytes, cached tokens/s, loss (`compare gqa`, 300 steps)",
    run: |context| compare::exercise_report(context, Study::Gqa, 300),
};
