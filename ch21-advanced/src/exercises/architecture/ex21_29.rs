//! Exercise 21.29: attention sinks, as `compare sinks` at a small budget: RoPE and NoPE models
//! trained at context 64 stream 2,048 validation tokens with window attention, 4 sinks plus a
//! window, and recomputation; the weight their queries give the first positions.

use crate::exercises::Exercise;

use crate::compare::{self, Study};

pub const EXERCISE: Exercise = Exercise {
    id: "21.29",
    summary: "attention sinks: the weight on the first 4 positions per layer and head, and perplexity streaming 32x past the context with window-only, 4 sinks + window, recomputation (`compare sinks`, 300 steps)",
    run: |context| compare::exercise_report(context, Study::Sinks, 300),
};
