//! Chapter 5's exercises, one file each; [`ALL`] is what `list` and `exercise <id>` use.

pub mod ex5_1;
pub mod ex5_2;
pub mod ex5_3;
pub mod ex5_4;
pub mod ex5_5;
pub mod ex5_6;

use shared::app::exercise::Exercise;

/// Every exercise of the chapter, in book order.
pub const ALL: &[Exercise] =
    &[ex5_1::EXERCISE, ex5_2::EXERCISE, ex5_3::EXERCISE, ex5_4::EXERCISE, ex5_5::EXERCISE, ex5_6::EXERCISE];
