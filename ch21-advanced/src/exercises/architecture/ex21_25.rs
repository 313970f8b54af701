//! Exercise 21.25: learned vs rotary vs no position information, as `compare rope` at a small
//! budget: each trained at the context of 64 and evaluated at 64, 128 and 256 tokens (learned
//! positions stop at 64 and say so), with the rotation printed on a 2-D query and RoPE's
//! relative-position property measured on the trained model.

use crate::exercises::Exercise;

use crate::compare::{self, Study};

pub const EXERCISE: Exercise = Exercise {
    id: "21.25",
    summary: "learned positions vs RoPE vs NoPE (none), validation loss at 1x, 2x and 4x the trained context; the rotation on a 2-D query and RoPE's shift invariance (`compare rope`, 300 steps)",
    run: |context| compare::exercise_report(context, Study::Rope, 300),
};
