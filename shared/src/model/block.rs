//! Section 4.5, listing 4.6: the transformer block, attention and feed-forward each wrapped
//! in a shortcut connection; with Gemma's sandwich norms, a norm on each branch's output too.

use anyhow::Result;
use tch::{nn, Tensor};

use super::{GptConfig, NormPlacement};
use crate::model::attention::{CacheAccess, MultiHeadAttention};
use crate::nn::{FeedForward, Norm};

/// Listing 4.6: attention and feed-forward, each wrapped in a shortcut connection, with
/// pre-norm (GPT-2, the book) or post-norm (GPT-1: normalise after each addition).
#[derive(Debug)]
pub struct TransformerBlock {
    pub att: MultiHeadAttention,
    pub ff: FeedForward,
    pub norm1: Norm,
    pub norm2: Norm,
    /// Gemma's norms of the attention's and the feed-forward module's outputs.
    pub post_attention_norm: Option<Norm>,
    pub post_ff_norm: Option<Norm>,
    pub drop_shortcut: f64,
    pub norm_placement: NormPlacement,
}

impl TransformerBlock {
    /// Listing 4.6's block for `cfg` (as its first layer, where layers differ).
    pub fn new(path: &nn::Path, cfg: &GptConfig) -> Result<Self> {
        Self::for_layer(path, cfg, 0)
    }

    /// Block `layer` (from 0) of a model of `cfg`, its parameters created in the book's order:
    /// attention, feed-forward, norm1, norm2 (then the sandwich norms).
    pub fn for_layer(path: &nn::Path, cfg: &GptConfig, layer: i64) -> Result<Self> {
        let att = MultiHeadAttention::with_options(
            path / "att",
            cfg.emb_dim,
            cfg.emb_dim,
            cfg.context_length,
            cfg.attn_dropout(),
            cfg.n_heads,
            cfg.qkv_bias,
            cfg.attention_options(layer),
        )?;
        let ff = FeedForward::of_kind(
            &(path / "ff"),
            cfg.feed_forward,
            cfg.emb_dim,
            cfg.hidden_dim(),
            cfg.bias,
            cfg.activation,
        );
        let norm = |name: &str| Norm::new(&(path / name), cfg.emb_dim, cfg.norm, cfg.norm_eps, cfg.bias);
        let (norm1, norm2) = (norm("norm1"), norm("norm2"));
        let sandwich = |name: &str| cfg.sandwich_norms.then(|| norm(name));
        Ok(Self {
            att,
            ff,
            norm1,
            norm2,
            post_attention_norm: sandwich("post_attention_norm"),
            post_ff_norm: sandwich("post_ff_norm"),
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
        let post = |norm: &Option<Norm>, y: Tensor| match norm {
            Some(norm) => norm.forward(&y),
            None => y,
        };
        match self.norm_placement {
            NormPlacement::Pre => {
                // shortcut connection around attention
                let (attended, attention) = attend(&self.norm1.forward(x));
                let x = x + shortcut(post(&self.post_attention_norm, attended));
                // shortcut connection around the feed-forward module
                let fed = self.ff.forward(&self.norm2.forward(&x));
                (&x + shortcut(post(&self.post_ff_norm, fed)), attention)
            }
            NormPlacement::Post => {
                let (attended, attention) = attend(x);
                let x = self.norm1.forward(&(x + shortcut(attended)));
                (self.norm2.forward(&(&x + shortcut(self.ff.forward(&x)))), attention)
            }
        }
    }
}
