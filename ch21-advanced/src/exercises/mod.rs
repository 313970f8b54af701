//! Chapter 21's exercises, one file each, in a folder per theme ([`foundations`],
//! [`analysis`] of a pretrained model, [`decoding`], [`architecture`] studies,
//! [`compression`]); [`ALL`] is what `list` and `exercise <id>` use.

pub mod analysis;
pub mod architecture;
pub mod compression;
pub mod decoding;
pub mod foundations;

use shared::app::exercise::ExerciseContext;

use crate::models::ModelFlags;

/// What an exercise receives: the run's context and the binary's model flags (`--checkpoint`,
/// `--weights`, `--small-checkpoint`, ...), which the decoding, compression and analysis
/// exercises load their models from.
pub type Context = ExerciseContext<ModelFlags>;

/// A chapter 21 exercise.
pub type Exercise = shared::app::exercise::Exercise<Context>;

/// Every exercise done so far, in book order.
pub const ALL: &[Exercise] = &[
    foundations::ex21_1::EXERCISE,
    foundations::ex21_2::EXERCISE,
    foundations::ex21_3::EXERCISE,
    foundations::ex21_4::EXERCISE,
    foundations::ex21_5::EXERCISE,
    foundations::ex21_6::EXERCISE,
    foundations::ex21_7::EXERCISE,
    foundations::ex21_8::EXERCISE,
    foundations::ex21_9::EXERCISE,
    foundations::ex21_10::EXERCISE,
    foundations::ex21_11::EXERCISE,
    foundations::ex21_12::EXERCISE,
    foundations::ex21_13::EXERCISE,
    foundations::ex21_14::EXERCISE,
    foundations::ex21_15::EXERCISE,
    foundations::ex21_16::EXERCISE,
    analysis::ex21_17::EXERCISE,
    decoding::ex21_18::EXERCISE,
    decoding::ex21_19::EXERCISE,
    analysis::ex21_20::EXERCISE,
    analysis::ex21_21::EXERCISE,
    analysis::ex21_22::EXERCISE,
    analysis::ex21_23::EXERCISE,
    analysis::ex21_24::EXERCISE,
    architecture::ex21_25::EXERCISE,
    architecture::ex21_26::EXERCISE,
    decoding::ex21_27::EXERCISE,
    architecture::ex21_28::EXERCISE,
    architecture::ex21_29::EXERCISE,
    architecture::ex21_30::EXERCISE,
    decoding::ex21_31::EXERCISE,
    decoding::ex21_32::EXERCISE,
    architecture::ex21_33::EXERCISE,
    compression::ex21_34::EXERCISE,
    compression::ex21_35::EXERCISE,
];
