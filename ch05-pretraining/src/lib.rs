//! Chapter 5, "Pretraining on unlabeled data". The reusable parts (losses, AdamW, the
//! training loop, checkpoints, sampling, GPT-2 weights) live in `shared`; this crate holds
//! the chapter's pretraining run, its commands and its exercises.
//!
//! ```text
//! cargo run --release -p ch05-pretraining                 # the chapter's pretraining run
//! cargo run --release -p ch05-pretraining -- generate --checkpoint runs/ch05-pretraining/checkpoint --temperature 1.4 --top-k 25
//! cargo run -p ch05-pretraining -- check-run              # the run against the book's PyTorch run
//! cargo run --release -p ch05-pretraining -- appendix-d   # appendix D: warmup, cosine decay, clipping
//! cargo run -p ch05-pretraining -- exercise 5.1 --json    # one exercise (list: `list`)
//! ```

pub mod appendix_d;
pub mod bench;
pub mod check_run;
pub mod decode;
pub mod exercises;
pub mod pretrain;
