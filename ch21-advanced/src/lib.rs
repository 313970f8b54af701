//! Chapter 21, "advanced" exercises: a character-level mini-GPT (the GPT model of `shared` at
//! small sizes) trained on tiny Shakespeare, and the chapter's exercises on it.
//!
//! ```text
//! cargo run --release -p ch21-advanced                 # train the mini-GPT (nanoGPT's CPU run)
//! cargo run -p ch21-advanced -- exercise 21.8          # one exercise (list: `list`)
//! cargo run --release -p ch21-advanced -- compare rope # an architecture study (rope, window, gqa, sinks, prefix, mtp)
//! cargo run --release -p ch21-advanced -- pretrain     # the pretrained model the analysis exercises (21.17-21.24) study
//! ```

pub mod analysis;
pub mod batches;
pub mod compare;
pub mod exercises;
pub mod minigpt;
pub mod models;
pub mod pretrained;
pub mod quality;
