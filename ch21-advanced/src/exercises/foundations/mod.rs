//! The foundations (21.1-21.16): the factorisation of a text's probability, masks, model sizes, norm placement, weight tying, temperature, top-k and top-p, the KV cache's memory and speed, perplexity, attention and a sampler written out.

pub mod ex21_1;
pub mod ex21_10;
pub mod ex21_11;
pub mod ex21_12;
pub mod ex21_13;
pub mod ex21_14;
pub mod ex21_15;
pub mod ex21_16;
pub mod ex21_2;
pub mod ex21_3;
pub mod ex21_4;
pub mod ex21_5;
pub mod ex21_6;
pub mod ex21_7;
pub mod ex21_8;
pub mod ex21_9;
