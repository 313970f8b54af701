//! Compression (21.34, 21.35): post-training quantization and knowledge distillation.

pub mod ex21_34;
pub mod ex21_35;
