//! Fast mode on a GPU computes under bfloat16 autocast: matrix products in bfloat16, weights,
//! norms and the loss in float32. No GPU runs here, so these tests run the same code under
//! the CPU's bfloat16 autocast (`with_cpu_autocast`), which mixes the dtypes the same way:
//! a dtype mismatch in the fast path (a bfloat16 activation meeting a float32 cache, mask
//! or table) fails here instead of on the GPU.

use shared::core::device::{global_rng_lock, seed_everything};
use shared::core::native::with_cpu_autocast;
use shared::generate::batch::generate_batch;
use shared::generate::{generate_greedy_cached, Sampler, Sampling};
use shared::model::positions::PosEncoding;
use shared::model::{GptConfig, GptModel};
use shared::train::{AdamW, AdamWConfig, TrainMode};
use tch::{nn::VarStore, Device, Kind, Tensor};

fn fast_model(cfg: &GptConfig) -> (VarStore, GptModel, AdamW) {
    seed_everything(123);
    let vs = VarStore::new(Device::Cpu);
    let mut model = GptModel::new(&vs.root(), cfg).unwrap();
    let mut optimizer = AdamW::new(&vs, AdamWConfig::default()).unwrap();
    TrainMode::Fast.prepare(&mut model, &mut optimizer).unwrap();
    (vs, model, optimizer)
}

fn batch() -> (Tensor, Tensor) {
    let ids = (Tensor::arange(2 * 17, (Kind::Int64, Device::Cpu)).view([2, 17]) * 1237).remainder(50257);
    (ids.narrow(1, 0, 16), ids.narrow(1, 1, 16))
}

fn loss(model: &GptModel, inputs: &Tensor, targets: &Tensor) -> (Tensor, Kind) {
    let logits = model.forward_t(inputs, true);
    let kind = logits.kind();
    (logits.flatten(0, 1).to_kind(Kind::Float).cross_entropy_for_logits(&targets.flatten(0, 1)), kind)
}

#[test]
fn fast_training_steps_under_autocast_keep_float32_weights() {
    let _rng = global_rng_lock();
    // Learned positions (GPT-2's), then the sinusoidal table and RoPE with grouped keys.
    let configs = [
        GptConfig { drop_rate: 0.1, ..GptConfig::tiny() },
        GptConfig { pos_encoding: PosEncoding::Sinusoidal, ..GptConfig::tiny() },
        GptConfig { pos_encoding: PosEncoding::Rope, n_kv_heads: Some(2), ..GptConfig::tiny() },
    ];
    for cfg in configs {
        let (inputs, targets) = batch();
        let (vs, model, mut optimizer) = fast_model(&cfg);
        let (plain, _) = tch::no_grad(|| loss(&model, &inputs, &targets));
        for _ in 0..2 {
            optimizer.zero_grad();
            let (value, logits_kind) = with_cpu_autocast(|| loss(&model, &inputs, &targets)).unwrap();
            assert_eq!(logits_kind, Kind::BFloat16, "{:?}: the head ran in bfloat16", cfg.pos_encoding);
            let value_f = value.double_value(&[]);
            assert!(value_f.is_finite(), "{:?}", cfg.pos_encoding);
            value.backward();
            optimizer.step();
        }
        // A bfloat16 forward pass is close to float32's, and the weights stay float32.
        let (first, _) = tch::no_grad(|| with_cpu_autocast(|| loss(&model, &inputs, &targets)).unwrap());
        assert!(first.double_value(&[]) < plain.double_value(&[]), "two steps lowered the loss");
        for (name, tensor) in vs.variables() {
            assert_eq!(tensor.kind(), Kind::Float, "{name}");
            assert!(tensor.isfinite().all().int64_value(&[]) == 1, "{name}");
        }
    }
}

#[test]
fn decoding_over_the_cache_runs_under_autocast() {
    let _rng = global_rng_lock();
    for cfg in
        [GptConfig::tiny(), GptConfig { pos_encoding: PosEncoding::Rope, n_kv_heads: Some(2), ..GptConfig::tiny() }]
    {
        let (_vs, model, _) = fast_model(&GptConfig { drop_rate: 0.0, ..cfg });
        let prompt = Tensor::from_slice(&[15496i64, 11, 314, 716]).view([1, 4]);
        let ids = with_cpu_autocast(|| tch::no_grad(|| generate_greedy_cached(&model, &prompt, 6, None))).unwrap();
        assert_eq!(ids.unwrap().size(), [1, 10]);
        let prompts = vec![vec![15496i64, 11, 314, 716], vec![40, 1107, 588]];
        let mut sampler = Sampler::new(&Sampling { temperature: 0.0, top_k: None, eos_id: None }).unwrap();
        let batched = with_cpu_autocast(|| tch::no_grad(|| generate_batch(&model, &prompts, 5, &mut sampler))).unwrap();
        assert_eq!(batched.unwrap().len(), 2);
    }
}
