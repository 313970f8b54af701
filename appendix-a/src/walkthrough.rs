//! The appendix's main run: sections A.2-A.9 with `tch`, printing what the book prints.
//! The seeded parts run on the CPU, where the numbers are PyTorch's; section A.9.2 trains
//! the same model again on `--device` (a GPU when there is one).

use std::fmt;
use std::path::Path;

use anyhow::{ensure, Result};
use serde::Serialize;
use shared::core::device::{device_name, seed_everything};
use tch::{nn, Device, Kind, Tensor};

use crate::autograd::{self, LogisticGradients};
use crate::basics::{self, TensorBasics};
use crate::mlp::NeuralNetwork;
use crate::toy_data::{self, batch_values, ToyLoader};
use crate::training::{self, StepLog};
use shared::core::tensors::{format_rows, rows_f32};

/// One printed batch of the toy loader.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToyBatch {
    pub features: Vec<[f32; 2]>,
    pub labels: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Walkthrough {
    pub seed: u64,
    pub basics: TensorBasics,
    pub gradients: LogisticGradients,
    // A.5
    pub mlp_parameters: i64,
    pub mlp_layer0_shape: Vec<i64>,
    pub mlp_layer0_first_row: Vec<f32>,
    pub mlp_output: Vec<Vec<f32>>,
    pub mlp_softmax: Vec<Vec<f32>>,
    // A.6
    pub loader_batches: Vec<ToyBatch>,
    pub loader_batches_drop_last: Vec<ToyBatch>,
    // A.7
    pub epochs: usize,
    pub batches_per_epoch: usize,
    pub train_log: Vec<StepLog>,
    pub train_outputs: Vec<Vec<f32>>,
    pub train_probas: Vec<Vec<f32>>,
    pub train_predictions: Vec<i64>,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    // A.8
    pub saved_to: String,
    pub reloaded_outputs_equal: bool,
    // A.9
    pub device: String,
    pub cuda_devices: i64,
    pub device_training: DeviceTraining,
}

/// Section A.9.2: A.7's training again on the selected device.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceTraining {
    /// Where the trained weights are (the device asked for: no silent fallback).
    pub weights_on: String,
    pub train_log: Vec<StepLog>,
    /// The largest difference from A.7's losses (0 on the CPU; a GPU's kernels round
    /// differently).
    pub largest_loss_difference: f64,
    pub test_accuracy: f64,
}

fn batches(loader: &ToyLoader<'_>) -> Vec<ToyBatch> {
    loader
        .iter()
        .map(|(features, labels)| {
            let (features, labels) = batch_values(&features, &labels);
            ToyBatch { features, labels }
        })
        .collect()
}

/// Runs A.2-A.9; the trained model is saved to `out_dir/model.safetensors`.
pub fn run(seed: u64, device: Device, out_dir: &Path) -> Result<Walkthrough> {
    // A.5: a 50-input, 3-output perceptron, then a random input drawn after it.
    seed_everything(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let mlp = NeuralNetwork::new(&vs.root(), 50, 3);
    let x = Tensor::rand([1, 50], (Kind::Float, Device::Cpu));
    let logits = tch::no_grad(|| mlp.forward(&x));

    // A.6: the same training set through a loader without and with drop_last.
    let (train_ds, test_ds) = (toy_data::train_set(), toy_data::test_set());
    seed_everything(seed);
    let loader_batches = batches(&ToyLoader::new(&train_ds, 2, true, false));
    let train_loader = ToyLoader::new(&train_ds, 2, true, true);
    let loader_batches_drop_last = batches(&train_loader);
    let test_loader = ToyLoader::new(&test_ds, 2, false, false);

    // A.7: seed, build, train for 3 epochs with SGD (lr 0.5).
    let epochs = 3;
    seed_everything(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = NeuralNetwork::new(&vs.root(), 2, 2);
    let train_log = training::train(&vs, &model, &train_loader, epochs, 0.5, Device::Cpu)?;
    let outputs = tch::no_grad(|| model.forward(&train_ds.features));
    let train_accuracy = training::compute_accuracy(&model, &train_loader, Device::Cpu);
    let test_accuracy = training::compute_accuracy(&model, &test_loader, Device::Cpu);

    // A.8: save, load into a fresh model, compare.
    let path = out_dir.join("model.safetensors");
    training::save(&vs, &path)?;
    let (_reloaded_vs, reloaded) = training::load(&path, 2, 2)?;
    let reloaded_outputs = tch::no_grad(|| reloaded.forward(&train_ds.features));
    ensure!(reloaded_outputs.equal(&outputs), "the reloaded model computes different outputs");

    // A.9.2: the same seed, model and loader, the model on `device` (its weights drawn on the
    // CPU, as `NeuralNetwork(2, 2).to(device)` draws them: `shared::core::init`) and each
    // batch moved as it is used.
    seed_everything(seed);
    let device_vs = nn::VarStore::new(device);
    let device_model = NeuralNetwork::new(&device_vs.root(), 2, 2);
    let device_log = training::train(&device_vs, &device_model, &train_loader, epochs, 0.5, device)?;
    let largest_loss_difference =
        train_log.iter().zip(&device_log).map(|(cpu, other)| (cpu.loss - other.loss).abs()).fold(0.0, f64::max);
    let device_training = DeviceTraining {
        weights_on: device_name(device_model.layers[0].ws.device()),
        largest_loss_difference,
        test_accuracy: training::compute_accuracy(&device_model, &test_loader, device),
        train_log: device_log,
    };

    Ok(Walkthrough {
        seed,
        basics: basics::run(),
        gradients: autograd::run(),
        mlp_parameters: mlp.num_parameters(),
        mlp_layer0_shape: mlp.layers[0].ws.size(),
        mlp_layer0_first_row: Vec::<f32>::try_from(mlp.layers[0].ws.get(0).narrow(0, 0, 5))?,
        mlp_output: rows_f32(&logits),
        mlp_softmax: rows_f32(&logits.softmax(1, Kind::Float)),
        loader_batches,
        loader_batches_drop_last,
        epochs,
        batches_per_epoch: train_loader.len(),
        train_log,
        train_probas: rows_f32(&outputs.softmax(1, Kind::Float)),
        train_predictions: Vec::<i64>::try_from(outputs.argmax(1, false))?,
        train_outputs: rows_f32(&outputs),
        train_accuracy,
        test_accuracy,
        saved_to: path.display().to_string(),
        reloaded_outputs_equal: true,
        device: device_name(device),
        cuda_devices: if tch::Cuda::is_available() { tch::Cuda::device_count() } else { 0 },
        device_training,
    })
}

impl fmt::Display for Walkthrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "== A.2 Tensors ==\n{}", self.basics)?;
        writeln!(
            f,
            "\n== A.3-A.4 Automatic differentiation (logistic regression on one example) ==\n{}",
            self.gradients
        )?;

        writeln!(f, "\n== A.5 A multilayer perceptron: NeuralNetwork(50, 3), seed {} ==", self.seed)?;
        writeln!(f, "Total number of trainable model parameters: {}", self.mlp_parameters)?;
        writeln!(
            f,
            "layers.0.weight shape {:?}, first row begins {:?}",
            self.mlp_layer0_shape, self.mlp_layer0_first_row
        )?;
        writeln!(f, "Output for a random input:\n{}", format_rows(&self.mlp_output))?;
        writeln!(f, "Softmax:\n{}", format_rows(&self.mlp_softmax))?;

        writeln!(f, "\n== A.6 Data loaders (batch 2, shuffled) ==")?;
        for (i, batch) in self.loader_batches.iter().enumerate() {
            writeln!(f, "Batch {}: {:?} {:?}", i + 1, batch.features, batch.labels)?;
        }
        writeln!(f, "With drop_last:")?;
        for (i, batch) in self.loader_batches_drop_last.iter().enumerate() {
            writeln!(f, "Batch {}: {:?} {:?}", i + 1, batch.features, batch.labels)?;
        }

        writeln!(f, "\n== A.7 Training: NeuralNetwork(2, 2), SGD lr 0.5 ==")?;
        for step in &self.train_log {
            writeln!(
                f,
                "Epoch: {:03}/{:03} | Batch {:03}/{:03} | Train Loss: {:.2}",
                step.epoch + 1,
                self.epochs,
                step.batch,
                self.batches_per_epoch,
                step.loss
            )?;
        }
        writeln!(f, "Outputs on the training set:\n{}", format_rows(&self.train_outputs))?;
        writeln!(f, "Class probabilities:\n{}", format_rows(&self.train_probas))?;
        writeln!(f, "Predictions: {:?}", self.train_predictions)?;
        writeln!(f, "Training accuracy: {:.2}, test accuracy: {:.2}", self.train_accuracy, self.test_accuracy)?;

        writeln!(f, "\n== A.8 Saving and loading ==")?;
        writeln!(
            f,
            "Saved to {}; the reloaded model gives identical outputs: {}",
            self.saved_to, self.reloaded_outputs_equal
        )?;

        writeln!(f, "\n== A.9 GPUs ==")?;
        writeln!(f, "Selected device: {} ({} CUDA device(s) visible)", self.device, self.cuda_devices)?;
        let trained = &self.device_training;
        let last = trained.train_log.last().map_or(f64::NAN, |step| step.loss);
        write!(
            f,
            "A.9.2: the same training with the model and every batch on {}: final loss {last:.4}, the largest \
             difference from A.7's losses {:.1e}, test accuracy {:.2}",
            trained.weights_on, trained.largest_loss_difference, trained.test_accuracy
        )
    }
}
