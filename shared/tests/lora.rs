//! LoRA adapters (appendix E): a fresh adapter changes nothing, merging changes nothing,
//! only the adapters train, and the adapters save and load on their own.

use shared::core::device::global_rng_lock;
use shared::model::lora::{apply_lora, lora_state, merge_lora, LoraConfig};
use shared::model::{GptConfig, GptModel};
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
