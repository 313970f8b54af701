//! Sections A.7-A.8: the training loop (listing A.9), accuracy (listing A.10), and saving and
//! loading a model's parameters.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind};

use crate::mlp::NeuralNetwork;
use crate::toy_data::ToyLoader;

/// One logged training step.
#[derive(Debug, Clone, Serialize)]
pub struct StepLog {
    pub epoch: usize,
    pub batch: usize,
    pub loss: f64,
}

/// Listing A.9: plain SGD on cross-entropy, one step per batch. `model`'s parameters must
/// live in `vs`, on `device`, where each batch is moved (section A.9.2's
/// `features.to(device)`).
pub fn train(
    vs: &nn::VarStore,
    model: &NeuralNetwork,
    loader: &ToyLoader<'_>,
    epochs: usize,
    learning_rate: f64,
    device: Device,
) -> Result<Vec<StepLog>> {
    let mut optimizer = nn::Sgd::default().build(vs, learning_rate)?;
    let mut log = Vec::new();
    for epoch in 0..epochs {
        for (batch, (features, labels)) in loader.iter().enumerate() {
            let (features, labels) = (features.to_device(device), labels.to_device(device));
            let logits = model.forward(&features);
            let loss = logits.cross_entropy_for_logits(&labels);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            log.push(StepLog { epoch, batch, loss: loss.double_value(&[]) });
        }
    }
    Ok(log)
}

/// Listing A.10: the share of correctly classified examples over one pass of `loader`, the
/// batches moved to `device` (the model's).
pub fn compute_accuracy(model: &NeuralNetwork, loader: &ToyLoader<'_>, device: Device) -> f64 {
    tch::no_grad(|| {
        let (mut correct, mut total) = (0i64, 0i64);
        for (features, labels) in loader.iter() {
            let (features, labels) = (features.to_device(device), labels.to_device(device));
            let predictions = model.forward(&features).argmax(1, false);
            correct += predictions.eq_tensor(&labels).sum(Kind::Int64).int64_value(&[]);
            total += labels.size()[0];
        }
        correct as f64 / total as f64
    })
}

/// Section A.8: writes every parameter to `path` (safetensors, named like the book's
/// `state_dict`).
pub fn save(vs: &nn::VarStore, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    vs.save(path).with_context(|| format!("saving the model to {}", path.display()))
}

/// Builds a fresh `NeuralNetwork(num_inputs, num_outputs)` and loads `path` into it.
pub fn load(path: &Path, num_inputs: i64, num_outputs: i64) -> Result<(nn::VarStore, NeuralNetwork)> {
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let model = NeuralNetwork::new(&vs.root(), num_inputs, num_outputs);
    vs.load(path).with_context(|| format!("loading the model from {}", path.display()))?;
    Ok((vs, model))
}
