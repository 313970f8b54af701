//! The walk-through reproduces the book's PyTorch run (tests/fixtures/pytorch-reference.json,
//! written by scripts/reference/generate.sh): gradients, initial weights, the shuffled
//! loader's batches, every training loss, the trained model's outputs.

use appendix_a::walkthrough::{self, Walkthrough};
use serde_json::Value;
use shared::core::device::global_rng_lock;
use shared::reference::assert_close;
use tch::Device;

fn reference() -> Value {
    serde_json::from_str(include_str!("fixtures/pytorch-reference.json")).unwrap()
}

fn walkthrough() -> Walkthrough {
    let _rng = global_rng_lock();
    let out = std::env::temp_dir().join(format!("appendix-a-parity-{}", std::process::id()));
    let result = walkthrough::run(123, Device::Cpu, &out).unwrap();
    std::fs::remove_dir_all(out).unwrap();
    result
}

#[test]
fn matches_the_pytorch_reference() {
    let w = walkthrough();
    let r = reference();

    assert_close("loss", w.gradients.loss, &r["logistic_loss"], 1e-6);
    for (name, ours, key) in [
        ("autograd.grad w1", w.gradients.grad_w1, "grad_w1"),
        ("backward w1", w.gradients.backward_w1, "grad_w1"),
        ("autograd.grad b", w.gradients.grad_b, "grad_b"),
        ("backward b", w.gradients.backward_b, "grad_b"),
    ] {
        assert_close(name, ours, &r[key], 1e-6);
    }

    assert_eq!(w.mlp_parameters, r["mlp_params"].as_i64().unwrap());
    assert_close("layers.0.weight", &w.mlp_layer0_first_row, &r["mlp_layer0_weight_first_row_first5"], 0.0);
    assert_close("mlp output", &w.mlp_output, &r["mlp_out"], 1e-6);
    assert_close("mlp softmax", &w.mlp_softmax, &r["mlp_softmax"], 1e-6);

    for (ours, key) in
        [(&w.loader_batches, "loader_batches"), (&w.loader_batches_drop_last, "loader_batches_drop_last")]
    {
        let expected = r[key].as_array().unwrap();
        assert_eq!(ours.len(), expected.len(), "{key}");
        for (batch, reference) in ours.iter().zip(expected) {
            let labels: Vec<i64> =
                reference["labels"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
            assert_eq!(batch.labels, labels, "{key}");
            assert_close(key, &batch.features, &reference["features"], 0.0);
        }
    }

    let losses: Vec<f64> = w.train_log.iter().map(|s| s.loss).collect();
    assert_close("training losses", &losses, &r["train_losses"], 1e-6);
    assert_close("trained outputs", &w.train_outputs, &r["train_outputs"], 1e-5);
    assert_close("probabilities", &w.train_probas, &r["train_probas"], 1e-5);
    assert_eq!(Value::from(w.train_predictions.clone()), r["train_predictions"]);
    assert_eq!(w.train_accuracy, r["train_accuracy"].as_f64().unwrap());
    assert_eq!(w.test_accuracy, r["test_accuracy"].as_f64().unwrap());
    // A.9.2 on the CPU: the same training, step for step, with the weights where asked.
    let again = &w.device_training;
    assert_eq!((again.weights_on.as_str(), again.largest_loss_difference), ("cpu", 0.0));
    assert_eq!(again.train_log.len(), w.train_log.len());
    assert_eq!(again.test_accuracy, w.test_accuracy);
}

#[test]
fn prints_the_book_numbers() {
    let text = walkthrough().to_string();
    for line in [
        "Total number of trainable model parameters: 2213",
        "Epoch: 001/003 | Batch 000/002 | Train Loss: 0.75",
        "Epoch: 001/003 | Batch 001/002 | Train Loss: 0.65",
        "Epoch: 002/003 | Batch 000/002 | Train Loss: 0.44",
        "Epoch: 002/003 | Batch 001/002 | Train Loss: 0.13",
        "Epoch: 003/003 | Batch 000/002 | Train Loss: 0.03",
        "Epoch: 003/003 | Batch 001/002 | Train Loss: 0.00",
        "Training accuracy: 1.00, test accuracy: 1.00",
        "autograd.grad: dL/dw1 = -0.0898, dL/db = -0.0817",
        "backward():    w1.grad = -0.0898, b.grad = -0.0817",
        "tensor2d @ tensor2d.T: [[14, 32], [32, 77]]",
        "the reloaded model gives identical outputs: true",
        "A.9.2: the same training with the model and every batch on cpu: final loss 0.0",
    ] {
        assert!(text.contains(line), "missing: {line}\n{text}");
    }
}
