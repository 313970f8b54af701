//! Chapter 3, "Coding attention mechanisms": from dot-product attention on six word vectors
//! to causal multi-head attention, plus faster multi-head variants and their benchmark.
//!
//! ```text
//! cargo run -p ch03-attention                         # the chapter's walk-through
//! cargo run -p ch03-attention -- exercise 3.3 --json  # one exercise (list: `list`)
//! cargo run --release -p ch03-attention -- bench      # multi-head attention variants
//! ```

pub mod bench;
pub mod causal;
pub mod exercises;
pub mod multihead;
pub mod self_attention;
pub mod simplified;
pub mod variants;
pub mod walkthrough;

use tch::{Device, Tensor};

/// The book's six 3-dimensional embeddings of "Your journey starts with one step".
pub const INPUTS: [[f32; 3]; 6] = [
    [0.43, 0.15, 0.89], // Your
    [0.55, 0.87, 0.66], // journey
    [0.57, 0.85, 0.64], // starts
    [0.22, 0.58, 0.33], // with
    [0.77, 0.25, 0.10], // one
    [0.05, 0.80, 0.55], // step
];

/// [`INPUTS`] as a `6 x 3` tensor.
pub fn inputs(device: Device) -> Tensor {
    Tensor::from_slice(INPUTS.as_flattened()).view([6, 3]).to_device(device)
}
