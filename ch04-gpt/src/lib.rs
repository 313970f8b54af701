//! Chapter 4, "Implementing a GPT model from scratch to generate text". The model itself
//! (`GptConfig`, `LayerNorm`, GELU, `FeedForward`, `TransformerBlock`, `GptModel`) and
//! generation live in `shared`; this crate holds the chapter's walk-through, its teaching
//! models (the dummy GPT of listing 4.1, the shortcut experiment of listing 4.5) and its
//! exercises.
//!
//! ```text
//! cargo run -p ch04-gpt                                   # the chapter's walk-through
//! cargo run -p ch04-gpt -- exercise 4.2 --json            # one exercise (list: `list`)
//! cargo run -p ch04-gpt -- generate --prompt "Hello, I am" --kv-cache
//! ```

pub mod bench;
pub mod dummy;
pub mod exercises;
pub mod shortcut;
pub mod walkthrough;

use shared::tokenizer::Gpt2Tokenizer;
use tch::{Device, Tensor};

/// Section 4.1's batch: "Every effort moves you" and "Every day holds a", as token ids.
pub fn example_batch(device: Device) -> Tensor {
    let tokenizer = Gpt2Tokenizer::new();
    let rows: Vec<i64> = ["Every effort moves you", "Every day holds a"]
        .iter()
        .flat_map(|text| tokenizer.encode(text).into_iter().map(i64::from))
        .collect();
    Tensor::from_slice(&rows).view([2, -1]).to_device(device)
}
