//! Section 3.6: multi-head attention. The wrapper of listing 3.4 lives here; the book's
//! efficient `MultiHeadAttention` (listing 3.5) is in `shared` because the GPT model uses it.

use tch::{nn, Tensor};

use crate::causal::CausalAttention;
pub use shared::model::attention::MultiHeadAttention;

/// Listing 3.4: `num_heads` independent causal attention heads, outputs concatenated.
#[derive(Debug)]
pub struct MultiHeadAttentionWrapper {
    pub heads: Vec<CausalAttention>,
}

impl MultiHeadAttentionWrapper {
    pub fn new(
        path: &nn::Path,
        d_in: i64,
        d_out: i64,
        context_length: i64,
        dropout: f64,
        num_heads: i64,
        qkv_bias: bool,
    ) -> Self {
        let heads = (0..num_heads)
            .map(|i| CausalAttention::new(&(path / "heads" / i), d_in, d_out, context_length, dropout, qkv_bias))
            .collect();
        Self { heads }
    }

    /// `x`: `(B, T, d_in)` -> `(B, T, num_heads * d_out)`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let outputs: Vec<Tensor> = self.heads.iter().map(|head| head.forward_t(x, train)).collect();
        Tensor::cat(&outputs, -1)
    }
}
