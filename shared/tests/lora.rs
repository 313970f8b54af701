//! LoRA adapters (appendix E): a fresh adapter changes nothing, merging changes nothing,
//! only the adapters train, and the adapters save and load on their own.

use shared::core::device::global_rng_lock;
use shared::model::lora::{apply_lora, lora_state, merge_lora, LoraAdapters, LoraConfig};
use shared::model::{GptConfig, GptModel};
use shared::weights::read_lora_adapters;
use tch::{nn, Device, Kind, Tensor};

const CONFIG: LoraConfig = LoraConfig { rank: 4, alpha: 8.0 };

fn tiny_model() -> (nn::VarStore, GptModel) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = GptModel::new(&vs.root(), &GptConfig { drop_rate: 0.0, ..GptConfig::tiny() }).unwrap();
    (vs, model)
}

fn logits(model: &GptModel) -> Tensor {
    let idx = Tensor::from_slice(&[3i64, 14, 15, 92, 65, 35]).view([2, 3]);
    tch::no_grad(|| model.forward_t(&idx, false))
}

#[test]
fn a_fresh_adapter_gives_the_base_outputs_and_only_adapters_train() {
    let _rng = global_rng_lock();
    let (vs, mut model) = tiny_model();
    let before = logits(&model);
    let base_names: Vec<String> = vs.variables().into_keys().collect();
    let count = apply_lora(&vs, &mut model, CONFIG).unwrap();
    // B starts at zero: exactly the base model's logits.
    assert!(logits(&model).equal(&before));
    // 2 blocks x (4 attention projections 32->32, 32->128, 128->32) + the head 32->50257.
    let per_block = 4 * 4 * (32 + 32) + 4 * (32 + 128) + 4 * (128 + 32);
    assert_eq!(count, 2 * per_block + 4 * (32 + 50257));
    for (name, tensor) in vs.variables() {
        assert_eq!(tensor.requires_grad(), name.contains(".lora."), "{name}");
        assert_eq!(base_names.contains(&name), !name.contains(".lora."), "{name}");
    }
    let a = &vs.variables()["trf_blocks.0.att.W_query.lora.A"];
    let bound = 1.0 / (CONFIG.rank as f64).sqrt();
    assert!(a.abs().max().double_value(&[]) <= bound && a.abs().max().double_value(&[]) > bound / 2.0);
    assert!(apply_lora(&vs, &mut model, CONFIG).unwrap_err().to_string().contains("already has a LoRA adapter"));
}

#[test]
fn merged_and_unmerged_adapters_give_the_same_logits() {
    let _rng = global_rng_lock();
    let (vs, mut model) = tiny_model();
    let base = logits(&model);
    apply_lora(&vs, &mut model, CONFIG).unwrap();
    tch::no_grad(|| {
        for (name, mut tensor) in vs.variables() {
            if name.ends_with(".lora.B") {
                tensor.copy_(&(Tensor::randn(tensor.size(), (Kind::Float, Device::Cpu)) * 0.1));
            }
        }
    });
    let adapted = logits(&model);
    assert!(!adapted.allclose(&base, 1e-4, 1e-4, false), "the adapters change the outputs");
    merge_lora(&vs, &mut model);
    assert!(model.out_head.lora.is_none());
    assert!(lora_state(&vs).is_empty(), "the merged adapters leave the variable store");
    let merged = logits(&model);
    assert!(merged.allclose(&adapted, 1e-4, 1e-5, false), "max difference {}", (merged - adapted).abs().max());
}

#[test]
fn adapters_save_and_load_on_their_own() {
    let _rng = global_rng_lock();
    let (vs, mut model) = tiny_model();
    apply_lora(&vs, &mut model, CONFIG).unwrap();
    tch::no_grad(|| {
        for (name, mut tensor) in vs.variables() {
            if name.ends_with(".lora.B") {
                let _ = tensor.fill_(0.01);
            }
        }
    });
    let state = lora_state(&vs);
    assert_eq!(state.len(), 2 * (2 * 6 + 1));
    assert!(state.iter().all(|(name, _)| name.contains(".lora.")));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lora.safetensors");
    Tensor::write_safetensors(&state, &path).unwrap();
    // Another model with the same base weights takes the adapters.
    let (vs2, mut other) = tiny_model();
    tch::no_grad(|| {
        for (name, mut tensor) in vs2.variables() {
            tensor.copy_(&vs.variables()[&name]);
        }
    });
    apply_lora(&vs2, &mut other, CONFIG).unwrap();
    shared::weights::load_partial_state(&vs2, &path).unwrap();
    assert!(logits(&other).equal(&logits(&model)));
}

/// A model with trained-looking adapters (B not zero), and their file.
fn adapted_model(dir: &std::path::Path, fill: f64) -> (nn::VarStore, GptModel, std::path::PathBuf) {
    tch::manual_seed(1);
    let (vs, mut model) = tiny_model();
    apply_lora(&vs, &mut model, CONFIG).unwrap();
    tch::no_grad(|| {
        for (name, tensor) in vs.variables() {
            if name.ends_with(".lora.B") {
                let _ = tensor.shallow_clone().fill_(fill);
            }
        }
    });
    let path = dir.join(format!("lora-{fill}.safetensors"));
    Tensor::write_safetensors(&lora_state(&vs), &path).unwrap();
    (vs, model, path)
}

#[test]
fn adapters_take_turns_on_one_base_without_changing_it() {
    let _rng = global_rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let (_, first, first_path) = adapted_model(dir.path(), 0.01);
    let (_, second, second_path) = adapted_model(dir.path(), -0.02);
    tch::manual_seed(1);
    let (base_vs, mut base) = tiny_model(); // the same seed: the same base weights
    let base_logits = logits(&base);
    let weights_before: Vec<(String, Tensor)> = base_vs.variables().into_iter().map(|(n, t)| (n, t.copy())).collect();
    let first_adapters = read_lora_adapters(&first_path, CONFIG, Device::Cpu).unwrap();
    let second_adapters = read_lora_adapters(&second_path, CONFIG, Device::Cpu).unwrap();
    assert_eq!(first_adapters.layers.len(), 2 * 6 + 1);
    assert_eq!(first_adapters.bytes(), 4 * apply_lora_count());
    for _ in 0..2 {
        first_adapters.attach(&mut base).unwrap();
        assert!(logits(&base).equal(&logits(&first)));
        second_adapters.attach(&mut base).unwrap();
        assert!(logits(&base).equal(&logits(&second)));
        LoraAdapters::detach(&mut base);
        assert!(logits(&base).equal(&base_logits));
    }
    // The base's own weights were never written to.
    let weights_after = base_vs.variables();
    for (name, before) in &weights_before {
        assert!(before.equal(&weights_after[name]), "{name}");
    }
}

/// The parameters [`apply_lora`] adds to the tiny model.
fn apply_lora_count() -> i64 {
    let (vs, mut model) = tiny_model();
    apply_lora(&vs, &mut model, CONFIG).unwrap()
}

#[test]
fn adapter_files_that_do_not_fit_are_refused() {
    let _rng = global_rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let (_, _, path) = adapted_model(dir.path(), 0.01);
    let wrong_rank = LoraConfig { rank: 8, ..CONFIG };
    let err = read_lora_adapters(&path, wrong_rank, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("not of rank 8"), "{err}");
    let err = read_lora_adapters(&dir.path().join("missing.safetensors"), CONFIG, Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    // A file with only one half of a pair, or other tensors.
    let a = Tensor::zeros([32, 4], (Kind::Float, Device::Cpu));
    let half = dir.path().join("half.safetensors");
    Tensor::write_safetensors(&[("trf_blocks.0.att.W_query.lora.A", &a)], &half).unwrap();
    let err = read_lora_adapters(&half, CONFIG, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("no trf_blocks.0.att.W_query.lora.B"), "{err}");
    let base = dir.path().join("base.safetensors");
    Tensor::write_safetensors(&[("tok_emb.weight", &a)], &base).unwrap();
    let err = read_lora_adapters(&base, CONFIG, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("not LoRA adapter pairs"), "{err}");
    // Adapters of another model's shapes.
    let adapters = read_lora_adapters(&path, CONFIG, Device::Cpu).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let wider = GptConfig { emb_dim: 64, drop_rate: 0.0, ..GptConfig::tiny() };
    let mut other = GptModel::new(&vs.root(), &wider).unwrap();
    let err = adapters.attach(&mut other).unwrap_err().to_string();
    assert!(err.contains("trained on another model"), "{err}");
    assert!(other.linear_layers_mut().iter().all(|(_, layer)| layer.lora.is_none()), "nothing attached");
}
