//! Chapter 5's pretraining as a data-parallel run of two processes over c10d (Gloo): rank 0
//! alone logs and writes the checkpoint, each rank takes half of the epoch, and the
//! losses fall.

use std::process::Command;

#[test]
fn two_processes_pretrain_together() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.json");
    let tiny = shared::model::GptConfig {
        context_length: 64,
        emb_dim: 16,
        n_heads: 2,
        n_layers: 1,
        drop_rate: 0.0,
        ..shared::model::GptConfig::gpt2_small()
    };
    tiny.save(&config).unwrap();
    let out = dir.path().join("run");
    let output = Command::new(env!("CARGO_BIN_EXE_ch05-pretraining"))
        .args(["--device", "cpu", "--out-dir", out.to_str().unwrap(), "train", "--ddp", "--nproc-per-node", "2"])
        .args(["--config", config.to_str().unwrap(), "--epochs", "1", "--batch-size", "4", "--lr", "0.01"])
        .args(["--eval-freq", "4", "--eval-iter", "2", "--no-initial-losses", "--timeout-seconds", "60"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // Only rank 0 speaks.
    assert_eq!(stdout.matches("Data-parallel training: 2 processes").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("Training completed").count(), 1, "{stdout}");
    assert!(stdout.contains("All-reduce of the gradients"), "{stdout}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    // Each rank takes half of the training windows of every epoch (DistributedSampler pads
    // an odd count), in batches of 4 with the last short one dropped.
    let text = shared::data::DataLocator::from_env(None).read_to_string(&shared::data::THE_VERDICT).unwrap();
    let (train, _) = ch05_pretraining::pretrain::loaders(&text, 0.9, 64, 4).unwrap();
    let per_rank = train.dataset().len().div_ceil(2);
    // (The book numbers steps from 0.)
    assert_eq!(metrics["progress"]["global_step"].as_u64().unwrap() as usize + 1, per_rank / 4);
    let losses: Vec<f64> = metrics["history"]["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["train_loss"].as_f64().unwrap())
        .collect();
    assert!(losses.len() >= 2 && losses.last() < losses.first(), "{losses:?}");
    assert!(out.join("checkpoint.safetensors").is_file());
}
