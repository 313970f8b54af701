//! Section 4.6, listing 4.7: the GPT model, with chapter 21's variations as options of its
//! config: position schemes, grouped-query attention, other attention masks, post-norm,
//! tied embeddings and extra output heads.

use anyhow::{ensure, Result};
use tch::{nn, Device, Kind, Tensor};

use super::{GptConfig, ParameterCounts, TransformerBlock};
use crate::core::init;
use crate::model::attention::{AttentionMask, CacheAccess, LayerKvCache};
use crate::model::positions::{sinusoidal_table, PosEncoding};
use crate::nn::{Linear, LinearWeight, Norm, Quantization};

/// Every layer's keys and values for cached generation, and how many positions they hold.
///
/// Slot `p` holds position `p`, except in a rolling cache (a sliding-window model whose
/// window plus sinks is shorter than the context): it holds the `sink_tokens` first
/// positions and the last `window`, each newer position taking the slot of the one that
/// left the window. A streaming cache ([`GptModel::new_streaming_cache`]) is a rolling cache
/// that numbers rotary positions inside the cache rather than in the text.
#[derive(Debug)]
pub struct KvCache {
    pub layers: Vec<LayerKvCache>,
    /// Positions processed: the next token's position.
    pub len: i64,
    /// The position in each slot (-1: empty); rolling caches only.
    slot_positions: Vec<i64>,
    /// `(sink_tokens, window)` of a rolling cache.
    rolling: Option<(i64, i64)>,
    /// StreamingLLM's numbering: keys are rotated by their rank among the keys a query sees.
    in_cache_positions: bool,
    /// Left padding `(B,)`: how many slots at the start of each sequence hold no token
    /// ([`GptModel::new_padded_cache`]).
    padding: Option<Tensor>,
}

impl KvCache {
    /// Slots per layer.
    pub fn capacity(&self) -> i64 {
        self.layers.first().map_or(0, |layer| layer.keys.size()[2])
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> i64 {
        self.layers.iter().map(|l| 2 * crate::core::tensors::byte_size(&l.keys)).sum()
    }

    /// Whether some sequence starts with left padding.
    pub fn is_padded(&self) -> bool {
        self.padding.as_ref().is_some_and(|padding| padding.gt(0).any().int64_value(&[]) != 0)
    }

    /// Whether old positions leave the cache as new ones come.
    pub fn is_rolling(&self) -> bool {
        self.rolling.is_some()
    }

    /// A copy that shares no tensor with this one (beam search).
    pub fn deep_clone(&self) -> Self {
        Self {
            layers: self.layers.iter().map(LayerKvCache::deep_clone).collect(),
            len: self.len,
            slot_positions: self.slot_positions.clone(),
            rolling: self.rolling,
            in_cache_positions: self.in_cache_positions,
            padding: self.padding.as_ref().map(Tensor::copy),
        }
    }

    /// Keeps the sequences at `indices` `(B',)` of the batch, in that order; an index may
    /// repeat (beam search continues its best beams this way).
    pub fn select_sequences(&mut self, indices: &Tensor) {
        for layer in &mut self.layers {
            layer.keys = layer.keys.index_select(0, indices);
            layer.values = layer.values.index_select(0, indices);
        }
        if let Some(padding) = &mut self.padding {
            *padding = padding.index_select(0, indices);
        }
    }

    /// Forgets every position from `len` on. Returns false, changing nothing, when a position
    /// below `len` that later tokens would see has already left a rolling cache; the caller
    /// then has to refill the cache from the tokens.
    pub fn truncate(&mut self, len: i64) -> bool {
        if len >= self.len {
            return true;
        }
        if let Some((sinks, window)) = self.rolling {
            let needed = (0..len).filter(|&p| p < sinks || p > len - window);
            if !needed.into_iter().all(|p| self.slot_positions.contains(&p)) {
                return false;
            }
            for position in &mut self.slot_positions {
                if *position >= len {
                    *position = -1;
                }
            }
        }
        self.len = len;
        true
    }
}

/// Token embeddings, position information, `n_layers` transformer blocks, a final norm and
/// the output heads (without bias).
#[derive(Debug)]
pub struct GptModel {
    pub cfg: GptConfig,
    pub tok_emb: nn::Embedding,
    /// The learned position table (`pos_encoding: learned`).
    pub pos_emb: Option<nn::Embedding>,
    /// The fixed table (`pos_encoding: sinusoidal`), not a parameter.
    pub pos_table: Option<Tensor>,
    pub trf_blocks: Vec<TransformerBlock>,
    pub final_norm: Norm,
    /// The next-token head; with `tie_embeddings` it computes with `tok_emb`'s matrix.
    pub out_head: Linear,
    /// Head `i` predicts the token `i + 2` places ahead (`n_future_heads - 1` of them).
    pub future_heads: Vec<Linear>,
}

impl GptModel {
    /// Validates `cfg`, then creates the parameters under `path` in the book's order.
    pub fn new(path: &nn::Path, cfg: &GptConfig) -> Result<Self> {
        cfg.validate()?;
        // Refused before anything is allocated: LibTorch's allocation failures panic in tch.
        if let (Device::Cpu, Some(budget)) = (path.device(), crate::core::device::memory_budget()) {
            let needed = cfg.memory_bytes();
            ensure!(
                needed <= budget.bytes,
                "this model needs {:.1} GB for its parameters and masks, more than the {:.1} GB this process can \
                 allocate (the bound: {})",
                needed as f64 / 1e9,
                budget.bytes as f64 / 1e9,
                budget.limit
            );
        }
        let tok_emb = init::embedding(path / "tok_emb", cfg.vocab_size, cfg.emb_dim);
        let pos_emb = (cfg.pos_encoding == PosEncoding::Learned)
            .then(|| init::embedding(path / "pos_emb", cfg.context_length, cfg.emb_dim));
        let pos_table = (cfg.pos_encoding == PosEncoding::Sinusoidal)
            .then(|| sinusoidal_table(cfg.context_length, cfg.emb_dim, path.device()));
        let trf_blocks = (0..cfg.n_layers)
            .map(|i| TransformerBlock::for_layer(&(path / "trf_blocks" / i), cfg, i))
            .collect::<Result<Vec<_>>>()?;
        let final_norm = Norm::new(&(path / "final_norm"), cfg.emb_dim, cfg.norm, cfg.norm_eps, cfg.bias);
        let out_head = if cfg.tie_embeddings {
            Linear::dense(tok_emb.ws.shallow_clone(), None)
        } else {
            init::linear(path / "out_head", cfg.emb_dim, cfg.vocab_size, false).into()
        };
        let future_heads = (0..cfg.n_future_heads - 1)
            .map(|i| init::linear(path / "future_heads" / i, cfg.emb_dim, cfg.vocab_size, false).into())
            .collect();
        Ok(Self { cfg: cfg.clone(), tok_emb, pos_emb, pos_table, trf_blocks, final_norm, out_head, future_heads })
    }

    /// Switches every layer norm, GELU and attention to LibTorch's fused kernels (native
    /// `layer_norm`, `gelu(approximate="tanh")`, `scaled_dot_product_attention` where no
    /// weights are asked for): the same functions with fewer passes over memory, equal to the
    /// book's step-by-step code up to float rounding (a test checks). Chapter 21's walk-through
    /// trains this way; the chapters that reproduce the book's numbers keep the book's code.
    pub fn use_fused_kernels(&mut self) {
        self.final_norm.use_fused_kernel();
        for block in &mut self.trf_blocks {
            for norm in [Some(&mut block.norm1), Some(&mut block.norm2)]
                .into_iter()
                .chain([block.post_attention_norm.as_mut(), block.post_ff_norm.as_mut()])
                .flatten()
            {
                norm.use_fused_kernel();
            }
            block.ff.fused = true;
            block.att.kernel = crate::model::attention::AttentionKernel::Sdpa;
        }
    }

    /// Checks token ids `(B, T)` a user supplied: at least one token, at most the context
    /// length, every id inside the vocabulary.
    pub fn check_tokens(&self, idx: &Tensor) -> Result<()> {
        let (_, tokens) = idx.size2().map_err(|_| anyhow::anyhow!("token ids must be a (batch, tokens) tensor"))?;
        ensure!(tokens > 0, "the input has no tokens");
        ensure!(
            tokens <= self.cfg.context_length,
            "the input has {tokens} tokens, more than the model's context length of {}",
            self.cfg.context_length
        );
        // One read from the device (it waits for the device's queue) when the ids are fine.
        if idx.lt(0).logical_or(&idx.ge(self.cfg.vocab_size)).any().int64_value(&[]) == 0 {
            return Ok(());
        }
        let (min, max) = (idx.min().int64_value(&[]), idx.max().int64_value(&[]));
        ensure!(
            min >= 0 && max < self.cfg.vocab_size,
            "token id {} is outside the vocabulary (0..{})",
            if min < 0 { min } else { max },
            self.cfg.vocab_size
        );
        Ok(())
    }

    /// Checks that `other` reads and writes the same token ids (the same tokenizer and
    /// vocabulary): what decoding with two models and distillation need. `what` names the
    /// pair for the message ("the draft and the target").
    pub fn check_same_tokenizer(&self, other: &GptModel, what: &str) -> Result<()> {
        ensure!(
            self.cfg.tokenizer == other.cfg.tokenizer && self.cfg.vocab_size == other.cfg.vocab_size,
            "{what} must share a tokenizer: {} ({} ids) vs {} ({} ids)",
            self.cfg.tokenizer.name(),
            self.cfg.vocab_size,
            other.cfg.tokenizer.name(),
            other.cfg.vocab_size
        );
        Ok(())
    }

    /// Logits `(B, T, vocab_size)` of the next-token head for token ids `(B, T)`; dropout
    /// only when `train`. Panics on ids that [`GptModel::check_tokens`] would reject.
    pub fn forward_t(&self, idx: &Tensor, train: bool) -> Tensor {
        self.logits(&self.hidden_states(idx, train))
    }

    /// The trunk's output `(B, T, emb_dim)` after the final norm, which every head reads.
    pub fn hidden_states(&self, idx: &Tensor, train: bool) -> Tensor {
        self.final_norm.forward(&self.blocks(idx, train, None))
    }

    /// The next-token head on hidden states.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        self.soft_cap(hidden.apply(&self.out_head))
    }

    /// `cap * tanh(logits / cap)` with `final_logit_softcap` (Gemma), else the logits.
    fn soft_cap(&self, logits: Tensor) -> Tensor {
        match self.cfg.final_logit_softcap {
            Some(cap) => (logits / cap).tanh() * cap,
            None => logits,
        }
    }

    /// The next-token head on one hidden state per sequence, `(B, E)` -> `(B, V)`, for
    /// decoding. Up to 16 sequences the layer's few-rows kernel computes it; for more, a
    /// dense head computes `(W h^T)^T` rather than `h W^T`: the same sums, but MKL
    /// multiplies a few dozen rows by the 50,257-row matrix about 3x faster in that order.
    pub fn next_token_logits(&self, hidden: &Tensor) -> Tensor {
        self.soft_cap(match (&self.out_head.weight, &self.out_head.lora, &self.out_head.bias) {
            (LinearWeight::Dense(weight), None, None) if hidden.size()[0] > 16 => {
                weight.mm(&hidden.tr()).tr().contiguous()
            }
            _ => hidden.apply(&self.out_head),
        })
    }

    /// Every head on hidden states `(B, T, E)`: element `k` holds the logits `(B, T, V)` of
    /// the token `k + 1` places ahead (element 0 is [`GptModel::logits`]).
    pub fn all_head_logits(&self, hidden: &Tensor) -> Vec<Tensor> {
        std::iter::once(&self.out_head)
            .chain(&self.future_heads)
            .map(|head| self.soft_cap(hidden.apply(head)))
            .collect()
    }

    /// Every layer's attention weights `(B, n_heads, T, T)` for token ids `(B, T)`, in
    /// evaluation mode, from the same computation that produces the logits.
    pub fn attention_weights(&self, idx: &Tensor) -> Result<Vec<Tensor>> {
        self.check_tokens(idx)?;
        let _no_grad = tch::no_grad_guard();
        let mut weights = Vec::with_capacity(self.trf_blocks.len());
        let _ = self.blocks(idx, false, Some(&mut weights));
        Ok(weights)
    }

    /// Embeddings and every block for token ids `(B, T)` at positions `0..T`, before the
    /// final norm; each block's attention weights go to `weights` when given.
    fn blocks(&self, idx: &Tensor, train: bool, mut weights: Option<&mut Vec<Tensor>>) -> Tensor {
        let (_, tokens) = idx.size2().expect("a (batch, tokens) tensor");
        let positions = Tensor::arange(tokens, (Kind::Int64, idx.device()));
        let mut x = self.embed(idx, &positions).dropout(self.cfg.emb_dropout(), train);
        for block in &self.trf_blocks {
            let (out, attention) = block.forward_at(&x, &positions, CacheAccess::None, train, weights.is_some());
            if let (Some(weights), Some(attention)) = (weights.as_deref_mut(), attention) {
                weights.push(attention);
            }
            x = out;
        }
        x
    }

    /// Token embeddings plus the position embeddings of `positions` (learned or sinusoidal
    /// models; rotary positions act inside attention).
    fn embed(&self, idx: &Tensor, positions: &Tensor) -> Tensor {
        let mut tok_embeds = idx.apply(&self.tok_emb); // (B, T, E)
        if self.cfg.scale_embeddings {
            tok_embeds *= (self.cfg.emb_dim as f64).sqrt();
        }
        match (&self.pos_emb, &self.pos_table) {
            (Some(pos_emb), _) => tok_embeds + positions.apply(pos_emb), // + (T, E) or (B, T, E)
            (None, Some(table)) => {
                let mut shape = positions.size();
                shape.push(table.size()[1]);
                let rows = table.index_select(0, &positions.reshape([-1])).view(shape.as_slice());
                tok_embeds + rows.to_kind(self.tok_emb.ws.kind())
            }
            (None, None) => tok_embeds,
        }
    }

    /// Every linear layer with its parameter path: the attention projections and
    /// feed-forward layers of each block, then the output heads (appendix E's
    /// `replace_linear_with_lora` visits them in this order). A head tied to the token
    /// embedding is left out: changing it would change the embedding.
    pub fn linear_layers_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut layers = Vec::new();
        for (i, block) in self.trf_blocks.iter_mut().enumerate() {
            let att = &mut block.att;
            for (name, layer) in [
                ("W_query", &mut att.w_query),
                ("W_key", &mut att.w_key),
                ("W_value", &mut att.w_value),
                ("out_proj", &mut att.out_proj),
            ] {
                layers.push((format!("trf_blocks.{i}.att.{name}"), layer));
            }
            for (name, layer) in block.ff.linear_layers_mut() {
                layers.push((format!("trf_blocks.{i}.ff.{name}"), layer));
            }
        }
        if !self.cfg.tie_embeddings {
            layers.push(("out_head".to_string(), &mut self.out_head));
        }
        for (i, head) in self.future_heads.iter_mut().enumerate() {
            layers.push((format!("future_heads.{i}"), head));
        }
        layers
    }

    /// Quantizes the weight of every linear layer ([`GptModel::linear_layers_mut`]; a tied
    /// head stays the float embedding it shares): post-training quantization, exercise 21.34.
    pub fn quantize(&mut self, quantization: Quantization) -> Result<()> {
        for (_, layer) in self.linear_layers_mut() {
            layer.quantize(quantization)?;
        }
        Ok(())
    }

    /// `--int8`: every linear layer as int8 weights with one scale per output row
    /// ([`Quantization::INT8`]), multiplied by fbgemm's dynamically quantized int8 kernel.
    /// A head tied to the token embedding gets its own int8 copy (the embedding stays float):
    /// at batch 1 decoding reads every weight once per token, and the head is the largest.
    pub fn use_int8_kernels(&mut self) -> Result<()> {
        ensure!(
            self.tok_emb.ws.device() == Device::Cpu,
            "int8 weights run on the CPU only (fbgemm's kernels); use --device cpu or drop --int8"
        );
        self.quantize(Quantization::INT8)?;
        self.out_head.quantize(Quantization::INT8)?;
        let use_kernel = |layer: &mut Linear| match &mut layer.weight {
            LinearWeight::Quantized(q) => q.use_int8_kernel(),
            LinearWeight::Dense(_) => Ok(()),
        };
        use_kernel(&mut self.out_head)?;
        self.linear_layers_mut().into_iter().try_for_each(|(_, layer)| use_kernel(layer))
    }

    /// Bytes of the parameters as the model holds them: float32 everywhere except quantized
    /// linear weights, counted packed.
    pub fn parameter_bytes(&mut self) -> i64 {
        let (mut linear_elements, mut linear_bytes) = (0, 0);
        for (_, layer) in self.linear_layers_mut() {
            let (out, input) = layer.shape();
            linear_elements += out * input;
            linear_bytes += layer.weight_bytes();
        }
        (ParameterCounts::from_config(&self.cfg).total() - linear_elements) * 4 + linear_bytes
    }
}

impl GptModel {
    /// An empty cache for `batch` sequences with the dtype and device of the model's
    /// weights: the context length in slots, or, for a sliding window shorter than the
    /// context, a rolling cache of `sink_tokens + window` slots.
    pub fn new_cache(&self, batch: i64) -> KvCache {
        let (kind, device) = (self.tok_emb.ws.kind(), self.tok_emb.ws.device());
        let rolling = match self.cfg.attention_mask {
            AttentionMask::SlidingWindow(window) if self.cfg.sink_tokens + window < self.cfg.context_length => {
                Some((self.cfg.sink_tokens, window))
            }
            _ => None,
        };
        let slots = rolling.map_or(self.cfg.context_length, |(sinks, window)| sinks + window);
        KvCache {
            layers: self.trf_blocks.iter().map(|b| b.att.new_cache_of(batch, slots, kind, device)).collect(),
            len: 0,
            slot_positions: if rolling.is_some() { vec![-1; slots as usize] } else { Vec::new() },
            rolling,
            in_cache_positions: false,
            padding: None,
        }
    }

    /// A cache for prompts of different lengths decoded as one batch, left-padded to the
    /// longest: sequence `b` starts with `padding[b]` slots that hold no token. Its tokens
    /// take the positions they would have alone (position embeddings count from its first
    /// real token; rotary attention depends on distances only), and no query sees the
    /// padding, so each row decodes as it would by itself.
    pub fn new_padded_cache(&self, padding: &[i64]) -> Result<KvCache> {
        let mut cache = self.new_cache(padding.len() as i64);
        ensure!(!cache.is_rolling(), "batched decoding with padding needs a cache that holds the whole context");
        ensure!(padding.iter().all(|&p| (0..self.cfg.context_length).contains(&p)), "padding must fit the context");
        cache.padding = Some(Tensor::from_slice(padding).to_device(self.tok_emb.ws.device()));
        Ok(cache)
    }

    /// StreamingLLM's cache (Xiao et al. 2023) for a causal model with rotary or no positions:
    /// it keeps the first `sinks` positions and the last `window`, so the model can read a
    /// text of any length, and numbers positions inside the cache (each query sits right
    /// after the keys it sees, at most `sinks + window - 1` places away from them). `sinks`
    /// 0 is plain window attention.
    pub fn new_streaming_cache(&self, batch: i64, sinks: i64, window: i64) -> Result<KvCache> {
        ensure!(
            !self.cfg.pos_encoding.uses_table(),
            "a streaming cache renumbers positions inside the cache, which needs rotary or no position \
             encoding (this model has {:?} positions, fixed when its keys were computed)",
            self.cfg.pos_encoding
        );
        ensure!(self.cfg.attention_mask == AttentionMask::Causal, "a streaming cache needs a causal model");
        ensure!(sinks >= 0 && window > 0, "the window must be positive and the sinks not negative");
        ensure!(
            sinks + window <= self.cfg.context_length,
            "{sinks} sinks + a window of {window} exceed the context length {} the model was trained at",
            self.cfg.context_length
        );
        let (kind, device) = (self.tok_emb.ws.kind(), self.tok_emb.ws.device());
        let slots = sinks + window;
        Ok(KvCache {
            layers: self.trf_blocks.iter().map(|b| b.att.new_cache_of(batch, slots, kind, device)).collect(),
            len: 0,
            slot_positions: vec![-1; slots as usize],
            rolling: Some((sinks, window)),
            in_cache_positions: true,
            padding: None,
        })
    }

    /// Logits `(B, T, vocab_size)` for the `T` tokens that follow the `cache.len` cached ones;
    /// their keys and values are added to the cache. Evaluation mode. Panics past the context.
    pub fn forward_cached(&self, idx: &Tensor, cache: &mut KvCache) -> Tensor {
        self.logits(&self.hidden_states_cached(idx, cache))
    }

    /// [`GptModel::hidden_states`] of the tokens that follow the cached ones.
    pub fn hidden_states_cached(&self, idx: &Tensor, cache: &mut KvCache) -> Tensor {
        let (_, tokens) = idx.size2().expect("a (batch, tokens) tensor");
        let free = (cache.capacity() - cache.len).clamp(0, tokens);
        if !cache.in_cache_positions || free == tokens {
            return self.hidden_states_at(idx, cache);
        }
        // Renumbered positions are exact for one query at a time once keys start to leave.
        let mut parts = Vec::new();
        if free > 0 {
            parts.push(self.hidden_states_at(&idx.narrow(1, 0, free), cache));
        }
        for i in free..tokens {
            parts.push(self.hidden_states_at(&idx.narrow(1, i, 1), cache));
        }
        Tensor::cat(&parts, 1)
    }

    /// One pass of the tokens `idx` through the cache (which [`GptModel::hidden_states_cached`]
    /// has split, for a streaming cache, into calls its renumbering gets exactly right).
    fn hidden_states_at(&self, idx: &Tensor, cache: &mut KvCache) -> Tensor {
        let (_, tokens) = idx.size2().expect("a (batch, tokens) tensor");
        let (start, end) = (cache.len, cache.len + tokens);
        let device = idx.device();
        assert!(
            end <= self.cfg.context_length || (cache.is_rolling() && !self.cfg.pos_encoding.uses_table()),
            "{end} positions exceed the context length {}",
            self.cfg.context_length
        );
        let positions = Tensor::arange_start(start, end, (Kind::Int64, device));
        let mut x = match &cache.padding {
            // Each sequence's own positions `(B, T)`, counted from its first token.
            Some(padding) => self.embed(idx, &(positions.unsqueeze(0) - padding.unsqueeze(1)).clamp_min(0)),
            None => self.embed(idx, &positions),
        };
        match cache.rolling {
            None => {
                for (block, layer) in self.trf_blocks.iter().zip(&mut cache.layers) {
                    let access = CacheAccess::Append { cache: layer, start, padding: cache.padding.as_ref() };
                    x = block.forward_at(&x, &positions, access, false, false).0;
                }
            }
            Some((sinks, window)) => {
                // The new positions that stay: the sinks and the last `window`; each into its slot.
                let kept: Vec<i64> = (start..end).filter(|&p| p < sinks || p >= end - window).collect();
                let slot = |p: i64| if p < sinks { p } else { sinks + (p - sinks) % window };
                let keep = Tensor::from_slice(&kept.iter().map(|p| p - start).collect::<Vec<_>>()).to_device(device);
                let into = Tensor::from_slice(&kept.iter().map(|&p| slot(p)).collect::<Vec<_>>()).to_device(device);
                let slot_positions = Tensor::from_slice(&cache.slot_positions).to_device(device);
                let renumbered = cache.in_cache_positions.then(|| {
                    let keys: Vec<i64> = cache.slot_positions.iter().copied().chain(start..end).collect();
                    Tensor::from_slice(&in_cache_positions(&keys, end - 1, sinks, window)).to_device(device)
                });
                for (block, layer) in self.trf_blocks.iter().zip(&mut cache.layers) {
                    let access = CacheAccess::Rolling {
                        cache: layer,
                        slot_positions: &slot_positions,
                        keep: &keep,
                        into: &into,
                        sinks,
                        window,
                        rope_positions: renumbered.as_ref(),
                    };
                    x = block.forward_at(&x, &positions, access, false, false).0;
                }
                for p in kept {
                    cache.slot_positions[slot(p) as usize] = p;
                }
            }
        }
        cache.len = end;
        self.final_norm.forward(&x)
    }
}

/// The rank of each key (by text position; -1 marks an empty slot) among the keys the query
/// at `query` sees with `sinks` sink tokens and a `window`; 0 for keys it does not see.
fn in_cache_positions(keys: &[i64], query: i64, sinks: i64, window: i64) -> Vec<i64> {
    let seen = |k: i64| k >= 0 && k <= query && (k < sinks || query - k < window);
    keys.iter()
        .map(|&k| if seen(k) { keys.iter().filter(|&&other| seen(other) && other < k).count() as i64 } else { 0 })
        .collect()
}

impl nn::ModuleT for GptModel {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        GptModel::forward_t(self, xs, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::device::global_rng_lock;

    /// Builds a model while holding the generator lock (building draws random numbers).
    fn tiny(cfg: &GptConfig) -> (nn::VarStore, GptModel) {
        let _rng = global_rng_lock();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = GptModel::new(&vs.root(), cfg).unwrap();
        (vs, model)
    }

    #[test]
    fn logits_have_the_vocabulary_width() {
        let (_vs, model) = tiny(&GptConfig::tiny());
        let idx = Tensor::from_slice(&[6109i64, 3626, 6100, 345, 6109, 1110, 6622, 257]).view([2, 4]);
        assert_eq!(model.forward_t(&idx, false).size(), [2, 4, 50257]);
    }

    #[test]
    fn parameter_names_are_the_book_state_dict_keys() {
        let (vs, _model) = tiny(&GptConfig { n_layers: 1, ..GptConfig::tiny() });
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "final_norm.scale",
                "final_norm.shift",
                "out_head.weight",
                "pos_emb.weight",
                "tok_emb.weight",
                "trf_blocks.0.att.W_key.weight",
                "trf_blocks.0.att.W_query.weight",
                "trf_blocks.0.att.W_value.weight",
                "trf_blocks.0.att.out_proj.bias",
                "trf_blocks.0.att.out_proj.weight",
                "trf_blocks.0.ff.layers.0.bias",
                "trf_blocks.0.ff.layers.0.weight",
                "trf_blocks.0.ff.layers.2.bias",
                "trf_blocks.0.ff.layers.2.weight",
                "trf_blocks.0.norm1.scale",
                "trf_blocks.0.norm1.shift",
                "trf_blocks.0.norm2.scale",
                "trf_blocks.0.norm2.shift",
            ]
        );
    }

    #[test]
    fn bad_token_input_is_a_clear_error() {
        let (_vs, model) = tiny(&GptConfig::tiny());
        let err = |idx: Tensor| model.check_tokens(&idx).unwrap_err().to_string();
        assert!(err(Tensor::zeros([1, 17], (Kind::Int64, Device::Cpu)))
            .contains("more than the model's context length of 16"));
        assert!(err(Tensor::zeros([1, 0], (Kind::Int64, Device::Cpu))).contains("no tokens"));
        assert!(err(Tensor::from_slice(&[1i64, 50257]).view([1, 2])).contains("token id 50257"));
        assert!(err(Tensor::from_slice(&[-1i64, 2]).view([1, 2])).contains("token id -1"));
        model.check_tokens(&Tensor::from_slice(&[0i64, 50256]).view([1, 2])).unwrap();
        let invalid = GptConfig { n_heads: 3, ..GptConfig::tiny() }; // refused before any draw
        assert!(GptModel::new(&nn::VarStore::new(Device::Cpu).root(), &invalid).is_err());
    }

    #[test]
    fn dropout_only_in_training_and_causal_outputs() {
        let (_vs, model) = tiny(&GptConfig { drop_rate: 0.5, ..GptConfig::tiny() });
        let _rng = global_rng_lock(); // training-mode dropout draws from the generator
        let idx = Tensor::from_slice(&[1i64, 2, 3, 4, 5]).view([1, 5]);
        let eval = model.forward_t(&idx, false);
        assert!(eval.equal(&model.forward_t(&idx, false)));
        assert!(!eval.equal(&model.forward_t(&idx, true)));
        // The logits of a prefix do not depend on what follows it.
        let prefix = model.forward_t(&idx.narrow(1, 0, 3), false);
        assert!(prefix.allclose(&eval.narrow(1, 0, 3), 1e-5, 1e-5, false));
    }
}
