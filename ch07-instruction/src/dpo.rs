//! Direct Preference Optimization (Rafailov et al., 2023, equation 7), as the companion's
//! `dpo-from-scratch.ipynb` computes it: the mean log-probability of each response's tokens
//! under the policy being trained and under a frozen reference model (the policy's starting
//! point), and the loss `-log sigmoid(beta * ((policy_chosen - policy_rejected) -
//! (reference_chosen - reference_rejected)))`. The rewards are `policy - reference` of each
//! response; a pair is won when the chosen response's reward exceeds the rejected one's.

use std::time::Instant;

use anyhow::{ensure, Result};
use serde::Serialize;
use shared::model::GptModel;
use shared::train::{progress_bar, AdamW};
use tch::{Device, Kind, Tensor};

use crate::preference::{PreferenceBatch, PreferenceLoader};

/// The notebook's `compute_logprobs`: for logits `(B, T, V)` of the rows `labels` `(B, T)`,
/// the log-probability of each next token, averaged over the positions `mask` keeps (all
/// without one): `(B,)`.
pub fn sequence_logprobs(logits: &Tensor, labels: &Tensor, mask: Option<&Tensor>) -> Tensor {
    let steps = labels.size()[1] - 1;
    let targets = labels.narrow(1, 1, steps);
    let log_probs = logits.narrow(1, 0, steps).log_softmax(-1, Kind::Float);
    let selected = log_probs.gather(-1, &targets.unsqueeze(-1), false).squeeze_dim(-1);
    match mask {
        Some(mask) => {
            let mask = mask.narrow(1, 1, steps).to_kind(Kind::Float);
            (selected * &mask).sum_dim_intlist(-1, false, Kind::Float) / mask.sum_dim_intlist(-1, false, Kind::Float)
        }
        None => selected.mean_dim(-1, false, Kind::Float),
    }
}

/// The DPO loss of a batch and the rewards of its responses.
#[derive(Debug)]
pub struct DpoLoss {
    /// The mean loss over the pairs (with gradients to the policy's log-probabilities).
    pub loss: Tensor,
    /// `policy - reference` log-probability of each chosen response `(B,)`, without gradients.
    pub chosen_rewards: Tensor,
    pub rejected_rewards: Tensor,
}

/// The notebook's `compute_dpo_loss` from the four log-probabilities `(B,)`.
pub fn dpo_loss(
    policy_chosen: &Tensor,
    policy_rejected: &Tensor,
    reference_chosen: &Tensor,
    reference_rejected: &Tensor,
    beta: f64,
) -> DpoLoss {
    let logits = (policy_chosen - policy_rejected) - (reference_chosen - reference_rejected);
    DpoLoss {
        loss: -(logits * beta).log_sigmoid().mean(Kind::Float),
        chosen_rewards: (policy_chosen - reference_chosen).detach(),
        rejected_rewards: (policy_rejected - reference_rejected).detach(),
    }
}

/// The notebook's `compute_dpo_loss_batch`: the policy's log-probabilities (with
/// gradients when `train`) and the reference's (without), then [`dpo_loss`].
pub fn dpo_loss_batch(
    batch: &PreferenceBatch,
    policy: &GptModel,
    reference: &GptModel,
    beta: f64,
    device: Device,
    train: bool,
) -> DpoLoss {
    let (chosen, rejected) = (batch.chosen.to_device(device), batch.rejected.to_device(device));
    let (chosen_mask, rejected_mask) = (batch.chosen_mask.to_device(device), batch.rejected_mask.to_device(device));
    let logprobs = |model: &GptModel, rows: &Tensor, mask: &Tensor, train: bool| {
        sequence_logprobs(&model.forward_t(rows, train), rows, Some(mask))
    };
    let policy_chosen = logprobs(policy, &chosen, &chosen_mask, train);
    let policy_rejected = logprobs(policy, &rejected, &rejected_mask, train);
    let (reference_chosen, reference_rejected) = tch::no_grad(|| {
        (logprobs(reference, &chosen, &chosen_mask, false), logprobs(reference, &rejected, &rejected_mask, false))
    });
    dpo_loss(&policy_chosen, &policy_rejected, &reference_chosen, &reference_rejected, beta)
}

/// Means over evaluated batches (the notebook's `compute_dpo_loss_loader`, with the share
/// of pairs won).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DpoEvaluation {
    pub loss: f64,
    pub chosen_reward: f64,
    pub rejected_reward: f64,
    /// `chosen_reward - rejected_reward`.
    pub margin: f64,
    /// The share of pairs whose chosen response's reward exceeds the rejected one's.
    pub accuracy: f64,
}

/// [`dpo_loss_batch`] over the first `num_batches` batches of `loader` (all without), in
/// inference mode; the loss and rewards are means of the batch means, as the notebook
/// averages them.
pub fn dpo_loss_loader(
    loader: &PreferenceLoader,
    policy: &GptModel,
    reference: &GptModel,
    beta: f64,
    num_batches: Option<usize>,
    device: Device,
) -> Result<DpoEvaluation> {
    let batches = num_batches.map_or(loader.batch_count(), |n| n.min(loader.batch_count()));
    ensure!(batches > 0, "the preference data has no batch to evaluate");
    let (mut loss, mut chosen, mut rejected, mut won, mut pairs) = (0.0, 0.0, 0.0, 0i64, 0i64);
    tch::no_grad(|| {
        for batch in loader.batches().take(batches) {
            let result = dpo_loss_batch(&batch, policy, reference, beta, device, false);
            loss += result.loss.double_value(&[]);
            chosen += result.chosen_rewards.mean(Kind::Float).double_value(&[]);
            rejected += result.rejected_rewards.mean(Kind::Float).double_value(&[]);
            won += result.chosen_rewards.gt_tensor(&result.rejected_rewards).sum(Kind::Int64).int64_value(&[]);
            pairs += result.chosen_rewards.size()[0];
        }
    });
    let n = batches as f64;
    let (chosen_reward, rejected_reward) = (chosen / n, rejected / n);
    Ok(DpoEvaluation {
        loss: loss / n,
        chosen_reward,
        rejected_reward,
        margin: chosen_reward - rejected_reward,
        accuracy: won as f64 / pairs as f64,
    })
}

/// The training loop's settings (the notebook's `train_model_dpo` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DpoSettings {
    pub epochs: usize,
    pub beta: f64,
    /// Evaluate every this many steps, on `eval_iter` batches of each loader.
    pub eval_freq: usize,
    pub eval_iter: usize,
    pub verbose: bool,
}

/// One evaluation during training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DpoLog {
    /// 1-based, as printed.
    pub epoch: usize,
    pub step: i64,
    pub tokens_seen: i64,
    pub train: DpoEvaluation,
    pub val: DpoEvaluation,
}

/// What training recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DpoHistory {
    pub evaluations: Vec<DpoLog>,
    pub train_seconds: f64,
}

/// The notebook's `train_model_dpo`: for every batch, the DPO loss of the policy against
/// the frozen reference, a backward pass and an optimizer step; every `eval_freq` steps the
/// loss, rewards and share of pairs won on `eval_iter` batches of each loader, printed as
/// the notebook prints them.
pub fn train_model_dpo(
    policy: &GptModel,
    reference: &GptModel,
    optimizer: &mut AdamW,
    train: &PreferenceLoader,
    val: &PreferenceLoader,
    settings: &DpoSettings,
    device: Device,
) -> Result<DpoHistory> {
    ensure!(settings.beta > 0.0 && settings.beta.is_finite(), "--beta must be positive, got {}", settings.beta);
    ensure!(settings.eval_freq > 0, "the evaluation frequency must be at least 1 step");
    ensure!(train.batch_count() > 0, "the preference data has no complete training batch");
    let bar = progress_bar(settings.verbose, (settings.epochs * train.batch_count()) as u64);
    let start = Instant::now();
    let mut history = DpoHistory::default();
    let (mut step, mut tokens_seen) = (-1i64, 0i64);
    for epoch in 0..settings.epochs {
        for batch in train.batches() {
            optimizer.zero_grad();
            let result = dpo_loss_batch(&batch, policy, reference, settings.beta, device, true);
            let loss = result.loss.double_value(&[]);
            ensure!(loss.is_finite(), "DPO diverged at step {}: the loss is {loss}; lower the learning rate", step + 1);
            result.loss.backward();
            optimizer.step();
            step += 1;
            tokens_seen += batch.chosen.numel() as i64;
            bar.set_message(format!("epoch {}/{} step {step} loss {loss:.3}", epoch + 1, settings.epochs));
            bar.inc(1);
            if step % settings.eval_freq as i64 == 0 {
                let evaluate = |loader| {
                    dpo_loss_loader(loader, policy, reference, settings.beta, Some(settings.eval_iter), device)
                };
                let log = DpoLog { epoch: epoch + 1, step, tokens_seen, train: evaluate(train)?, val: evaluate(val)? };
                if settings.verbose {
                    bar.suspend(|| println!("{log}"));
                }
                history.evaluations.push(log);
            }
        }
    }
    bar.finish_and_clear();
    history.train_seconds = start.elapsed().as_secs_f64();
    Ok(history)
}

impl std::fmt::Display for DpoLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Ep {} (Step {:06}): Train loss {:.3}, Val loss {:.3}, Train reward margins {:.3}, Val reward margins {:.3}",
            self.epoch, self.step, self.train.loss, self.val.loss, self.train.margin, self.val.margin
        )
    }
}
