//! Chapter 21's exercises, one file each; [`ALL`] is what `list` and `exercise <id>` use.

pub mod ex21_11;
pub mod ex21_12;
pub mod ex21_13;
pub mod ex21_14;
pub mod ex21_16;
pub mod ex21_5;
pub mod ex21_6;
pub mod ex21_7;
pub mod ex21_8;
pub mod ex21_9;

use shared::exercise::Exercise;

/// Every exercise done so far, in book order.
pub const ALL: &[Exercise] = &[
    ex21_5::EXERCISE,
    ex21_6::EXERCISE,
    ex21_7::EXERCISE,
    ex21_8::EXERCISE,
    ex21_9::EXERCISE,
    ex21_11::EXERCISE,
    ex21_12::EXERCISE,
    ex21_13::EXERCISE,
    ex21_14::EXERCISE,
    ex21_16::EXERCISE,
];
