//! Appendix A, "Introduction to PyTorch", with `tch`: tensors, automatic differentiation, a
//! multilayer perceptron, a seeded data loader, a training loop, saving and loading, and
//! timing a matrix multiplication on the CPU and the GPU.
//!
//! ```text
//! cargo run -p appendix-a                         # the appendix's walk-through
//! cargo run -p appendix-a -- exercise A.1 --json  # one exercise (list: `list`)
//! ```

pub mod autograd;
pub mod basics;
pub mod ddp;
pub mod exercises;
pub mod mlp;
pub mod timing;
pub mod toy_data;
pub mod training;
pub mod walkthrough;
