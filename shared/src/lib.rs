//! The book's reusable library, shared by every chapter crate.
//!
//! One module per concept, each naming the book section it implements. A chapter crate
//! depends on this crate and on no other chapter; code that a later chapter needs lives here.
//!
//! | module | book | holds |
//! |---|---|---|
//! | [`core`] | A, 2.6, 3.4, 4.6 | the bottom layer: devices and seeding, PyTorch's initializers and generator, LibTorch operators `tch` lacks, tensors as nested vectors, timing |
//! | [`nn`] | 3-4, 21, E | the second layer: `Linear` (dense, LoRA, quantized), `LayerNorm`, GELU, `FeedForward` |
//! | [`model`] | 3-4, 21, E | the third layer: `GptConfig`, attention, positions, `TransformerBlock`, `GptModel` and its KV cache, parameter counts, LoRA |
//! | [`data`] | 2, 6, 7 | the data-set registry, resolution order, checksummed download; the next-token dataset and loader; the SMS Spam Collection |
//! | [`tokenizer`] | 2, 21 | the `Tokenizer` trait: GPT-2's BPE (`tiktoken-rs`), BPE from scratch, word- and character-level |
//! | [`generate`] | 4.7, 5.3, 21 | `generate_text_simple`, greedy decoding with a KV cache, temperature and top-k sampling; the step-wise decoder and its logits processors (top-p, repetition penalty, watermark); beam search, speculative (draft-model and self-speculative) and contrastive decoding |
//! | [`train`] | 5.1-5.4 | cross-entropy and perplexity, loss over a loader, AdamW with savable state, checkpoints, `train_model_simple` |
//! | [`weights`] | 5.4-5.5 | loading the book's state dicts and OpenAI's GPT-2 (Hugging Face layout, hub cache) |
//! | [`model_source`] | 5-7 | `--checkpoint`, `--weights` or a fresh seeded model, for every command that takes a model; the fine-tuning runs' `--init` |
//! | [`classifier`] | 6 | padded classification data, the 2-class head, freezing, loss and accuracy, `train_classifier_simple` |
//! | [`plot`] | 4, 5 | PNG line charts |
//! | [`reference`] | all | comparing results with JSON reference values and text snapshots (tests; the `testing` feature) |
//! | [`exercise`] | all | the exercise registry behind every crate's `list` and `exercise <id>`, and the context an exercise runs with |
//! | [`fuzz`] | all | mutation testing of the loaders (tests; the `testing` feature) |
//! | [`cli`] | all | the flags every binary takes (`--device`, `--seed`, `--out-dir`, `--data`) |
//! | [`distributed`] | A.9.3 | data-parallel training over LibTorch's c10d: process groups, gradient averaging, sharded loaders, the launcher |

pub mod classifier;
pub mod cli;
pub mod core;
pub mod data;
pub mod distributed;
pub mod exercise;
#[cfg(any(test, feature = "testing"))]
pub mod fuzz;
pub mod generate;
pub mod model;
pub mod model_source;
pub mod nn;
pub mod plot;
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
