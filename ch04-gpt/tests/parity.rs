//! The walk-through reproduces the book's PyTorch code (tests/fixtures/pytorch-reference.json,
//! written by scripts/reference/generate.sh).

use ch04_gpt::walkthrough;
use serde_json::Value;
use shared::core::device::global_rng_lock;
use shared::reference::assert_close;

#[test]
fn walkthrough_matches_pytorch_and_the_book() {
    let reference: Value = serde_json::from_str(include_str!("fixtures/pytorch-reference.json")).unwrap();
    let out_dir = std::env::temp_dir().join(format!("ch04-parity-{}", std::process::id()));
    let w = {
        let _rng = global_rng_lock();
        walkthrough::run(123, tch::Device::Cpu, &out_dir).unwrap()
    };
    let png = std::fs::read(out_dir.join("gelu-relu.png")).expect("the GELU/ReLU plot is written");
    assert_eq!(&png[1..4], b"PNG");
    std::fs::remove_dir_all(&out_dir).unwrap();
    assert_eq!(w.batch, [[6109, 3626, 6100, 345], [6109, 1110, 6622, 257]]);
    assert_eq!(w.dummy_logits_shape, [2, 4, 50257]);
    assert_close("layer outputs", &w.ln_layer_out, &reference["ln_layer_out"], 1e-6);
    assert_close("mean", &w.ln_mean, &reference["ln_mean"], 1e-6);
    assert_close("variance", &w.ln_var, &reference["ln_var"], 1e-6);
    assert_close("normalized variance", &w.ln_normed_var, &reference["ln_normed_var"], 1e-6);
    assert_close("LayerNorm mean", &w.ln_module_mean, &reference["ln_module_mean"], 1e-6);
    assert_close("LayerNorm variance", &w.ln_module_var, &reference["ln_module_var"], 1e-6);
    assert_eq!(w.ff_output_shape, [2, 3, 768]);
    // The book's shortcut experiment: 0.0002017 ... 0.0050 without, 0.2217 ... 1.3259 with.
    assert_close("gradients without shortcut", &w.grads_without_shortcut, &reference["grads_without_shortcut"], 1e-8);
    assert_close("gradients with shortcut", &w.grads_with_shortcut, &reference["grads_with_shortcut"], 1e-6);
    assert_eq!(w.block_output_shape, [2, 4, 768]);
    assert_eq!(w.model_logits_shape, [2, 4, 50257]);
    // Training mode: the dropout masks are PyTorch's too.
    assert_close("logits", &w.model_logits_first_row_first5, &reference["model_logits_first_row_first5"], 1e-5);
    assert_eq!((w.total_parameters, w.parameters_with_weight_tying), (163_009_536, 124_412_160));
    assert_eq!(format!("{:.2}", w.size_mb), "621.83");
    assert_eq!(serde_json::to_value(&w.generated_ids).unwrap(), reference["generated_ids"]);
    assert_eq!(w.generated_ids, [15496, 11, 314, 716, 27018, 24086, 47843, 30961, 42348, 7267]);
    // GELU is smooth and negative for negative inputs, where ReLU is 0.
    assert!(w.gelu_values[2] < 0.0 && w.relu_values[2] == 0.0);
}
