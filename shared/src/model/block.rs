//! Section 4.5, listing 4.6: the transformer block, attention and feed-forward each wrapped
//! in a shortcut connection.

use anyhow::Result;
use tch::{nn, Tensor};

use super::{GptConfig, NormPlacement};
use crate::model::attention::{CacheAccess, MultiHeadAttention};
use crate::nn::{FeedForward, LayerNorm};

/// Listing 4.6: attention and feed-forward, each wrapped in a shortcut connection, with
/// pre-norm (GPT-2, the book) or post-norm (GPT-1: normalise after each addition).
#[derive(Debug)]
pub struct TransformerBlock {
    pub att: MultiHeadAttention,
    pub ff: FeedForward,
    pub norm1: LayerNorm,
    pub norm2: LayerNorm,
    pub drop_shortcut: f64,
    pub norm_placement: NormPlacement,
}

impl TransformerBlock {
    /// Creates the parameters in the book's order: attention, feed-forward, norm1, norm2.
    pub fn new(path: &nn::Path, cfg: &GptConfig) -> Result<Self> {
        let att = MultiHeadAttention::with_options(
            path / "att",
            cfg.emb_dim,
            cfg.emb_dim,
            cfg.context_length,
            cfg.attn_dropout(),
            cfg.n_heads,
            cfg.qkv_bias,
            cfg.attention_options(),
        )?;
        Ok(Self {
            att,
            ff: FeedForward::with_options(&(path / "ff"), cfg.emb_dim, cfg.bias, cfg.activation),
            norm1: LayerNorm::with_shift(&(path / "norm1"), cfg.emb_dim, cfg.bias),
            norm2: LayerNorm::with_shift(&(path / "norm2"), cfg.emb_dim, cfg.bias),
            drop_shortcut: cfg.shortcut_dropout(),
            norm_placement: cfg.norm_placement,
        })
    }

    /// `x`: `(B, T, emb_dim)` at positions `0..T`; dropout only when `train`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (_, t, _) = x.size3().expect("a (batch, tokens, features) tensor");
        let positions = Tensor::arange(t, (tch::Kind::Int64, x.device()));
        self.forward_at(x, &positions, CacheAccess::None, train, false).0
    }

    /// The block for tokens at `positions`, reading and writing `cache` (see
    /// [`MultiHeadAttention::forward_at`]); also returns the attention weights when `weights`.
    pub fn forward_at(
        &self,
        x: &Tensor,
        positions: &Tensor,
        cache: CacheAccess,
        train: bool,
        weights: bool,
    ) -> (Tensor, Option<Tensor>) {
        let attend = |x: &Tensor| self.att.forward_at(x, positions, cache, train, weights);
        let shortcut = |y: Tensor| y.dropout(self.drop_shortcut, train);
        match self.norm_placement {
            NormPlacement::Pre => {
                // shortcut connection around attention
                let (attended, attention) = attend(&self.norm1.forward(x));
                let x = x + shortcut(attended);
                // shortcut connection around the feed-forward module
                (&x + shortcut(self.ff.forward(&self.norm2.forward(&x))), attention)
            }
            NormPlacement::Post => {
                let (attended, attention) = attend(x);
                let x = self.norm1.forward(&(x + shortcut(attended)));
                (self.norm2.forward(&(&x + shortcut(self.ff.forward(&x)))), attention)
            }
        }
    }
}
