//! The third layer of `shared`: the GPT model of chapters 3 and 4 (configuration,
//! attention, positions, the transformer block, the model, its KV cache, parameter counts)
//! with chapter 21's variations as config options, and appendix E's LoRA adapters. It
//! builds on [`crate::nn`], [`crate::core`] and [`crate::tokenizer`] (a config names the
//! model's tokenizer).
//!
//! | module | book | holds |
//! |---|---|---|
//! | [`attention`] | 3.5-3.6, 21 | the book's `MultiHeadAttention` (causal mask, SDPA kernel), grouped-query attention, sliding-window and prefix masks, KV-cache access |
//! | [`positions`] | 2.8, 21 | learned, sinusoidal, rotary (RoPE) or no position information |
//! | [`classifier`] | 6.5, 6.8 | the class head in place of the vocabulary head, freezing, the class of one text |
//! | [`lora`] | E | LoRA adapters on every linear layer, merging, adapter-only state |
//! | `config`, `block`, `gpt`, `count` | 4, 21 | `GptConfig` and presets, `TransformerBlock`, `GptModel` and `KvCache`, `ParameterCounts` (re-exported here) |
//!
//! Parameter names equal the book's PyTorch `state_dict` keys (`tok_emb.weight`,
//! `trf_blocks.0.att.W_query.weight`, `trf_blocks.0.ff.layers.0.weight`,
//! `trf_blocks.0.norm1.scale`, `final_norm.shift`, `out_head.weight`, ...), and parameters are
//! created in the reference order with PyTorch's initializers, so `tch::manual_seed(123)` then
//! [`GptModel::new`] gives the book's initial weights.

pub mod attention;
mod block;
pub mod classifier;
mod config;
mod count;
mod gpt;
pub mod lora;
pub mod positions;

pub use block::TransformerBlock;
pub use config::{
    GptConfig, LocalAttention, NormPlacement, MAX_CONTEXT_LENGTH, MAX_EMB_DIM, MAX_FUTURE_HEADS, MAX_LAYERS,
    MAX_MODEL_BYTES, MAX_VOCAB_SIZE, PRESETS,
};
pub use count::ParameterCounts;
pub use gpt::{GptModel, KvCache};
