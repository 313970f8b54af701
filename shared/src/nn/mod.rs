//! The second layer of `shared`: the neural-network building blocks of chapter 4, which
//! know nothing of attention or of the GPT model (they import only [`crate::core`]).
//!
//! | module | book | holds |
//! |---|---|---|
//! | [`linear`] | 3-4, 21, E | the one `Linear` layer every model uses: dense, with a LoRA adapter (through the [`Adapter`] trait), or 2-8-bit quantized |
//! | [`layer_norm`] | 4.2 | `LayerNorm` (listing 4.2) |
//! | [`norm`] | 4.2, 21 | `RmsNorm` (Llama, Qwen3; Gemma's `1 + weight` form) and `Norm`, a model's norm of either kind |
//! | [`activations`] | 4.3 | GELU (listing 4.3), tanh-approximated or exact; SiLU |
//! | [`feed_forward`] | 4.3, 21 | `FeedForward` (listing 4.4), and the gated form of Llama, Qwen3 and Gemma (SwiGLU, GeGLU) |

pub mod activations;
pub mod feed_forward;
pub mod layer_norm;
pub mod linear;
pub mod norm;

pub use activations::{gelu, Activation};
pub use feed_forward::{FeedForward, FeedForwardKind};
pub use layer_norm::LayerNorm;
pub use linear::{Adapter, Granularity, Linear, LinearWeight, QuantScheme, Quantization, QuantizedWeight};
pub use norm::{Norm, NormKind, RmsNorm};
