//! Appendix E, "Parameter-efficient fine-tuning with LoRA". The LoRA layers live in
//! `shared::model::lora` and the spam fine-tuning run in `shared::app::finetune`; this crate
//! holds the appendix's parameter counts and its comparison with chapter 6.
//!
//! ```text
//! cargo run --release -p appendix-e-lora                   # LoRA fine-tuning of GPT-2 124M (needs its weights)
//! cargo run --release -p appendix-e-lora -- --init random  # without weights
//! cargo run -p appendix-e-lora -- counts --json            # 124,441,346 / 0 / 2,666,528
//! ```

pub mod counts;
pub mod exercises;
