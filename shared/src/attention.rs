//! Causal multi-head attention (book section 3.6, listing 3.5), used by the GPT model.
//!
//! Parameter names follow the book's `state_dict`: `W_query.weight`, `W_key.weight`,
//! `W_value.weight` (with `.bias` when `qkv_bias`), `out_proj.weight`, `out_proj.bias`.
//! Two kernels compute the same function: [`AttentionKernel::Explicit`] is the book's code
//! (materialised scores, a causal mask, softmax, dropout) and reproduces PyTorch's numbers,
//! dropout included; [`AttentionKernel::Sdpa`] calls LibTorch's fused
//! `scaled_dot_product_attention` with `is_causal`, which is faster and uses less memory.

use anyhow::{ensure, Result};
use tch::{nn, Device, Kind, Tensor};

use crate::init;
use crate::lora::LinearWithLora;

/// How attention weights are computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AttentionKernel {
    /// The book's code: scores, mask, softmax, dropout, weighted sum.
    #[default]
    Explicit,
    /// LibTorch's fused `scaled_dot_product_attention(is_causal=True)`.
    Sdpa,
}

/// The upper-triangular boolean mask (`true` above the diagonal: future positions).
pub fn causal_mask(context_length: i64, device: Device) -> Tensor {
    Tensor::ones([context_length, context_length], (Kind::Bool, device)).triu(1)
}

/// Softmax of `scores / sqrt(head_dim)` with future positions masked out (section 3.5.1).
/// `scores` is `(.., Q, K)`: the `Q` queries are the last `Q` of the `K` positions (all of
/// them without a cache, the newest ones with a KV cache), and `mask` is at least `K x K`.
pub fn masked_attention_weights(scores: &Tensor, mask: &Tensor, head_dim: i64) -> Tensor {
    let size = scores.size();
    let (queries, keys) = (size[size.len() - 2], size[size.len() - 1]);
    // query i sits at position keys - queries + i and sees keys 0..=that position
    let mask = mask.narrow(0, keys - queries, queries).narrow(1, 0, keys);
    (scores.masked_fill(&mask, f64::NEG_INFINITY) / (head_dim as f64).sqrt()).softmax(-1, None::<Kind>)
}

/// Listing 3.5: multi-head attention with one projection per role, split into heads.
#[derive(Debug)]
pub struct MultiHeadAttention {
    pub w_query: LinearWithLora,
    pub w_key: LinearWithLora,
    pub w_value: LinearWithLora,
    pub out_proj: LinearWithLora,
    pub d_out: i64,
    pub num_heads: i64,
    pub head_dim: i64,
    pub dropout: f64,
    pub context_length: i64,
    pub kernel: AttentionKernel,
    mask: Tensor,
}

impl MultiHeadAttention {
    /// Creates the parameters in PyTorch's order (query, key, value, output projection).
    pub fn new(
        path: nn::Path,
        d_in: i64,
        d_out: i64,
        context_length: i64,
        dropout: f64,
        num_heads: i64,
        qkv_bias: bool,
    ) -> Result<Self> {
        ensure!(d_in > 0 && d_out > 0 && context_length > 0 && num_heads > 0, "attention sizes must be positive");
        ensure!(d_out % num_heads == 0, "d_out ({d_out}) must be divisible by num_heads ({num_heads})");
        ensure!((0.0..1.0).contains(&dropout), "dropout must be in [0, 1), got {dropout}");
        let device = path.device();
        Ok(Self {
            w_query: init::linear(&path / "W_query", d_in, d_out, qkv_bias).into(),
            w_key: init::linear(&path / "W_key", d_in, d_out, qkv_bias).into(),
            w_value: init::linear(&path / "W_value", d_in, d_out, qkv_bias).into(),
            out_proj: init::linear(&path / "out_proj", d_out, d_out, true).into(),
            d_out,
            num_heads,
            head_dim: d_out / num_heads,
            dropout,
            context_length,
            kernel: AttentionKernel::default(),
            mask: causal_mask(context_length, device),
        })
    }

    /// Uses `kernel` for the attention weights.
    pub fn with_kernel(mut self, kernel: AttentionKernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// `(B, T, d_out)` -> `(B, num_heads, T, head_dim)`
    fn split_heads(&self, x: &Tensor) -> Tensor {
        let (b, t, _) = x.size3().expect("a (batch, tokens, features) tensor");
        x.view([b, t, self.num_heads, self.head_dim]).transpose(1, 2)
    }

    /// Attends over `x` of shape `(B, T, d_in)`; dropout on the attention weights only when
    /// `train`. Panics if `T` exceeds the context length (a programmer error: the GPT model
    /// checks user input before it gets here).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (b, t, _) = x.size3().expect("a (batch, tokens, features) tensor");
        assert!(t <= self.context_length, "{t} tokens exceed the context length {}", self.context_length);
        let queries = self.split_heads(&x.apply(&self.w_query)); // (B, nh, T, hd)
        let keys = self.split_heads(&x.apply(&self.w_key));
        let values = self.split_heads(&x.apply(&self.w_value));
        let context = match self.kernel {
            AttentionKernel::Explicit => {
                let scores = queries.matmul(&keys.transpose(2, 3)); // (B, nh, T, T)
                let weights = masked_attention_weights(&scores, &self.mask, self.head_dim).dropout(self.dropout, train);
                weights.matmul(&values) // (B, nh, T, hd)
            }
            AttentionKernel::Sdpa => {
                let dropout = if train { self.dropout } else { 0.0 };
                Tensor::scaled_dot_product_attention(
                    &queries,
                    &keys,
                    &values,
                    None::<Tensor>,
                    dropout,
                    true,
                    None,
                    false,
                )
            }
        };
        let context = context.transpose(1, 2).contiguous().view([b, t, self.d_out]); // (B, T, d_out)
        context.apply(&self.out_proj)
    }
}

/// One layer's keys and values for cached generation: preallocated `(B, nh, context, hd)`
/// tensors that new tokens are written into, never re-concatenated.
#[derive(Debug)]
pub struct LayerKvCache {
    pub keys: Tensor,
    pub values: Tensor,
}

impl MultiHeadAttention {
    /// An empty cache for `batch` sequences on `device`, in `kind`.
    pub fn new_cache(&self, batch: i64, kind: Kind, device: Device) -> LayerKvCache {
        let shape = [batch, self.num_heads, self.context_length, self.head_dim];
        LayerKvCache { keys: Tensor::zeros(shape, (kind, device)), values: Tensor::zeros(shape, (kind, device)) }
    }

    /// Attention for `x` `(B, T, d_in)` holding the tokens at positions `start..start + T`,
    /// with the keys and values of positions `0..start` taken from `cache` and those of the
    /// new tokens written into it. Evaluation mode (no dropout). Panics past the context.
    pub fn forward_cached(&self, x: &Tensor, cache: &mut LayerKvCache, start: i64) -> Tensor {
        let (b, t, _) = x.size3().expect("a (batch, tokens, features) tensor");
        let end = start + t;
        assert!(end <= self.context_length, "{end} positions exceed the context length {}", self.context_length);
        let queries = self.split_heads(&x.apply(&self.w_query)); // (B, nh, T, hd)
        cache.keys.narrow(2, start, t).copy_(&self.split_heads(&x.apply(&self.w_key)));
        cache.values.narrow(2, start, t).copy_(&self.split_heads(&x.apply(&self.w_value)));
        let keys = cache.keys.narrow(2, 0, end); // (B, nh, end, hd)
        let values = cache.values.narrow(2, 0, end);
        let scores = queries.matmul(&keys.transpose(2, 3)); // (B, nh, T, end)
        let weights = masked_attention_weights(&scores, &self.mask, self.head_dim);
        let context = weights.matmul(&values).transpose(1, 2).contiguous().view([b, t, self.d_out]);
        context.apply(&self.out_proj)
    }
}

impl nn::ModuleT for MultiHeadAttention {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        MultiHeadAttention::forward_t(self, xs, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{global_rng_lock, seed_everything};

    #[test]
    fn mask_hides_the_future() {
        let mask = Vec::<bool>::try_from(causal_mask(3, Device::Cpu).flatten(0, -1)).unwrap();
        assert_eq!(mask, [false, true, true, false, false, true, false, false, false]);
    }

    #[test]
    fn rejects_bad_shapes() {
        let _rng = global_rng_lock();
        let vs = nn::VarStore::new(Device::Cpu);
        assert!(MultiHeadAttention::new(vs.root(), 4, 6, 8, 0.0, 4, false).is_err());
        assert!(MultiHeadAttention::new(vs.root(), 4, 8, 8, 1.0, 4, false).is_err());
        assert!(MultiHeadAttention::new(vs.root(), 4, 8, 0, 0.0, 4, false).is_err());
    }

    #[test]
    fn both_kernels_agree_and_are_causal() {
        let _rng = global_rng_lock();
        seed_everything(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let mha = MultiHeadAttention::new(vs.root(), 8, 8, 5, 0.0, 2, true).unwrap();
        let x = Tensor::randn([2, 5, 8], (Kind::Float, Device::Cpu));
        let explicit = mha.forward_t(&x, false);
        let mha = mha.with_kernel(AttentionKernel::Sdpa);
        let fused = mha.forward_t(&x, false);
        assert!(explicit.allclose(&fused, 1e-5, 1e-6, false));
        // Changing the last token leaves the earlier outputs alone.
        let y = x.copy();
        let _ = y.narrow(1, 4, 1).fill_(3.0);
        let changed = mha.forward_t(&y, false);
        assert!(changed.narrow(1, 0, 4).allclose(&fused.narrow(1, 0, 4), 1e-6, 1e-6, false));
        assert!(!changed.narrow(1, 4, 1).allclose(&fused.narrow(1, 4, 1), 1e-3, 1e-3, false));
    }

    #[test]
    fn cached_attention_equals_full_attention() {
        let _rng = global_rng_lock();
        seed_everything(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let mha = MultiHeadAttention::new(vs.root(), 8, 8, 6, 0.0, 2, true).unwrap();
        let x = Tensor::randn([2, 6, 8], (Kind::Float, Device::Cpu));
        let full = mha.forward_t(&x, false);
        let mut cache = mha.new_cache(2, Kind::Float, Device::Cpu);
        // A 3-token prefill, then one token at a time.
        let mut parts = vec![mha.forward_cached(&x.narrow(1, 0, 3), &mut cache, 0)];
        for position in 3..6 {
            parts.push(mha.forward_cached(&x.narrow(1, position, 1), &mut cache, position));
        }
        assert!(Tensor::cat(&parts, 1).allclose(&full, 1e-5, 1e-6, false));
    }

    #[test]
    fn parameters_use_the_book_names() {
        let _rng = global_rng_lock();
        let vs = nn::VarStore::new(Device::Cpu);
        let _mha = MultiHeadAttention::new(vs.root() / "att", 4, 4, 4, 0.0, 2, false).unwrap();
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "att.W_key.weight",
                "att.W_query.weight",
                "att.W_value.weight",
                "att.out_proj.bias",
                "att.out_proj.weight"
            ]
        );
    }
}
