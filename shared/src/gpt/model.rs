//! Section 4.6, listing 4.7: the GPT model.

use anyhow::{ensure, Result};
use tch::{nn, Device, Kind, Tensor};

use super::{GptConfig, LayerNorm, TransformerBlock};
use crate::attention::LayerKvCache;
use crate::init;
use crate::lora::LinearWithLora;

/// Every layer's keys and values for cached generation, and how many positions they hold.
#[derive(Debug)]
pub struct KvCache {
    pub layers: Vec<LayerKvCache>,
    pub len: i64,
}

/// Token and position embeddings, `n_layers` transformer blocks, a final norm and an output
/// head without bias.
#[derive(Debug)]
pub struct GptModel {
    pub cfg: GptConfig,
    pub tok_emb: nn::Embedding,
    pub pos_emb: nn::Embedding,
    pub trf_blocks: Vec<TransformerBlock>,
    pub final_norm: LayerNorm,
    pub out_head: LinearWithLora,
}

impl GptModel {
    /// Validates `cfg`, then creates the parameters under `path` in the book's order.
    pub fn new(path: &nn::Path, cfg: &GptConfig) -> Result<Self> {
        cfg.validate()?;
        if let (Device::Cpu, Some(available)) = (path.device(), crate::device::system_memory_bytes()) {
            let needed = cfg.memory_bytes();
            ensure!(
                needed <= available,
                "this model needs {:.1} GB for its parameters and masks, more than this machine's {:.1} GB of memory",
                needed as f64 / 1e9,
                available as f64 / 1e9
            );
        }
        let tok_emb = init::embedding(path / "tok_emb", cfg.vocab_size, cfg.emb_dim);
        let pos_emb = init::embedding(path / "pos_emb", cfg.context_length, cfg.emb_dim);
        let trf_blocks = (0..cfg.n_layers)
            .map(|i| TransformerBlock::new(&(path / "trf_blocks" / i), cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            tok_emb,
            pos_emb,
            trf_blocks,
            final_norm: LayerNorm::new(&(path / "final_norm"), cfg.emb_dim),
            out_head: init::linear(path / "out_head", cfg.emb_dim, cfg.vocab_size, false).into(),
        })
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
        let (min, max) = (idx.min().int64_value(&[]), idx.max().int64_value(&[]));
        ensure!(
            min >= 0 && max < self.cfg.vocab_size,
            "token id {} is outside the vocabulary (0..{})",
            if min < 0 { min } else { max },
            self.cfg.vocab_size
        );
        Ok(())
    }

    /// Logits `(B, T, vocab_size)` for token ids `(B, T)`; dropout only when `train`.
    /// Panics on ids that [`GptModel::check_tokens`] would reject.
    pub fn forward_t(&self, idx: &Tensor, train: bool) -> Tensor {
        let (_, tokens) = idx.size2().expect("a (batch, tokens) tensor");
        let tok_embeds = idx.apply(&self.tok_emb); // (B, T, E)
        let positions = Tensor::arange(tokens, (Kind::Int64, idx.device()));
        let pos_embeds = positions.apply(&self.pos_emb); // (T, E)
        let mut x = (tok_embeds + pos_embeds).dropout(self.cfg.emb_dropout(), train);
        for block in &self.trf_blocks {
            x = block.forward_t(&x, train);
        }
        self.final_norm.forward(&x).apply(&self.out_head)
    }
}

impl GptModel {
    /// An empty cache for `batch` sequences, preallocated to the context length, with the
    /// dtype and device of the model's weights.
    pub fn new_cache(&self, batch: i64) -> KvCache {
        let (kind, device) = (self.tok_emb.ws.kind(), self.tok_emb.ws.device());
        KvCache { layers: self.trf_blocks.iter().map(|b| b.att.new_cache(batch, kind, device)).collect(), len: 0 }
    }

    /// Logits `(B, T, vocab_size)` for the `T` tokens that follow the `cache.len` cached ones;
    /// their keys and values are added to the cache. Evaluation mode. Panics past the context.
    pub fn forward_cached(&self, idx: &Tensor, cache: &mut KvCache) -> Tensor {
        let (_, tokens) = idx.size2().expect("a (batch, tokens) tensor");
        let start = cache.len;
        let positions = Tensor::arange_start(start, start + tokens, (Kind::Int64, idx.device()));
        let mut x = idx.apply(&self.tok_emb) + positions.apply(&self.pos_emb);
        for (block, layer_cache) in self.trf_blocks.iter().zip(&mut cache.layers) {
            x = block.forward_cached(&x, layer_cache, start);
        }
        cache.len += tokens;
        self.final_norm.forward(&x).apply(&self.out_head)
    }
}

impl nn::ModuleT for GptModel {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        GptModel::forward_t(self, xs, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::global_rng_lock;

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
