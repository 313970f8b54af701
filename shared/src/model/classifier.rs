//! Chapter 6's model (sections 6.5 and 6.8): GPT with a class head in place of the
//! vocabulary head, most of its weights frozen, and the class of one text.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use super::GptModel;
use crate::core::init;
use crate::tokenizer::{Gpt2Tokenizer, END_OF_TEXT_ID};

/// Which position's output decides the class: the last token, which attends to the whole
/// text (the book), or the first (exercise 6.3), which sees only itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenPosition {
    Last,
    First,
}

impl TokenPosition {
    fn index(self) -> i64 {
        match self {
            Self::Last => -1,
            Self::First => 0,
        }
    }
}

/// Section 6.5: replaces the model's output head with a freshly initialised
/// `Linear(emb_dim, num_classes)` with bias, named `out_head` like the book's. The model
/// must have been built at the root of `vs`. Draws from the global generator (the book
/// seeds it with 123 first).
pub fn replace_head(vs: &nn::VarStore, model: &mut GptModel, num_classes: i64) {
    crate::core::var_store::remove_variables(vs, |name| name == "out_head.weight" || name == "out_head.bias");
    model.out_head = init::linear(vs.root() / "out_head", model.cfg.emb_dim, num_classes, true).into();
}

/// Which parameters fine-tuning trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trainable {
    /// The book's choice: the last transformer block, the final norm and the head.
    LastBlock,
    /// Every parameter (exercise 6.2).
    All,
}

/// Section 6.5: freezes the parameters that `trainable` leaves out; returns the names of
/// those that stay trainable, sorted.
pub fn freeze(vs: &nn::VarStore, model: &GptModel, trainable: Trainable) -> Vec<String> {
    let last_block = format!("trf_blocks.{}.", model.cfg.n_layers - 1);
    let mut names = Vec::new();
    for (name, tensor) in vs.variables() {
        let train = match trainable {
            Trainable::All => true,
            Trainable::LastBlock => {
                name.starts_with(&last_block) || name.starts_with("final_norm.") || name.starts_with("out_head.")
            }
        };
        let _ = tensor.set_requires_grad(train);
        if train {
            names.push(name);
        }
    }
    names.sort();
    names
}

/// The logits `(B, num_classes)` at `position`.
pub fn class_logits(model: &GptModel, inputs: &Tensor, position: TokenPosition, train: bool) -> Tensor {
    model.forward_t(inputs, train).select(1, position.index())
}

/// Section 6.8's `classify_review`: the class of one text (its index, e.g. a spam label)
/// and its probability.
pub fn classify(
    model: &GptModel,
    text: &str,
    max_length: usize,
    position: TokenPosition,
    device: Device,
) -> Result<(i64, f64)> {
    let mut ids: Vec<i64> = Gpt2Tokenizer::new().encode(text).into_iter().map(i64::from).collect();
    ensure!(!ids.is_empty(), "the text is empty");
    let max_length = max_length.min(model.cfg.context_length as usize);
    ids.truncate(max_length);
    ids.resize(max_length, END_OF_TEXT_ID as i64);
    let inputs = Tensor::from_slice(&ids).view([1, -1]);
    model.check_tokens(&inputs)?;
    let inputs = inputs.to_device(device);
    let probabilities = tch::no_grad(|| class_logits(model, &inputs, position, false).softmax(-1, Kind::Float));
    let label = probabilities.argmax(-1, false).int64_value(&[0]);
    Ok((label, probabilities.double_value(&[0, label])))
}
