//! Section 3.4: self-attention with trainable weights (listings 3.1 and 3.2).

use shared::core::init;
use tch::{nn, Kind, Tensor};

/// Softmax of `scores / sqrt(d_k)`, the scaled dot-product weights (section 3.4.1).
pub fn scaled_weights(scores: &Tensor, d_k: i64) -> Tensor {
    (scores / (d_k as f64).sqrt()).softmax(-1, None::<Kind>)
}

/// Listing 3.1: weight matrices `[d_in, d_out]` drawn with `torch.rand`, applied as `x @ W`.
#[derive(Debug)]
pub struct SelfAttentionV1 {
    pub w_query: Tensor,
    pub w_key: Tensor,
    pub w_value: Tensor,
}

impl SelfAttentionV1 {
    pub fn new(path: &nn::Path, d_in: i64, d_out: i64) -> Self {
        Self {
            w_query: init::rand(path, "W_query", &[d_in, d_out]),
            w_key: init::rand(path, "W_key", &[d_in, d_out]),
            w_value: init::rand(path, "W_value", &[d_in, d_out]),
        }
    }

    /// `x`: `(T, d_in)` -> context vectors `(T, d_out)`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let keys = x.matmul(&self.w_key);
        let queries = x.matmul(&self.w_query);
        let values = x.matmul(&self.w_value);
        let d_k = keys.size()[1];
        scaled_weights(&queries.matmul(&keys.tr()), d_k).matmul(&values)
    }
}

/// Listing 3.2: the same computation with `nn.Linear` layers (weights stored `[d_out, d_in]`).
#[derive(Debug)]
pub struct SelfAttentionV2 {
    pub w_query: nn::Linear,
    pub w_key: nn::Linear,
    pub w_value: nn::Linear,
}

impl SelfAttentionV2 {
    pub fn new(path: &nn::Path, d_in: i64, d_out: i64, qkv_bias: bool) -> Self {
        Self {
            w_query: init::linear(path / "W_query", d_in, d_out, qkv_bias),
            w_key: init::linear(path / "W_key", d_in, d_out, qkv_bias),
            w_value: init::linear(path / "W_value", d_in, d_out, qkv_bias),
        }
    }

    /// The attention weights `(T, T)` of `x` (used in section 3.5.1).
    pub fn attention_weights(&self, x: &Tensor) -> Tensor {
        let keys = x.apply(&self.w_key);
        let queries = x.apply(&self.w_query);
        scaled_weights(&queries.matmul(&keys.tr()), keys.size()[1])
    }

    /// `x`: `(T, d_in)` -> context vectors `(T, d_out)`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.attention_weights(x).matmul(&x.apply(&self.w_value))
    }
}
