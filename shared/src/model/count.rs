//! Section 4.6 and exercises 4.1-4.2: parameters by group, with and without weight tying,
//! and the float32 size, computed from a config (no model needed) or from a built model.

use serde::Serialize;

use super::GptConfig;
use crate::nn::{FeedForwardKind, NormKind};

/// Parameter counts by group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ParameterCounts {
    /// Token and (learned) position embeddings.
    pub embeddings: i64,
    /// Every block's multi-head attention.
    pub attention: i64,
    /// Every block's feed-forward module.
    pub feed_forward: i64,
    /// Every layer norm, the final one included.
    pub norms: i64,
    /// The output heads (none of its own when tied to the token embedding).
    pub head: i64,
}

impl ParameterCounts {
    /// The counts a model built from `cfg` has, by arithmetic.
    pub fn from_config(cfg: &GptConfig) -> Self {
        let (v, c, e, layers) = (cfg.vocab_size, cfg.context_length, cfg.emb_dim, cfg.n_layers);
        let q = cfg.n_heads * cfg.head_dim(); // width of the query projection
        let kv = cfg.kv_heads() * cfg.head_dim(); // width of the key and value projections
        let qkv = e * q + 2 * e * kv + if cfg.qkv_bias { q + 2 * kv } else { 0 };
        let b = i64::from(cfg.bias);
        let qk_norms = if cfg.qk_norm { 2 * cfg.head_dim() } else { 0 };
        let attention = qkv + q * e + b * e + qk_norms; // + output projection (+ per-head norms)
        let h = cfg.hidden_dim();
        let feed_forward = match cfg.feed_forward {
            FeedForwardKind::Mlp => (e * h + b * h) + (h * e + b * e),
            FeedForwardKind::Gated => 2 * (e * h + b * h) + (h * e + b * e),
        };
        let norm = match cfg.norm {
            NormKind::LayerNorm => (1 + b) * e, // scale (and shift)
            NormKind::RmsNorm | NormKind::RmsNormPlusOne => e,
        };
        let norms_per_block = if cfg.sandwich_norms { 4 } else { 2 };
        let positions = if cfg.pos_encoding == crate::model::positions::PosEncoding::Learned { c * e } else { 0 };
        let heads = cfg.n_future_heads - i64::from(cfg.tie_embeddings);
        Self {
            embeddings: v * e + positions,
            attention: layers * attention,
            feed_forward: layers * feed_forward,
            norms: (norms_per_block * layers + 1) * norm,
            head: heads * e * v,
        }
    }

    /// The counts of named parameters (`vs.variables()`), grouped by their book names.
    pub fn from_named<'a>(params: impl IntoIterator<Item = (&'a str, i64)>) -> Self {
        let mut counts = Self { embeddings: 0, attention: 0, feed_forward: 0, norms: 0, head: 0 };
        for (name, numel) in params {
            let group = if name.starts_with("tok_emb.") || name.starts_with("pos_emb.") {
                &mut counts.embeddings
            } else if name.contains(".att.") {
                &mut counts.attention
            } else if name.contains(".ff.") {
                &mut counts.feed_forward
            } else if name.contains("norm") {
                &mut counts.norms
            } else {
                &mut counts.head
            };
            *group += numel;
        }
        counts
    }

    pub fn total(&self) -> i64 {
        self.embeddings + self.attention + self.feed_forward + self.norms + self.head
    }

    /// The total when the (single) output head reuses the token embedding matrix, as GPT-2
    /// does.
    pub fn with_weight_tying(&self) -> i64 {
        self.total() - self.head
    }

    /// The total in float32, in MB of 1,024 x 1,024 bytes (the book's "621.83 MB").
    pub fn size_mb_f32(&self) -> f64 {
        self.total() as f64 * 4.0 / (1024.0 * 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_small_and_xl_match_the_book() {
        let small = ParameterCounts::from_config(&GptConfig::gpt2_small());
        assert_eq!(small.total(), 163_009_536);
        assert_eq!(small.with_weight_tying(), 124_412_160);
        assert_eq!(format!("{:.2}", small.size_mb_f32()), "621.83");
        assert_eq!(small.feed_forward / 12, 4_722_432);
        assert_eq!(small.attention / 12, 2_360_064);
        let xl = ParameterCounts::from_config(&GptConfig::preset("gpt2-xl").unwrap());
        assert_eq!((xl.total(), xl.with_weight_tying()), (1_637_792_000, 1_557_380_800));
        assert_eq!(format!("{:.2}", xl.size_mb_f32()), "6247.68");
    }
}
