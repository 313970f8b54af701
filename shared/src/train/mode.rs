//! `--mode book|fast`: how a training step computes. Book mode is the book's code operation
//! for operation, so a seeded run repeats PyTorch's numbers bit for bit. Fast mode trains the
//! same model on the same loss with less work per step: LibTorch's fused layer norm, GELU
//! and `scaled_dot_product_attention` (with dropout), PyTorch's fused AdamW kernel (one pass
//! over each parameter, its gradient and its moments instead of about ten), and gradients
//! dropped between steps rather than zeroed (the next backward pass writes them instead of
//! adding to zeros). Its random stream differs from the book's (fused attention draws its
//! dropout masks differently), so its losses match book mode's closely, not exactly. On CUDA
//! it also computes the forward pass under bfloat16 autocast (float32 master weights).
//!
//! Fast mode also keeps freed memory inside the process ([`keep_freed_memory`]): each step
//! allocates and frees the same large tensors (the logits, the embedding's gradient), and
//! glibc's default hands blocks over 128 KB back to the kernel on free, which then zeroes
//! every page again on the next step's first touch (7-8 % of a GPT-2 small step here).

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Device;

use super::AdamW;
use crate::model::GptModel;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainMode {
    /// The book's code: bit-exact with PyTorch.
    #[default]
    Book,
    /// Fused kernels and optimizer; bfloat16 autocast on CUDA.
    Fast,
}

/// Makes glibc's malloc serve every block from its heap and never return freed memory to
/// the kernel (`mallopt(M_MMAP_MAX, 0)`, `mallopt(M_TRIM_THRESHOLD, ...)`), for the rest
/// of the process: the peak memory stays reserved, and reused blocks need no page faults.
/// Does nothing on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

impl TrainMode {
    /// Switches the model and the optimizer to this mode's kernels (book mode changes nothing).
    pub fn prepare(self, model: &mut GptModel, optimizer: &mut AdamW) -> Result<()> {
        if self == Self::Fast {
            keep_freed_memory();
            model.use_fused_kernels();
            optimizer.fused = true;
            if model.tok_emb.ws.device().is_cuda() {
                crate::core::native::set_cuda_autocast_bfloat16()?;
            }
        }
        Ok(())
    }

    /// Runs a forward pass (the loss) the way this mode computes it on `device`: under
    /// bfloat16 autocast in fast mode on CUDA, as it is otherwise.
    pub fn forward<T>(self, device: Device, forward: impl FnOnce() -> T) -> T {
        if self == Self::Fast && device.is_cuda() {
            tch::autocast(true, forward)
        } else {
            forward()
        }
    }
}
