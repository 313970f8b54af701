//! Exercises A.2 and A.4: a small matrix multiplication on the CPU and on the GPU.

use shared::app::exercise::{Exercise, Report};

pub const EXERCISE: Exercise = Exercise {
    id: "A.2",
    summary: "time 100x200 @ 200x300 on the CPU and, when present, the GPU (median, synchronised)",
    run: |_| Report::new(&crate::timing::run(REPEATS)),
};

pub const EXERCISE_A4: Exercise =
    Exercise { id: "A.4", summary: "the same timing as A.2 (asked twice in the book)", ..EXERCISE };

/// Timed runs per device.
pub const REPEATS: usize = 200;
