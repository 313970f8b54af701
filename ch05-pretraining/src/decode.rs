//! Text in, text out: decoding a prompt (`shared`'s [`generate_text`], re-exported for the
//! `generate` and `sweep` commands), and the loss of a model on a text (section 5.1 and 5.3,
//! for `eval`).

use anyhow::{ensure, Result};
use serde::Serialize;
pub use shared::generate::{generate_text, generate_text_cached, Generated};
use shared::model::GptModel;
use shared::train::{calc_loss_loader, check_token_ids, perplexity};

use crate::pretrain::loaders;

/// Losses and perplexities on the training and validation parts of a text.
#[derive(Debug, Clone, Serialize)]
pub struct TextLosses {
    pub train_loss: f64,
    pub val_loss: f64,
    pub train_perplexity: f64,
    pub val_perplexity: f64,
    pub context_length: usize,
    pub train_batches: usize,
    pub val_batches: usize,
}

/// The mean loss over every batch of the book's loaders for `text` (windows of
/// `context_length` tokens, batch 2), as section 5.1.3 and exercise 5.5 compute it. The
/// generator is seeded with `seed` first: the shuffled training loader draws from it.
pub fn text_losses(
    model: &GptModel,
    text: &str,
    train_ratio: f64,
    context_length: usize,
    seed: u64,
) -> Result<TextLosses> {
    ensure!(
        context_length as i64 <= model.cfg.context_length,
        "a context of {context_length} tokens is more than the model's {}",
        model.cfg.context_length
    );
    let (train, val) = loaders(text, train_ratio, context_length, 2)?;
    check_token_ids(model, &[("training", &train), ("validation", &val)])?;
    let device = model.tok_emb.ws.device();
    shared::core::device::seed_everything(seed);
    let train_loss = calc_loss_loader(model, &train, None, device);
    let val_loss = calc_loss_loader(model, &val, None, device);
    Ok(TextLosses {
        train_loss,
        val_loss,
        train_perplexity: perplexity(train_loss),
        val_perplexity: perplexity(val_loss),
        context_length,
        train_batches: train.len(),
        val_batches: val.len(),
    })
}

/// The loss and perplexity over a whole text (windows of `context_length` tokens, stride
/// `context_length`, batch 2, in order).
#[derive(Debug, Clone, Serialize)]
pub struct FileLoss {
    pub loss: f64,
    pub perplexity: f64,
    pub batches: usize,
    pub context_length: usize,
}

pub fn file_loss(model: &GptModel, text: &str, context_length: usize) -> Result<FileLoss> {
    ensure!(
        context_length as i64 <= model.cfg.context_length,
        "a context of {context_length} tokens is more than the model's {}",
        model.cfg.context_length
    );
    let dataset = shared::data::dataset::GptDataset::from_text(text, context_length, context_length)?;
    ensure!(!dataset.is_empty(), "the text is too short for a context of {context_length} tokens");
    let loader = shared::data::dataset::DataLoader::new(dataset, 2, false, false)?;
    check_token_ids(model, &[("file's", &loader)])?;
    let loss = calc_loss_loader(model, &loader, None, model.tok_emb.ws.device());
    Ok(FileLoss { loss, perplexity: perplexity(loss), batches: loader.len(), context_length })
}

impl std::fmt::Display for FileLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Loss: {:.4} (perplexity {:.1}, {} batches of 2 x {} tokens)",
            self.loss, self.perplexity, self.batches, self.context_length
        )
    }
}

impl std::fmt::Display for TextLosses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "Training loss:   {:.4} (perplexity {:.1}, {} batches)",
            self.train_loss, self.train_perplexity, self.train_batches
        )?;
        write!(
            f,
            "Validation loss: {:.4} (perplexity {:.1}, {} batches)",
            self.val_loss, self.val_perplexity, self.val_batches
        )
    }
}
