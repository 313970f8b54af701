//! Appendix A's exercises; [`ALL`] is what `list` and `exercise <id>` use. The book asks
//! A.1 and A.3 (and A.2 and A.4) twice, so those ids run the same code.

pub mod ex_a1;
pub mod ex_a2;

use shared::app::exercise::Exercise;

/// Every exercise of the appendix, in book order.
pub const ALL: &[Exercise] = &[ex_a1::EXERCISE, ex_a2::EXERCISE, ex_a1::EXERCISE_A3, ex_a2::EXERCISE_A4];
