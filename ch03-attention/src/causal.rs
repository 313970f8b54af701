//! Section 3.5: causal attention with dropout (listing 3.3).

use shared::core::init;
use shared::model::attention::{causal_mask, masked_attention_weights};
use tch::{nn, Tensor};

/// Listing 3.3: single-head attention over batches, future tokens masked, dropout on the
/// attention weights.
#[derive(Debug)]
pub struct CausalAttention {
    pub w_query: nn::Linear,
    pub w_key: nn::Linear,
    pub w_value: nn::Linear,
    pub dropout: f64,
    pub d_out: i64,
    mask: Tensor,
}

impl CausalAttention {
    pub fn new(path: &nn::Path, d_in: i64, d_out: i64, context_length: i64, dropout: f64, qkv_bias: bool) -> Self {
        Self {
            w_query: init::linear(path / "W_query", d_in, d_out, qkv_bias),
            w_key: init::linear(path / "W_key", d_in, d_out, qkv_bias),
            w_value: init::linear(path / "W_value", d_in, d_out, qkv_bias),
            dropout,
            d_out,
            mask: causal_mask(context_length, path.device()),
        }
    }

    /// `x`: `(B, T, d_in)` -> `(B, T, d_out)`; dropout only when `train`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let keys = x.apply(&self.w_key);
        let queries = x.apply(&self.w_query);
        let values = x.apply(&self.w_value);
        let scores = queries.matmul(&keys.transpose(1, 2)); // (B, T, T)
        let weights = masked_attention_weights(&scores, &self.mask, keys.size()[2]).dropout(self.dropout, train);
        weights.matmul(&values)
    }
}
