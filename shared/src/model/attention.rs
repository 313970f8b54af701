//! Causal multi-head attention (book section 3.6, listing 3.5), used by the GPT model, with
//! the options chapter 21 studies: grouped-query attention (fewer key/value heads), rotary
//! positions, and other masks (a sliding window with attention sinks, a bidirectional prefix).
//!
//! Parameter names follow the book's `state_dict`: `W_query.weight`, `W_key.weight`,
//! `W_value.weight` (with `.bias` when `qkv_bias`), `out_proj.weight`, `out_proj.bias`.
//! Two kernels compute the same function: [`AttentionKernel::Explicit`] is the book's code
//! (materialised scores, a mask, softmax, dropout) and reproduces PyTorch's numbers, dropout
//! included; [`AttentionKernel::Sdpa`] calls LibTorch's fused `scaled_dot_product_attention`,
//! which is faster and uses less memory. Which keys a query sees is decided by the absolute
//! positions of both ([`AttentionMask::blocked`]), so the same code serves a full sequence,
//! a key/value cache, and a rolling cache whose slots hold positions in any order.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::core::init;
use crate::model::positions::{Rope, RopeScaling};
use crate::nn::{Linear, LinearWeight, Norm, NormKind};

/// How attention weights are computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AttentionKernel {
    /// The book's code: scores, mask, softmax, dropout, weighted sum.
    #[default]
    Explicit,
    /// LibTorch's fused `scaled_dot_product_attention`.
    Sdpa,
}

/// Which earlier positions a query may attend to (`GptConfig::attention_mask`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionMask {
    /// Every position up to and including its own: the book's mask.
    #[default]
    Causal,
    /// Only the last `W` positions (its own included), plus the model's `sink_tokens` first
    /// positions (StreamingLLM's attention sinks).
    SlidingWindow(i64),
    /// Bidirectional over the first `P` positions (a prefix LM), causal after them.
    Prefix(i64),
}

impl AttentionMask {
    /// `true` where query position `q` (rows, `(Q,)`) may not see key position `k` (columns,
    /// `(K,)`); key positions below 0 mark empty cache slots and are never seen.
    pub fn blocked(&self, q: &Tensor, k: &Tensor, sink_tokens: i64) -> Tensor {
        let (q, k) = (q.unsqueeze(1), k.unsqueeze(0));
        let future = k.gt_tensor(&q);
        let blocked = match *self {
            Self::Causal => future,
            Self::SlidingWindow(window) => {
                let too_old = (&q - &k).ge(window).logical_and(&k.ge(sink_tokens));
                future.logical_or(&too_old)
            }
            Self::Prefix(prefix) => future.logical_and(&k.ge(prefix)),
        };
        blocked.logical_or(&k.lt(0))
    }
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
    softmax_unblocked(scores, &mask.narrow(0, keys - queries, queries).narrow(1, 0, keys), head_dim as f64)
}

/// Softmax of `scores / sqrt(score_dim)` over the keys `blocked` does not hide.
fn softmax_unblocked(scores: &Tensor, blocked: &Tensor, score_dim: f64) -> Tensor {
    (scores.masked_fill(blocked, f64::NEG_INFINITY) / score_dim.sqrt()).softmax(-1, None::<Kind>)
}

/// The options beyond listing 3.5 that a GPT config can set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionOptions {
    /// Key/value heads; `num_heads / num_kv_heads` query heads share each (grouped-query
    /// attention; 1 is multi-query attention).
    pub num_kv_heads: i64,
    /// Features per head: the queries are `num_heads * head_dim` wide.
    pub head_dim: i64,
    pub mask: AttentionMask,
    pub sink_tokens: i64,
    /// `Some(theta)`: rotary positions with this base.
    pub rope_theta: Option<f64>,
    /// The rotary frequencies stretched for long contexts.
    pub rope_scaling: Option<RopeScaling>,
    /// The output projection has a bias (GPT-2; nanoGPT's `bias=False` drops it).
    pub out_bias: bool,
    /// Each head's queries and keys normalised by a norm of this kind and epsilon (Qwen3,
    /// Gemma 3).
    pub qk_norm: Option<(NormKind, Option<f64>)>,
    /// Scores divided by `sqrt(score_dim)`; `None`: `sqrt(head_dim)`, the book's.
    pub score_dim: Option<f64>,
}

impl AttentionOptions {
    /// Listing 3.5's attention: multi-head, causal, no rotation, `head_dim` features a head.
    pub fn book(num_heads: i64, head_dim: i64) -> Self {
        Self {
            num_kv_heads: num_heads,
            head_dim,
            mask: AttentionMask::Causal,
            sink_tokens: 0,
            rope_theta: None,
            rope_scaling: None,
            out_bias: true,
            qk_norm: None,
            score_dim: None,
        }
    }
}

/// Listing 3.5: multi-head attention with one projection per role, split into heads.
#[derive(Debug)]
pub struct MultiHeadAttention {
    pub w_query: Linear,
    pub w_key: Linear,
    pub w_value: Linear,
    pub out_proj: Linear,
    pub d_out: i64,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    /// Scores are divided by its square root (`head_dim` unless the config says otherwise).
    pub score_dim: f64,
    pub q_norm: Option<Norm>,
    pub k_norm: Option<Norm>,
    pub dropout: f64,
    pub context_length: i64,
    pub kernel: AttentionKernel,
    pub mask: AttentionMask,
    pub sink_tokens: i64,
    pub rope: Option<Rope>,
}

/// Where the `T` new tokens of a call sit and which cached keys they read.
pub enum CacheAccess<'a> {
    /// No cache: the tokens sit at `positions` and see each other only.
    None,
    /// Keys of positions `0..start` are in slots `0..start`; the new ones are written after.
    /// `padding` `(B,)`: how many slots at the start of each sequence hold left padding,
    /// which no other token sees (batched decoding of prompts of different lengths).
    Append { cache: &'a mut LayerKvCache, start: i64, padding: Option<&'a Tensor> },
    /// Slot `s` holds the key of position `slot_positions[s]` (-1: empty); the new keys named
    /// by `keep` (indices into the new tokens) are written into the slots `into`. Queries see
    /// the `sinks` first positions and the last `window` (whatever the model's own mask).
    Rolling {
        cache: &'a mut LayerKvCache,
        slot_positions: &'a Tensor,
        keep: &'a Tensor,
        into: &'a Tensor,
        sinks: i64,
        window: i64,
        /// StreamingLLM's positions inside the cache, `(slots + T,)` for the slots' keys then the
        /// new ones: rotary positions then apply to the keys at attention time by these
        /// numbers, and the cache holds unrotated keys. `None`: absolute positions.
        rope_positions: Option<&'a Tensor>,
    },
}

impl MultiHeadAttention {
    /// Listing 3.5's module; parameters in PyTorch's order (query, key, value, output projection).
    pub fn new(
        path: nn::Path,
        d_in: i64,
        d_out: i64,
        context_length: i64,
        dropout: f64,
        num_heads: i64,
        qkv_bias: bool,
    ) -> Result<Self> {
        ensure!(num_heads > 0, "attention sizes must be positive");
        ensure!(d_out % num_heads == 0, "d_out ({d_out}) must be divisible by num_heads ({num_heads})");
        let options = AttentionOptions::book(num_heads, d_out / num_heads);
        Self::with_options(path, d_in, d_out, context_length, dropout, num_heads, qkv_bias, options)
    }

    /// [`MultiHeadAttention::new`] with chapter 21's options: the query projection has
    /// `num_heads * head_dim` outputs, the key and value projections `num_kv_heads * head_dim`.
    #[allow(clippy::too_many_arguments)]
    pub fn with_options(
        path: nn::Path,
        d_in: i64,
        d_out: i64,
        context_length: i64,
        dropout: f64,
        num_heads: i64,
        qkv_bias: bool,
        options: AttentionOptions,
    ) -> Result<Self> {
        let head_dim = options.head_dim;
        ensure!(
            d_in > 0 && d_out > 0 && context_length > 0 && num_heads > 0 && head_dim > 0,
            "attention sizes must be positive"
        );
        ensure!((0.0..1.0).contains(&dropout), "dropout must be in [0, 1), got {dropout}");
        let kv_heads = options.num_kv_heads;
        ensure!(
            kv_heads > 0 && num_heads % kv_heads == 0,
            "num_heads ({num_heads}) must be a multiple of num_kv_heads ({kv_heads})"
        );
        ensure!(options.rope_theta.is_none() || head_dim % 2 == 0, "RoPE needs an even head size, got {head_dim}");
        let device = path.device();
        let q_width = num_heads * head_dim;
        let head_norm =
            |name: &str| options.qk_norm.map(|(kind, eps)| Norm::new(&(&path / name), head_dim, kind, eps, false));
        Ok(Self {
            w_query: init::linear(&path / "W_query", d_in, q_width, qkv_bias).into(),
            w_key: init::linear(&path / "W_key", d_in, kv_heads * head_dim, qkv_bias).into(),
            w_value: init::linear(&path / "W_value", d_in, kv_heads * head_dim, qkv_bias).into(),
            out_proj: init::linear(&path / "out_proj", q_width, d_out, options.out_bias).into(),
            q_norm: head_norm("q_norm"),
            k_norm: head_norm("k_norm"),
            d_out,
            num_heads,
            num_kv_heads: kv_heads,
            head_dim,
            score_dim: options.score_dim.unwrap_or(head_dim as f64),
            dropout,
            context_length,
            kernel: AttentionKernel::default(),
            mask: options.mask,
            sink_tokens: options.sink_tokens,
            rope: options.rope_theta.map(|theta| Rope::scaled(head_dim, theta, options.rope_scaling, device)),
        })
    }

    /// Uses `kernel` for the attention weights.
    pub fn with_kernel(mut self, kernel: AttentionKernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// `(B, T, heads * head_dim)` -> `(B, heads, T, head_dim)`
    fn split_heads(&self, x: &Tensor, heads: i64) -> Tensor {
        let (b, t, _) = x.size3().expect("a (batch, tokens, features) tensor");
        x.view([b, t, heads, self.head_dim]).transpose(1, 2)
    }

    /// Attends over `x` of shape `(B, T, d_in)` at positions `0..T`; dropout on the attention
    /// weights only when `train`. Panics if `T` exceeds the context length (a programmer
    /// error: the GPT model checks user input before it gets here).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (_, t, _) = x.size3().expect("a (batch, tokens, features) tensor");
        assert!(t <= self.context_length, "{t} tokens exceed the context length {}", self.context_length);
        let positions = Tensor::arange(t, (Kind::Int64, x.device()));
        self.forward_at(x, &positions, CacheAccess::None, train, false).0
    }

    /// The general form of every forward pass: `x` `(B, T, d_in)` holds the tokens at
    /// `positions` `(T,)`; earlier keys and values come from (and the new ones go to) the
    /// cache that `cache` names. Returns the output `(B, T, d_out)` and, when `weights`, the
    /// attention weights `(B, num_heads, T, keys)` the output was computed with (then always
    /// by the explicit kernel).
    pub fn forward_at(
        &self,
        x: &Tensor,
        positions: &Tensor,
        cache: CacheAccess,
        train: bool,
        weights: bool,
    ) -> (Tensor, Option<Tensor>) {
        let (b, t, _) = x.size3().expect("a (batch, tokens, features) tensor");
        let (queries, keys, values) = self.project(x);
        let mut queries = self.split_heads(&queries, self.num_heads); // (B, nh, T, hd)
        let mut keys = self.split_heads(&keys, self.num_kv_heads); // (B, nkv, T, hd)
        let values = self.split_heads(&values, self.num_kv_heads);
        if let (Some(q_norm), Some(k_norm)) = (&self.q_norm, &self.k_norm) {
            queries = q_norm.forward(&queries);
            keys = k_norm.forward(&keys);
        }
        let renumbered = matches!(cache, CacheAccess::Rolling { rope_positions: Some(_), .. });
        if let (Some(rope), false) = (&self.rope, renumbered) {
            queries = rope.rotate(&queries, positions);
            keys = rope.rotate(&keys, positions);
        }
        let mut mask = (self.mask, self.sink_tokens);
        // `(B, 1, Q, K)`: the left padding each sequence's queries may not see.
        let mut padded = None;
        // The keys and values attended over, and their positions when a query may miss some.
        let (keys, values, key_positions) = match cache {
            CacheAccess::None => (keys, values, Some(positions.shallow_clone())),
            CacheAccess::Append { cache, start, padding } => {
                let end = start + t;
                assert!(end <= cache.keys.size()[2], "{end} positions exceed the cache");
                cache.keys.narrow(2, start, t).copy_(&keys);
                cache.values.narrow(2, start, t).copy_(&values);
                let slots = Tensor::arange(end, (Kind::Int64, x.device()));
                padded = padding.map(|padding| padding_hidden(padding, &slots, positions));
                // One new token after all the others sees every key unless a window or
                // padding hides some.
                let sees_all = t == 1 && !matches!(self.mask, AttentionMask::SlidingWindow(_)) && padding.is_none();
                let key_positions = (!sees_all).then_some(slots);
                (cache.keys.narrow(2, 0, end), cache.values.narrow(2, 0, end), key_positions)
            }
            CacheAccess::Rolling { cache, slot_positions, keep, into, sinks, window, rope_positions } => {
                let mut all_keys = Tensor::cat(&[&cache.keys, &keys], 2);
                let all_values = Tensor::cat(&[&cache.values, &values], 2);
                let _ = cache.keys.index_copy_(2, into, &keys.index_select(2, keep));
                let _ = cache.values.index_copy_(2, into, &values.index_select(2, keep));
                if let (Some(rope), Some(renumbered)) = (&self.rope, rope_positions) {
                    all_keys = rope.rotate(&all_keys, renumbered);
                    queries = rope.rotate(&queries, &renumbered.narrow(0, slot_positions.size()[0], t));
                }
                mask = (AttentionMask::SlidingWindow(window), sinks);
                (all_keys, all_values, Some(Tensor::cat(&[slot_positions, positions], 0)))
            }
        };
        let (keys, values) = self.expand_kv_heads(keys, values);
        let visible = match (key_positions, padded) {
            (None, _) => Visible::All,
            (Some(k), None) if mask.0 == AttentionMask::Causal && k.size() == positions.size() => Visible::Causal(k),
            (Some(k), None) => Visible::Blocked(mask.0.blocked(positions, &k, mask.1)),
            (Some(k), Some(padded)) => Visible::Blocked(mask.0.blocked(positions, &k, mask.1).logical_or(&padded)),
        };
        let (context, attention) = self.attend(&queries, &keys, &values, visible, train, weights);
        let context = context.transpose(1, 2).contiguous().view([b, t, self.num_heads * self.head_dim]); // (B, T, nh * hd)
        (context.apply(&self.out_proj), attention)
    }

    /// Grouped-query attention: each key/value head serves `num_heads / num_kv_heads` query
    /// heads.
    fn expand_kv_heads(&self, keys: Tensor, values: Tensor) -> (Tensor, Tensor) {
        let groups = self.num_heads / self.num_kv_heads;
        if groups == 1 {
            return (keys, values);
        }
        (keys.repeat_interleave_self_int(groups, 1, None), values.repeat_interleave_self_int(groups, 1, None))
    }

    /// The query, key and value projections of `x`. With the fused kernel and three plain
    /// dense layers they run as one matrix product over the stacked weights (the same numbers
    /// up to rounding, one pass over `x` instead of three); otherwise one layer each.
    fn project(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let layers = [&self.w_query, &self.w_key, &self.w_value];
        let dense: Option<Vec<&Tensor>> = layers
            .iter()
            .map(|layer| match (&layer.weight, &layer.lora) {
                (LinearWeight::Dense(weight), None) => Some(weight),
                _ => None,
            })
            .collect();
        match dense {
            Some(weights) if self.kernel == AttentionKernel::Sdpa => {
                let biases: Option<Vec<&Tensor>> = layers.iter().map(|layer| layer.bias.as_ref()).collect();
                let stacked = x.linear(&Tensor::cat(&weights, 0), biases.map(|b| Tensor::cat(&b, 0)).as_ref());
                let kv_width = self.num_kv_heads * self.head_dim;
                let parts = stacked.split_with_sizes([self.num_heads * self.head_dim, kv_width, kv_width], -1);
                let [queries, keys, values]: [Tensor; 3] = parts.try_into().expect("three parts");
                (queries, keys, values)
            }
            _ => {
                // Keys first, as listing 3.5 computes them: the order in which the three
                // gradients reach `x` in the backward pass, and so their sum's rounding.
                let keys = x.apply(&self.w_key);
                (x.apply(&self.w_query), keys, x.apply(&self.w_value))
            }
        }
    }

    /// Section 3.5's weighted sum: `(B, nh, Q, hd)` queries over keys and values
    /// `(B, nh, K, hd)`, each query seeing the keys `visible` allows.
    fn attend(
        &self,
        queries: &Tensor,
        keys: &Tensor,
        values: &Tensor,
        visible: Visible,
        train: bool,
        want_weights: bool,
    ) -> (Tensor, Option<Tensor>) {
        if self.kernel == AttentionKernel::Sdpa && !want_weights {
            let dropout = if train { self.dropout } else { 0.0 };
            let (mask, is_causal) = match visible {
                Visible::All => (None, false),
                Visible::Causal(_) => (None, true),
                Visible::Blocked(blocked) => (Some(blocked.logical_not()), false),
            };
            let scale = (self.score_dim != self.head_dim as f64).then(|| self.score_dim.sqrt().recip());
            let context =
                Tensor::scaled_dot_product_attention(queries, keys, values, mask, dropout, is_causal, scale, false);
            return (context, None);
        }
        let scores = queries.matmul(&keys.transpose(2, 3)); // (B, nh, Q, K)
        let weights = match visible {
            Visible::All => (scores / self.score_dim.sqrt()).softmax(-1, None::<Kind>),
            Visible::Causal(positions) => {
                let blocked = AttentionMask::Causal.blocked(&positions, &positions, 0);
                softmax_unblocked(&scores, &blocked, self.score_dim)
            }
            Visible::Blocked(blocked) => softmax_unblocked(&scores, &blocked, self.score_dim),
        };
        let context = weights.dropout(self.dropout, train).matmul(values); // (B, nh, Q, hd)
        (context, want_weights.then_some(weights))
    }
}

/// `(B, 1, Q, K)`: true where a query at `positions` `(Q,)` may not see a key slot `(K,)`
/// because the slot is left padding of its sequence (`padding` `(B,)` slots each). A padding
/// slot still sees itself: a query that saw nothing would turn its softmax into NaNs, which
/// would reach real queries through the zero weights they give its values.
fn padding_hidden(padding: &Tensor, slots: &Tensor, positions: &Tensor) -> Tensor {
    let padded = slots.view([1, 1, 1, -1]).lt_tensor(&padding.view([-1, 1, 1, 1]));
    let own = slots.view([1, 1, 1, -1]).eq_tensor(&positions.view([1, 1, -1, 1]));
    padded.logical_and(&own.logical_not())
}

/// Which keys the queries of one attention call see.
enum Visible {
    /// Every key (one new token after the cached ones).
    All,
    /// The causal mask of a full sequence at these positions (the fused kernel's `is_causal`).
    Causal(Tensor),
    /// All but these `(Q, K)`.
    Blocked(Tensor),
}

/// One layer's keys and values for cached generation: preallocated
/// `(B, num_kv_heads, slots, head_dim)` tensors that new tokens are written into, never
/// re-concatenated.
#[derive(Debug)]
pub struct LayerKvCache {
    pub keys: Tensor,
    pub values: Tensor,
}

impl LayerKvCache {
    /// A copy that shares nothing with this one.
    pub fn deep_clone(&self) -> Self {
        Self { keys: self.keys.copy(), values: self.values.copy() }
    }
}

impl MultiHeadAttention {
    /// An empty cache of the context length for `batch` sequences on `device`, in `kind`.
    pub fn new_cache(&self, batch: i64, kind: Kind, device: Device) -> LayerKvCache {
        self.new_cache_of(batch, self.context_length, kind, device)
    }

    /// An empty cache of `slots` positions.
    pub fn new_cache_of(&self, batch: i64, slots: i64, kind: Kind, device: Device) -> LayerKvCache {
        let shape = [batch, self.num_kv_heads, slots, self.head_dim];
        LayerKvCache { keys: Tensor::zeros(shape, (kind, device)), values: Tensor::zeros(shape, (kind, device)) }
    }

    /// Attention for `x` `(B, T, d_in)` holding the tokens at positions `start..start + T`,
    /// with the keys and values of positions `0..start` taken from `cache` and those of the
    /// new tokens written into it. Evaluation mode (no dropout). Panics past the context.
    pub fn forward_cached(&self, x: &Tensor, cache: &mut LayerKvCache, start: i64) -> Tensor {
        let (_, t, _) = x.size3().expect("a (batch, tokens, features) tensor");
        let end = start + t;
        assert!(end <= self.context_length, "{end} positions exceed the context length {}", self.context_length);
        let positions = Tensor::arange_start(start, end, (Kind::Int64, x.device()));
        self.forward_at(x, &positions, CacheAccess::Append { cache, start, padding: None }, false, false).0
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
    use crate::core::device::{global_rng_lock, seed_everything};

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
    fn rotary_attention_sees_only_relative_positions() {
        let _rng = global_rng_lock();
        seed_everything(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let options = AttentionOptions { num_kv_heads: 1, rope_theta: Some(10_000.0), ..AttentionOptions::book(2, 4) };
        let mha = MultiHeadAttention::with_options(vs.root(), 8, 8, 64, 0.0, 2, false, options).unwrap();
        let x = Tensor::randn([1, 5, 8], (Kind::Float, Device::Cpu));
        let at = |offset: i64| {
            let positions = Tensor::arange_start(offset, offset + 5, (Kind::Int64, Device::Cpu));
            mha.forward_at(&x, &positions, CacheAccess::None, false, false).0
        };
        assert!(at(0).allclose(&at(37), 1e-5, 1e-5, false), "every position shifted by 37");
        let sdpa = MultiHeadAttention::with_options(vs.root() / "b", 8, 8, 64, 0.0, 2, false, options).unwrap();
        let explicit = sdpa.forward_t(&x, false);
        assert!(sdpa.with_kernel(AttentionKernel::Sdpa).forward_t(&x, false).allclose(&explicit, 1e-5, 1e-6, false));
    }

    #[test]
    fn masks_block_by_position() {
        let positions = Tensor::arange(6, (Kind::Int64, Device::Cpu));
        let seen = |mask: AttentionMask, sinks| {
            let blocked = mask.blocked(&positions, &positions, sinks).logical_not();
            Vec::<bool>::try_from(blocked.get(5)).unwrap()
        };
        assert_eq!(seen(AttentionMask::Causal, 0), [true; 6]);
        assert_eq!(seen(AttentionMask::SlidingWindow(2), 0), [false, false, false, false, true, true]);
        assert_eq!(seen(AttentionMask::SlidingWindow(2), 1), [true, false, false, false, true, true]);
        let row0 = mask_row(AttentionMask::Prefix(3), &positions);
        assert_eq!(row0, [true, true, true, false, false, false]);
        // Empty cache slots (position -1) are never seen.
        let keys = Tensor::from_slice(&[-1i64, 0, 1]);
        let blocked = AttentionMask::Causal.blocked(&Tensor::from_slice(&[1i64]), &keys, 0);
        assert_eq!(Vec::<bool>::try_from(blocked.get(0)).unwrap(), [true, false, false]);
    }

    fn mask_row(mask: AttentionMask, positions: &Tensor) -> Vec<bool> {
        Vec::<bool>::try_from(mask.blocked(positions, positions, 0).logical_not().get(0)).unwrap()
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
