//! Chapter 6's training (sections 6.6-6.7): the loss and accuracy of the token that
//! carries the decision, and `train_classifier_simple`.

use std::time::Instant;

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::AdamW;
use crate::data::classification::{ClassificationLoader, Loaders};
use crate::data::dataset::{Batch, BatchSource};
use crate::model::classifier::{class_logits, TokenPosition};
use crate::model::GptModel;

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
    super::mean_over_batches(loader, num_batches, |batch| {
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
    pub mode: super::TrainMode,
    /// Appendix D's learning-rate schedule and gradient clipping (none in the chapter).
    pub schedule: super::StepSchedule,
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
    settings.schedule.validate()?;
    super::check_token_ids(model, &[("training", train_loader), ("validation", val_loader)])?;
    let bar = super::progress_bar(settings.verbose, (settings.num_epochs * train_loader.batch_count()) as u64);
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
            global_step += 1;
            settings.schedule.set_lr(optimizer, global_step);
            let loss = settings.mode.forward(device, || calc_loss_batch(model, &batch, position, device, true));
            loss.backward();
            settings.schedule.clip(optimizer, global_step);
            optimizer.step();
            history.examples_seen += batch.inputs.size()[0];
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

impl Loaders {
    /// Every token id of the three splits is inside `model`'s vocabulary.
    pub fn check_token_ids(&self, model: &GptModel) -> Result<()> {
        super::check_token_ids(
            model,
            &[("training", &self.train), ("validation", &self.validation), ("test", &self.test)],
        )
    }
}
