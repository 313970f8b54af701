//! The book's reusable library, shared by every chapter crate.
//!
//! One module per concept, each naming the book section it implements. A chapter crate
//! depends on this crate and on no other chapter; code that a later chapter needs lives here.
//!
//! The crate is layered: each layer is a folder and imports only the layers listed before it
//! (`tests/layers.rs` checks this). See `shared/README.md` for the tree.
//!
//! | layer | book | holds |
//! |---|---|---|
//! | [`core`] | A, 2.6, 3.4, 4.6 | devices and seeding, PyTorch's initializers and generator, LibTorch operators `tch` lacks, tensors as nested vectors, timing |
//! | [`nn`] | 3-4, 21, E | `Linear` (dense, LoRA, quantized), `LayerNorm`, GELU, `FeedForward` |
//! | [`tokenizer`] | 2, 21 | the `Tokenizer` trait: GPT-2's BPE (`tiktoken-rs`), BPE from scratch, word- and character-level |
//! | [`model`] | 3-4, 6, 21, E | `GptConfig`, attention, positions, `TransformerBlock`, `GptModel` and its KV cache, parameter counts, the class head, LoRA |
//! | [`data`] | 2, 6, 7 | the data-set registry and checksummed download; the next-token and classification datasets and loaders; the SMS Spam Collection |
//! | [`weights`] | 5.4-5.5 | loading the book's state dicts and OpenAI's GPT-2 (Hugging Face layout, hub cache) |
//! | [`generate`] | 4.7, 5.3, 21 | greedy, cached and sampled decoding; logits processors; beam search, speculative and contrastive decoding |
//! | [`train`] | 5, 6, A | losses, AdamW, schedules, checkpoints, the training loops of chapters 5 and 6, data-parallel training |
//! | [`app`] | all | the binaries' flags, exercise registry, model sources, plots and runs (the default `app` feature) |
//!
//! Test helpers (`fuzz`, `reference`) exist only with the `testing` feature, which the
//! workspace's tests turn on.

#[cfg(feature = "app")]
pub mod app;
pub mod core;
pub mod data;
#[cfg(any(test, feature = "testing"))]
pub mod fuzz;
pub mod generate;
pub mod model;
pub mod nn;
#[cfg(any(test, feature = "testing"))]
pub mod reference;
pub mod tokenizer;
pub mod train;
pub mod weights;

/// The workspace root (the folder holding the top-level `Cargo.toml`), where the data cache
/// `data/` and the default output folder `runs/` live.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the shared crate sits inside the workspace")
        .to_path_buf()
}
