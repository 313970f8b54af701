//! Checkpoints restore a training run exactly: weights, AdamW moments and step counts.

use shared::core::device::{global_rng_lock, seed_everything};
use shared::model::{GptConfig, GptModel};
use shared::train::{cross_entropy, AdamW, AdamWConfig, Checkpoint, CheckpointMeta, CHECKPOINT_FORMAT};
use tch::{nn, Device, Kind, Tensor};

fn tiny() -> GptConfig {
    GptConfig { vocab_size: 100, ..GptConfig::tiny() }
}

fn train_steps(model: &GptModel, optimizer: &mut AdamW, steps: usize) -> f64 {
    let mut loss = 0.0;
    for step in 0..steps {
        let inputs = Tensor::arange_start(step as i64, step as i64 + 16, (Kind::Int64, Device::Cpu)).view([2, 8]);
        let targets = (&inputs + 1).remainder(100);
        optimizer.zero_grad();
        let l = cross_entropy(&model.forward_t(&inputs, true), &targets);
        l.backward();
        optimizer.step();
        loss = l.double_value(&[]);
    }
    loss
}

fn meta(cfg: &GptConfig, steps: i64) -> CheckpointMeta {
    CheckpointMeta {
        format: CHECKPOINT_FORMAT,
        config: cfg.clone(),
        epoch: 1,
        global_step: steps - 1,
        tokens_seen: 16 * steps,
        optimizer: AdamWConfig::default(),
        seed: 123,
        epoch_seed: None,
    }
}

#[test]
fn a_checkpoint_restores_weights_and_optimizer_state_bit_for_bit() {
    let _rng = global_rng_lock();
    seed_everything(123);
    let cfg = tiny();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = GptModel::new(&vs.root(), &cfg).unwrap();
    let mut optimizer = AdamW::new(&vs, AdamWConfig::default()).unwrap();
    train_steps(&model, &mut optimizer, 3);
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint::at(&dir.path().join("run.json"));
    checkpoint.save(&vs, Some(&optimizer), &meta(&cfg, 3)).unwrap();
    assert_eq!(checkpoint.read_meta().unwrap(), meta(&cfg, 3));

    seed_everything(7); // a different initialisation, overwritten by the load
    let restored_vs = nn::VarStore::new(Device::Cpu);
    let restored = GptModel::new(&restored_vs.root(), &cfg).unwrap();
    let mut restored_optimizer = AdamW::new(&restored_vs, AdamWConfig::default()).unwrap();
    checkpoint.load_model(&restored_vs).unwrap();
    checkpoint.load_optimizer(&mut restored_optimizer).unwrap();
    let (saved, loaded) = (vs.variables(), restored_vs.variables());
    assert_eq!(saved.len(), loaded.len());
    for (name, tensor) in &saved {
        assert!(tensor.equal(&loaded[name]), "{name} differs after loading");
    }
    let (saved, loaded) = (optimizer.state_tensors(), restored_optimizer.state_tensors());
    assert_eq!(saved.len(), 3 * vs.variables().len());
    for ((a_name, a), (b_name, b)) in saved.iter().zip(&loaded) {
        assert_eq!(a_name, b_name);
        assert!(a.equal(b), "{a_name} differs after loading");
    }
    assert_eq!(restored_optimizer.steps(), 3);
    // Both continue identically.
    seed_everything(5);
    let a = train_steps(&model, &mut optimizer, 2);
    seed_everything(5);
    let b = train_steps(&restored, &mut restored_optimizer, 2);
    assert_eq!(a, b);
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let _rng = global_rng_lock();
    let cfg = tiny();
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = GptModel::new(&vs.root(), &cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = Checkpoint::at(&dir.path().join("nothing"));
    assert!(missing.load_model(&vs).unwrap_err().to_string().contains("does not exist"));
    assert!(missing.read_meta().unwrap_err().to_string().contains("cannot read the checkpoint metadata"));

    let corrupt = Checkpoint::at(&dir.path().join("corrupt"));
    std::fs::write(&corrupt.model, b"not a safetensors file").unwrap();
    std::fs::write(&corrupt.meta, b"{\"format\": 1}").unwrap();
    let err = format!("{:#}", corrupt.load_model(&vs).unwrap_err());
    assert!(err.contains("is not a valid safetensors file"), "{err}");
    let err = format!("{:#}", corrupt.read_meta().unwrap_err());
    assert!(err.contains("is not a checkpoint description"), "{err}");

    // Saved without optimizer state: resuming says so.
    let weights_only = Checkpoint::at(&dir.path().join("weights-only"));
    weights_only.save(&vs, None, &meta(&cfg, 1)).unwrap();
    let mut optimizer = AdamW::new(&vs, AdamWConfig::default()).unwrap();
    let err = weights_only.load_optimizer(&mut optimizer).unwrap_err().to_string();
    assert!(err.contains("has no optimizer state"), "{err}");
    // A model of another size does not take the weights.
    let other = nn::VarStore::new(Device::Cpu);
    let _ = GptModel::new(&other.root(), &GptConfig { emb_dim: 64, ..cfg }).unwrap();
    let err = weights_only.load_model(&other).unwrap_err().to_string();
    assert!(err.contains("shape mismatch: final_norm.scale: [32] in the file, [64] in the model"), "{err}");
}

/// A disk that fills up during a save: the error names the file, and the previous
/// checkpoint is still there, complete. `/dev/full` answers every write with ENOSPC; the
/// save's temporary file is made a link to it.
#[test]
fn a_full_disk_during_a_save_names_the_file_and_keeps_the_last_checkpoint() {
    let cfg = tiny();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = {
        let _rng = global_rng_lock();
        seed_everything(123);
        GptModel::new(&vs.root(), &cfg).unwrap()
    };
    let mut optimizer = AdamW::new(&vs, AdamWConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint::at(&dir.path().join("checkpoint"));
    checkpoint.save(&vs, Some(&optimizer), &meta(&cfg, 1)).unwrap();
    let saved_model = std::fs::read(&checkpoint.model).unwrap();

    {
        let _rng = global_rng_lock();
        train_steps(&model, &mut optimizer, 2);
    }
    for file in [&checkpoint.model, &checkpoint.optimizer, &checkpoint.meta] {
        let partial = std::path::PathBuf::from(format!("{}.partial", file.display()));
        std::os::unix::fs::symlink("/dev/full", &partial).unwrap();
        let err = format!("{:#}", checkpoint.save(&vs, Some(&optimizer), &meta(&cfg, 3)).unwrap_err());
        assert!(err.contains(&format!("writing {}", file.display())), "{err}");
        assert!(!partial.exists(), "the temporary file is removed");
        // The last complete checkpoint is untouched.
        assert_eq!(checkpoint.read_meta().unwrap(), meta(&cfg, 1));
        assert_eq!(std::fs::read(&checkpoint.model).unwrap(), saved_model);
    }
}
