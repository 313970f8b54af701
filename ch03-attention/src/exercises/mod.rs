//! Chapter 3's exercises, one file each; [`ALL`] is what `list` and `exercise <id>` use.

pub mod ex3_1;
pub mod ex3_2;
pub mod ex3_3;

use shared::app::exercise::Exercise;

/// Every exercise of the chapter, in book order.
pub const ALL: &[Exercise] = &[ex3_1::EXERCISE, ex3_2::EXERCISE, ex3_3::EXERCISE];
