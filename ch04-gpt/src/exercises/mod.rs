//! Chapter 4's exercises, one file each; [`ALL`] is what `list` and `exercise <id>` use.

pub mod ex4_1;
pub mod ex4_2;
pub mod ex4_3;

use shared::app::exercise::Exercise;

/// Every exercise of the chapter, in book order.
pub const ALL: &[Exercise] = &[ex4_1::EXERCISE, ex4_2::EXERCISE, ex4_3::EXERCISE];
