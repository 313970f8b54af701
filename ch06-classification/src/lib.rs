//! Chapter 6, "Fine-tuning for classification". The reusable parts (the spam data set, the
//! classification head, freezing, loss and accuracy, `train_classifier_simple`) live in
//! `shared`; this crate holds the chapter's run, its commands and its exercises.
//!
//! ```text
//! cargo run --release -p ch06-classification                     # fine-tune GPT-2 124M (needs its weights)
//! cargo run --release -p ch06-classification -- --init random    # without weights
//! cargo run -p ch06-classification -- classify --checkpoint runs/ch06-classification/classifier "You won a prize!"
//! ```

pub mod exercises;
