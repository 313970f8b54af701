//! Chapter 2, "Working with text data": simple tokenizers, GPT-2's byte-pair encoding (and
//! a BPE written from scratch), sliding-window data loaders and embeddings.
//!
//! ```text
//! cargo run -p ch02-tokenization                    # the chapter's walk-through
//! cargo run -p ch02-tokenization -- exercise 2.1    # one exercise (list: `list`)
//! ```

pub use shared::tokenizer::bpe;
pub mod bpe_train;
pub mod exercises;
pub use shared::tokenizer::word as simple_tokenizer;
pub mod walkthrough;
