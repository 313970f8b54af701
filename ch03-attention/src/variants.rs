//! Faster multi-head attention (the book's bonus material "efficient multi-head attention"):
//! several implementations of the same function, all reading one set of weights, so their
//! outputs can be compared and their speed measured.
//!
//! The weights are those of a book [`MultiHeadAttention`] (query, key, value projections
//! without bias, output projection with bias), plus a copy of the three input projections
//! stacked into one `[3 * d_out, d_in]` matrix for the combined-QKV variants.

use std::fmt;

use anyhow::Result;
use shared::model::attention::{causal_mask, masked_attention_weights, MultiHeadAttention};
use tch::{nn, Tensor};

/// One implementation of causal multi-head attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Variant {
    /// Listing 3.4's idea: one causal attention per head, outputs concatenated, then the
    /// output projection.
    Wrapper,
    /// Listing 3.5: one projection per role, split into heads, explicit mask.
    Book,
    /// One matrix multiplication for queries, keys and values together.
    CombinedQkv,
    /// Combined QKV with the scores and the weighted sum written as `einsum`.
    Einsum,
    /// Combined QKV and LibTorch's fused `scaled_dot_product_attention(is_causal=True)`.
    Sdpa,
}

impl Variant {
    pub const ALL: [Variant; 5] =
        [Variant::Wrapper, Variant::Book, Variant::CombinedQkv, Variant::Einsum, Variant::Sdpa];
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Variant::Wrapper => "wrapper (per-head modules)",
            Variant::Book => "book MultiHeadAttention",
            Variant::CombinedQkv => "combined QKV",
            Variant::Einsum => "combined QKV + einsum",
            Variant::Sdpa => "combined QKV + SDPA (causal)",
        })
    }
}

/// The shared weights and every variant's forward pass.
pub struct AttentionVariants {
    pub module: MultiHeadAttention,
    /// `cat([W_query, W_key, W_value])`, a parameter of its own (`[3 * d_out, d_in]`).
    pub w_qkv: Tensor,
    mask: Tensor,
}

impl AttentionVariants {
    /// A randomly initialised book module with `d_in = d_out = d` and its stacked copy.
    pub fn new(path: &nn::Path, d: i64, context_length: i64, num_heads: i64) -> Result<Self> {
        let module = MultiHeadAttention::new(path / "mha", d, d, context_length, 0.0, num_heads, false)?;
        let stacked = tch::no_grad(|| Tensor::cat(&[module.w_query.ws(), module.w_key.ws(), module.w_value.ws()], 0));
        let w_qkv = path.var_copy("W_qkv", &stacked);
        Ok(Self { module, w_qkv, mask: causal_mask(context_length, path.device()) })
    }

    /// `x`: `(B, T, d)` -> `(B, T, d)` in evaluation mode.
    pub fn forward(&self, variant: Variant, x: &Tensor) -> Tensor {
        match variant {
            Variant::Wrapper => self.wrapper(x),
            Variant::Book => self.module.forward_t(x, false),
            Variant::CombinedQkv => self.combined(x, false),
            Variant::Einsum => self.combined(x, true),
            Variant::Sdpa => self.sdpa(x),
        }
    }

    fn wrapper(&self, x: &Tensor) -> Tensor {
        let m = &self.module;
        let heads: Vec<Tensor> = (0..m.num_heads)
            .map(|h| {
                let rows = |w: &Tensor| w.narrow(0, h * m.head_dim, m.head_dim);
                let queries = x.linear::<Tensor>(&rows(m.w_query.ws()), None); // (B, T, hd)
                let keys = x.linear::<Tensor>(&rows(m.w_key.ws()), None);
                let values = x.linear::<Tensor>(&rows(m.w_value.ws()), None);
                let scores = queries.matmul(&keys.transpose(1, 2)); // (B, T, T)
                masked_attention_weights(&scores, &self.mask, m.head_dim).matmul(&values)
            })
            .collect();
        Tensor::cat(&heads, -1).apply(&m.out_proj)
    }

    /// Queries, keys and values `(B, nh, T, hd)` from one matrix multiplication.
    fn qkv(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let m = &self.module;
        let (b, t, _) = x.size3().expect("(batch, tokens, features)");
        let qkv = x.linear::<Tensor>(&self.w_qkv, None); // (B, T, 3 * d)
        let qkv = qkv.view([b, t, 3, m.num_heads, m.head_dim]).permute([2, 0, 3, 1, 4]); // (3, B, nh, T, hd)
        (qkv.get(0), qkv.get(1), qkv.get(2))
    }

    fn merge_heads(&self, context: Tensor) -> Tensor {
        let (b, _, t, _) = context.size4().expect("(batch, heads, tokens, head_dim)");
        context.transpose(1, 2).contiguous().view([b, t, self.module.d_out]).apply(&self.module.out_proj)
    }

    fn combined(&self, x: &Tensor, einsum: bool) -> Tensor {
        let (queries, keys, values) = self.qkv(x);
        let head_dim = self.module.head_dim;
        let context = if einsum {
            let scores = Tensor::einsum("bhnd,bhmd->bhnm", &[&queries, &keys], None::<i64>);
            let weights = masked_attention_weights(&scores, &self.mask, head_dim);
            Tensor::einsum("bhnm,bhmd->bhnd", &[&weights, &values], None::<i64>)
        } else {
            let scores = queries.matmul(&keys.transpose(-2, -1)); // (B, nh, T, T)
            masked_attention_weights(&scores, &self.mask, head_dim).matmul(&values)
        };
        self.merge_heads(context)
    }

    fn sdpa(&self, x: &Tensor) -> Tensor {
        let (queries, keys, values) = self.qkv(x);
        let context =
            Tensor::scaled_dot_product_attention(&queries, &keys, &values, None::<Tensor>, 0.0, true, None, false);
        self.merge_heads(context)
    }

    /// Every trainable tensor any variant reads.
    pub fn parameters(&self) -> Vec<&Tensor> {
        let m = &self.module;
        let mut params = vec![m.w_query.ws(), m.w_key.ws(), m.w_value.ws(), m.out_proj.ws(), &self.w_qkv];
        params.extend(m.out_proj.bias.as_ref());
        params
    }
}
