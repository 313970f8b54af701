//! Analysing a pretrained model (21.17, 21.20-21.24): attention patterns, position embeddings, fine-tuning on a new domain, three model sizes, tokenizers, per-token loss.

pub mod ex21_17;
pub mod ex21_20;
pub mod ex21_21;
pub mod ex21_22;
pub mod ex21_23;
pub mod ex21_24;
