//! Chapter 6: fine-tuning GPT for classification. The data set of padded token ids and
//! its loader (section 6.3), the model with a 2-class output head and most of its weights
//! frozen (6.5), the loss and accuracy of the token that carries the decision (6.6), and
//! `train_classifier_simple` (6.7); [`data`] and [`finetune`] put them together into the
//! chapter's spam run, which appendix E repeats with LoRA.

pub mod data;
pub mod finetune;

use std::time::Instant;

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::core::init;
use crate::data::dataset::{batch_count, Batch, EpochOrder};
use crate::data::spam::{Label, Message};
use crate::model::GptModel;
use crate::tokenizer::{Gpt2Tokenizer, END_OF_TEXT_ID};
use crate::train::{AdamW, BatchSource};

/// Section 6.3's `SpamDataset`: each text as GPT-2 token ids, cut to `max_length` and padded
/// with `<|endoftext|>` (50256) up to it.
#[derive(Debug, Clone)]
pub struct ClassificationDataset {
    pub inputs: Vec<Vec<i64>>,
    pub labels: Vec<Label>,
    pub max_length: usize,
}

impl ClassificationDataset {
    /// `max_length`: `None` pads to the longest text (the book's default for the training
    /// set); the validation and test sets take the training set's length.
    pub fn new(messages: &[Message], max_length: Option<usize>) -> Result<Self> {
        Self::within(messages, max_length, usize::MAX)
    }

    /// [`ClassificationDataset::new`] for a model of `context_length` tokens: a padded
    /// length beyond it is an error before anything is padded.
    pub fn within(messages: &[Message], max_length: Option<usize>, context_length: usize) -> Result<Self> {
        ensure!(!messages.is_empty(), "the data set has no messages");
        if let Some(n) = max_length {
            check_padded_length(n, context_length)?;
        }
        let tokenizer = Gpt2Tokenizer::new();
        let encoded: Vec<Vec<i64>> =
            messages.iter().map(|m| tokenizer.encode(&m.text).into_iter().map(i64::from).collect()).collect();
        let max_length = max_length.unwrap_or_else(|| encoded.iter().map(Vec::len).max().unwrap_or(0));
        check_padded_length(max_length, context_length)?;
        let inputs = encoded
            .into_iter()
            .map(|mut ids| {
                ids.truncate(max_length);
                ids.resize(max_length, END_OF_TEXT_ID as i64);
                ids
            })
            .collect();
        Ok(Self { inputs, labels: messages.iter().map(|m| m.label).collect(), max_length })
    }

    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }
}

/// Batches of a [`ClassificationDataset`]: `inputs` `(B, max_length)`, `targets` the labels
/// `(B)`, shuffled like PyTorch's `DataLoader` (see [`EpochOrder`]).
#[derive(Debug, Clone)]
pub struct ClassificationLoader {
    pub dataset: ClassificationDataset,
    pub batch_size: usize,
    pub shuffle: bool,
    pub drop_last: bool,
}

impl ClassificationLoader {
    pub fn new(dataset: ClassificationDataset, batch_size: usize, shuffle: bool, drop_last: bool) -> Result<Self> {
        ensure!(batch_size > 0, "batch_size must be at least 1");
        Ok(Self { dataset, batch_size, shuffle, drop_last })
    }

    fn collate(&self, indices: &[usize]) -> Batch {
        let rows = indices.len() as i64;
        let inputs: Vec<i64> = indices.iter().flat_map(|&i| self.dataset.inputs[i].iter().copied()).collect();
        let labels: Vec<i64> = indices.iter().map(|&i| self.dataset.labels[i]).collect();
        Batch { inputs: Tensor::from_slice(&inputs).view([rows, -1]), targets: Tensor::from_slice(&labels) }
    }
}

impl BatchSource for ClassificationLoader {
    fn batch_count(&self) -> usize {
        batch_count(self.dataset.len(), self.batch_size, self.drop_last)
    }

    fn max_token_id(&self) -> Option<i64> {
        self.dataset.inputs.iter().flatten().copied().max()
    }

    fn batches(&self) -> Box<dyn Iterator<Item = Batch> + '_> {
        let mut order = EpochOrder::start(self.dataset.len(), self.shuffle);
        Box::new((0..self.batch_count()).map(move |i| {
            let indices = order.batch(i, self.batch_size).to_vec();
            self.collate(&indices)
        }))
    }
}

/// Which position's output decides the class: the last token, which attends to the whole
/// text (the book), or the first (exercise 6.3), which sees only itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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

/// Section 6.6's `calc_loss_batch`: cross-entropy of the logits at `position`.
pub fn calc_loss_batch(
    model: &GptModel,
    batch: &Batch,
    position: TokenPosition,
    device: Device,
    train: bool,
) -> Tensor {
    let logits = class_logits(model, &batch.inputs.to_device(device), position, train);
    logits.cross_entropy_for_logits(&batch.targets.to_device(device))
}

/// Section 6.6's `calc_loss_loader` (mean over the first `num_batches`, NaN when empty).
pub fn calc_loss_loader(
    model: &GptModel,
    loader: &ClassificationLoader,
    num_batches: Option<usize>,
    position: TokenPosition,
    device: Device,
) -> f64 {
    let _no_grad = tch::no_grad_guard();
    crate::train::mean_over_batches(loader, num_batches, |batch| {
        calc_loss_batch(model, batch, position, device, false).double_value(&[])
    })
}

/// Section 6.6's `calc_accuracy_loader`: the share of correct predictions over the first
/// `num_batches` batches (all when `None`).
pub fn calc_accuracy_loader(
    model: &GptModel,
    loader: &ClassificationLoader,
    num_batches: Option<usize>,
    position: TokenPosition,
    device: Device,
) -> f64 {
    let num_batches = num_batches.map_or(loader.batch_count(), |n| n.min(loader.batch_count()));
    let _no_grad = tch::no_grad_guard();
    let (mut correct, mut seen) = (0i64, 0i64);
    for batch in loader.batches().take(num_batches) {
        let predicted = class_logits(model, &batch.inputs.to_device(device), position, false).argmax(-1, false);
        correct += predicted.eq_tensor(&batch.targets.to_device(device)).sum(Kind::Int64).int64_value(&[]);
        seen += batch.targets.size()[0];
    }
    if seen == 0 {
        f64::NAN
    } else {
        correct as f64 / seen as f64
    }
}

/// The settings of `train_classifier_simple` (the book: 5 epochs, evaluation every 50 steps
/// on 5 batches).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassifierSettings {
    pub num_epochs: usize,
    pub eval_freq: usize,
    pub eval_iter: usize,
    pub position: TokenPosition,
    pub verbose: bool,
    /// How each step computes (the model and optimizer are prepared by `TrainMode::prepare`).
    pub mode: crate::train::TrainMode,
}

/// One logged evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierEvaluation {
    pub epoch: usize,
    pub step: i64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub examples_seen: i64,
}

/// What training recorded: losses every `eval_freq` steps, accuracies after every epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassifierHistory {
    pub evaluations: Vec<ClassifierEvaluation>,
    pub train_accuracies: Vec<f64>,
    pub val_accuracies: Vec<f64>,
    pub examples_seen: i64,
    pub train_seconds: f64,
}

/// Section 6.7, listing 6.10: `train_classifier_simple`.
pub fn train_classifier_simple(
    model: &GptModel,
    optimizer: &mut AdamW,
    train_loader: &ClassificationLoader,
    val_loader: &ClassificationLoader,
    settings: &ClassifierSettings,
    device: Device,
) -> Result<ClassifierHistory> {
    ensure!(settings.eval_freq > 0, "the evaluation frequency must be at least 1 step");
    ensure!(train_loader.batch_count() > 0, "the training data has no complete batch");
    crate::train::check_token_ids(model, &[("training", train_loader), ("validation", val_loader)])?;
    let bar = crate::train::progress_bar(settings.verbose, (settings.num_epochs * train_loader.batch_count()) as u64);
    let say = |line: String| {
        if settings.verbose {
            bar.suspend(|| println!("{line}"));
        }
    };
    let start = Instant::now();
    let mut history = ClassifierHistory::default();
    let mut global_step = -1i64;
    let position = settings.position;
    for epoch in 0..settings.num_epochs {
        for batch in train_loader.batches() {
            optimizer.zero_grad();
            let loss = settings.mode.forward(device, || calc_loss_batch(model, &batch, position, device, true));
            loss.backward();
            optimizer.step();
            history.examples_seen += batch.inputs.size()[0];
            global_step += 1;
            bar.set_message(format!(
                "epoch {}/{} step {global_step} loss {:.3} {:.1} examples/s",
                epoch + 1,
                settings.num_epochs,
                loss.double_value(&[]),
                history.examples_seen as f64 / start.elapsed().as_secs_f64()
            ));
            bar.inc(1);
            if global_step % settings.eval_freq as i64 == 0 {
                let evaluation = ClassifierEvaluation {
                    epoch: epoch + 1,
                    step: global_step,
                    train_loss: calc_loss_loader(model, train_loader, Some(settings.eval_iter), position, device),
                    val_loss: calc_loss_loader(model, val_loader, Some(settings.eval_iter), position, device),
                    examples_seen: history.examples_seen,
                };
                say(format!(
                    "Ep {} (Step {:06}): Train loss {:.3}, Val loss {:.3}",
                    evaluation.epoch, evaluation.step, evaluation.train_loss, evaluation.val_loss
                ));
                history.evaluations.push(evaluation);
            }
        }
        let train_accuracy = calc_accuracy_loader(model, train_loader, Some(settings.eval_iter), position, device);
        let val_accuracy = calc_accuracy_loader(model, val_loader, Some(settings.eval_iter), position, device);
        say(format!(
            "Training accuracy: {:.2}% | Validation accuracy: {:.2}%",
            train_accuracy * 100.0,
            val_accuracy * 100.0
        ));
        history.train_accuracies.push(train_accuracy);
        history.val_accuracies.push(val_accuracy);
    }
    bar.finish_and_clear();
    history.train_seconds = start.elapsed().as_secs_f64();
    Ok(history)
}

/// Section 6.8's `classify_review`: the class of one text and its probability.
pub fn classify(
    model: &GptModel,
    text: &str,
    max_length: usize,
    position: TokenPosition,
    device: Device,
) -> Result<(Label, f64)> {
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
/// A padded length must be at least 1 and fit the model's context.
fn check_padded_length(max_length: usize, context_length: usize) -> Result<()> {
    ensure!(max_length > 0, "max_length must be at least 1");
    ensure!(
        max_length <= context_length,
        "a padded length of {max_length} tokens is more than the model's context length of {context_length}: \
         pass a smaller --max-length"
    );
    Ok(())
}
