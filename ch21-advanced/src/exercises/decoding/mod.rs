//! Decoding (21.18, 21.19, 21.27, 21.31, 21.32): beam search, the repetition penalty, speculative and contrastive decoding, watermarking.

pub mod ex21_18;
pub mod ex21_19;
pub mod ex21_27;
pub mod ex21_31;
pub mod ex21_32;
