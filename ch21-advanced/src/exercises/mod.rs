//! Chapter 21's exercises, one file each; [`ALL`] is what `list` and `exercise <id>` use.

pub mod ex21_1;
pub mod ex21_10;
pub mod ex21_11;
pub mod ex21_12;
pub mod ex21_13;
pub mod ex21_14;
pub mod ex21_15;
pub mod ex21_16;
pub mod ex21_17;
pub mod ex21_18;
pub mod ex21_19;
pub mod ex21_2;
pub mod ex21_20;
pub mod ex21_21;
pub mod ex21_22;
pub mod ex21_23;
pub mod ex21_24;
pub mod ex21_25;
pub mod ex21_26;
pub mod ex21_27;
pub mod ex21_28;
pub mod ex21_29;
pub mod ex21_3;
pub mod ex21_30;
pub mod ex21_31;
pub mod ex21_32;
pub mod ex21_33;
pub mod ex21_34;
pub mod ex21_35;
pub mod ex21_4;
pub mod ex21_5;
pub mod ex21_6;
pub mod ex21_7;
pub mod ex21_8;
pub mod ex21_9;

use shared::exercise::ExerciseContext;

use crate::models::ModelFlags;

/// What an exercise receives: the run's context and the binary's model flags (`--checkpoint`,
/// `--weights`, `--small-checkpoint`, ...), which the decoding, compression and analysis
/// exercises load their models from.
pub type Context = ExerciseContext<ModelFlags>;

/// A chapter 21 exercise.
pub type Exercise = shared::exercise::Exercise<Context>;

/// Every exercise done so far, in book order.
pub const ALL: &[Exercise] = &[
    ex21_1::EXERCISE,
    ex21_2::EXERCISE,
    ex21_3::EXERCISE,
    ex21_4::EXERCISE,
    ex21_5::EXERCISE,
    ex21_6::EXERCISE,
    ex21_7::EXERCISE,
    ex21_8::EXERCISE,
    ex21_9::EXERCISE,
    ex21_10::EXERCISE,
    ex21_11::EXERCISE,
    ex21_12::EXERCISE,
    ex21_13::EXERCISE,
    ex21_14::EXERCISE,
    ex21_15::EXERCISE,
    ex21_16::EXERCISE,
    ex21_17::EXERCISE,
    ex21_18::EXERCISE,
    ex21_19::EXERCISE,
    ex21_20::EXERCISE,
    ex21_21::EXERCISE,
    ex21_22::EXERCISE,
    ex21_23::EXERCISE,
    ex21_24::EXERCISE,
    ex21_25::EXERCISE,
    ex21_26::EXERCISE,
    ex21_27::EXERCISE,
    ex21_28::EXERCISE,
    ex21_29::EXERCISE,
    ex21_30::EXERCISE,
    ex21_31::EXERCISE,
    ex21_32::EXERCISE,
    ex21_33::EXERCISE,
    ex21_34::EXERCISE,
    ex21_35::EXERCISE,
];
