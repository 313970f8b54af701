//! Chapter 2's exercises, one file each; [`ALL`] is what `list` and `exercise <id>` use.

pub mod ex2_1;
pub mod ex2_2;

use shared::app::exercise::Exercise;

/// Every exercise of the chapter, in book order.
pub const ALL: &[Exercise] = &[ex2_1::EXERCISE, ex2_2::EXERCISE];
