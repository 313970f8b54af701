//! The second layer of `shared`: the neural-network building blocks of chapter 4, which
//! know nothing of attention or of the GPT model (they import only [`crate::core`]).
//!
//! | module | book | holds |
//! |---|---|---|
//! | [`linear`] | 3-4, 21, E | the one `Linear` layer every model uses: dense, with a LoRA adapter (through the [`Adapter`] trait), or 2-8-bit quantized |
//! | [`layer_norm`] | 4.2 | `LayerNorm` (listing 4.2) |
//! | [`activations`] | 4.3 | GELU (listing 4.3), tanh-approximated or exact |
//! | [`feed_forward`] | 4.3 | `FeedForward` (listing 4.4) |

pub mod activations;
pub mod feed_forward;
pub mod layer_norm;
pub mod linear;

pub use activations::{gelu, Activation};
pub use feed_forward::FeedForward;
pub use layer_norm::LayerNorm;
pub use linear::{Adapter, Granularity, Linear, LinearWeight, QuantScheme, Quantization, QuantizedWeight};
