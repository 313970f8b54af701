//! The bottom layer of `shared`: what every other layer builds on and which imports none
//! of them.
//!
//! | module | book | holds |
//! |---|---|---|
//! | [`device`] | appendix A | `--device auto\|cpu\|cuda\|cuda:N`, seeding |
//! | [`init`] | 3.4, 4.6 | PyTorch-identical default initializers (`nn.Linear`, `nn.Embedding`, `torch.rand`) |
//! | [`torch_rng`] | 2.6 | PyTorch's CPU generator (mt19937) and `randperm`, for loader parity |
//! | [`native`] | 5, 21 | LibTorch operators `tch` does not generate (the fused AdamW kernel, fbgemm's int8 linear layer), compiled from `cpp/` |
//! | [`tensors`] | all | tensors as nested vectors for printing, JSON and tests |
//! | [`var_store`] | 6, E | dropping variables from a store (a replaced head, merged LoRA adapters) |
//! | [`timing`] | A.9 | median wall time with device synchronisation |

pub mod device;
pub mod init;
pub mod native;
pub mod tensors;
pub mod timing;
pub mod torch_rng;
pub mod var_store;

/// The message of a panic caught with `catch_unwind` (`panic!`'s text, or a LibTorch error
/// that `tch` turned into a panic), if its payload is text.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    payload.downcast_ref::<String>().cloned().or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
}
