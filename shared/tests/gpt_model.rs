//! The GPT model against PyTorch: `manual_seed(123)` then GPT-2 small (context 1,024) gives
//! the book's initial weights (tests/fixtures/gpt124m-init-seed123.json, written by
//! scripts/reference/generate.sh, and the independent tests/fixtures/independent copy), and counting
//! parameters from a config agrees with counting a built model.

use serde_json::Value;
use shared::core::device::{global_rng_lock, seed_everything};
use shared::model::{GptConfig, GptModel, ParameterCounts};
use tch::{nn, Device, Kind};

fn build(cfg: &GptConfig) -> (nn::VarStore, GptModel) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = GptModel::new(&vs.root(), cfg).unwrap();
    (vs, model)
}

#[test]
fn seed_123_gives_the_pytorch_initial_weights() {
    let ours: Value = serde_json::from_str(include_str!("fixtures/gpt124m-init-seed123.json")).unwrap();
    // The independent reference, a committed copy (tests/fixtures/independent/README.md).
    let independent: Value =
        serde_json::from_str(include_str!("fixtures/independent/gpt124m-init-seed123.json")).unwrap();
    let (vs, _model) = {
        let _rng = global_rng_lock();
        seed_everything(123);
        build(&GptConfig::gpt2_small())
    };
    let variables = vs.variables();
    let mut checked = 0;
    for (name, expected, exact) in ours
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, value)| (name, value, true))
        .chain(independent.as_object().unwrap().iter().map(|(name, value)| (name, value, false)))
        .filter(|(key, _, _)| *key != "torch")
    {
        let tensor = &variables[name.as_str()];
        let shape: Vec<i64> = expected["shape"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(tensor.size(), shape, "{name}");
        let first5: Vec<f64> =
            Vec::<f32>::try_from(tensor.flatten(0, -1).narrow(0, 0, 5)).unwrap().into_iter().map(f64::from).collect();
        let want: Vec<f64> = expected["first5"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        if exact {
            assert_eq!(first5, want, "{name}: first values differ (bit for bit)");
        } else {
            // The independent file rounds to 8 decimals.
            assert!(first5.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 5e-9), "{name}: {first5:?} vs {want:?}");
        }
        let sum = tensor.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
        let want_sum = expected["sum"].as_f64().unwrap();
        assert!((sum - want_sum).abs() <= 1e-6 * want_sum.abs().max(1.0), "{name}: sum {sum} vs {want_sum}");
        checked += 1;
    }
    assert_eq!(checked, 8 + independent.as_object().unwrap().len());
}

#[test]
fn counting_from_the_config_matches_a_built_model() {
    for cfg in [GptConfig::gpt2_small(), GptConfig::preset("gpt2-medium").unwrap(), GptConfig::tiny()] {
        let (vs, _model) = {
            let _rng = global_rng_lock();
            build(&cfg)
        };
        let variables = vs.variables();
        let built = ParameterCounts::from_named(variables.iter().map(|(name, t)| (name.as_str(), t.numel() as i64)));
        assert_eq!(built, ParameterCounts::from_config(&cfg), "{cfg:?}");
    }
    let with_bias = GptConfig { qkv_bias: true, ..GptConfig::tiny() };
    let (vs, _model) = {
        let _rng = global_rng_lock();
        build(&with_bias)
    };
    let total: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
    assert_eq!(total, ParameterCounts::from_config(&with_bias).total());
}
