//! Chapter 7, "Fine-tuning to follow instructions". The model, training loop, AdamW and
//! LoRA come from `shared`; this crate holds what only instruction fine-tuning needs.
//!
//! | module | book | holds |
//! |---|---|---|
//! | [`records`] | 7.2 | the instruction records: loading with checks, the 85/10/5 split |
//! | [`template`] | 7.2, ex. 7.1 | prompt templates (Alpaca, Phi-3) and response extraction |
//! | [`collate`] | 7.3-7.4, ex. 7.2 | tokenised examples, the padding/masking collate function, the loader |
//! | [`finetune`] | 7.5-7.7 | the chapter's run: losses, fine-tuning, plot, responses, checkpoint |
//! | [`respond`] | 7.7 | a fine-tuned model's response to an instruction |
//! | [`judge`] | 7.8 | scoring responses with a local LLM through Ollama's API |
//! | [`serve`] | beyond 7.7 | the model behind OpenAI's HTTP API, with a chat page, batching requests |
//! | [`preference`] | companion: DPO | preference records (chosen and rejected responses), their dataset and collate function |
//! | [`preference_data`] | companion: DPO | making preference data: polite and impolite rewrites by a local model through Ollama |
//! | [`dpo`] | companion: DPO | response log-probabilities, the DPO loss against a frozen reference model, the training loop |
//! | [`dpo_run`] | companion: DPO | the `dpo` command: data, policy and reference, training, responses before and after |
//!
//! ```text
//! cargo run --release -p ch07-instruction                                   # fine-tune GPT-2 medium (needs its weights)
//! cargo run --release -p ch07-instruction -- --init random --config FILE    # without weights
//! cargo run --release -p ch07-instruction -- respond --checkpoint runs/ch07-instruction/sft --instruction "..."
//! cargo run --release -p ch07-instruction -- evaluate --responses runs/ch07-instruction/instruction-data-with-response.json
//! cargo run --release -p ch07-instruction -- serve --checkpoint runs/ch07-instruction/sft   # http://127.0.0.1:8080/
//! ```

pub mod collate;
pub mod dpo;
pub mod dpo_run;
pub mod exercises;
pub mod finetune;
pub mod judge;
pub mod preference;
pub mod preference_data;
pub mod records;
pub mod respond;
pub mod serve;
pub mod template;
