//! The GPT model of chapter 4: configuration, layers, the model, and parameter counting,
//! with chapter 21's variations as config options.
//!
//! Parameter names equal the book's PyTorch `state_dict` keys (`tok_emb.weight`,
//! `trf_blocks.0.att.W_query.weight`, `trf_blocks.0.ff.layers.0.weight`,
//! `trf_blocks.0.norm1.scale`, `final_norm.shift`, `out_head.weight`, ...), and parameters are
//! created in the reference order with PyTorch's initializers, so `tch::manual_seed(123)` then
//! [`GptModel::new`] gives the book's initial weights.

mod block;
mod config;
mod count;
mod model;

pub use block::TransformerBlock;
pub use config::{
    GptConfig, NormPlacement, MAX_CONTEXT_LENGTH, MAX_EMB_DIM, MAX_FUTURE_HEADS, MAX_LAYERS, MAX_MODEL_BYTES,
    MAX_VOCAB_SIZE, PRESETS,
};
pub use count::ParameterCounts;
pub use model::{GptModel, KvCache};
