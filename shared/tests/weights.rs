//! Conformance of `shared::weights` with checkpoints written by PyTorch and `transformers`
//! (scripts/reference/gpt2_fixtures.py), and with the independent tiny GPT-2
//! (tests/fixtures/independent/gpt2-tiny-a, a committed copy).

use std::path::{Path, PathBuf};

use serde_json::Value;
use shared::core::tensors::vec_f32;
use shared::generate::{generate_greedy_cached, generate_text_simple};
use shared::model::{GptConfig, GptModel};
use shared::reference::assert_close;
use shared::train::{cross_entropy, AdamW, AdamWConfig, Checkpoint, CheckpointMeta, CHECKPOINT_FORMAT};
use shared::weights::{infer_config, load_state_dict, state_dict_shapes, Gpt2Weights};
use tch::{nn, Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn build(cfg: &GptConfig) -> (nn::VarStore, GptModel) {
    let _rng = shared::core::device::global_rng_lock();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = GptModel::new(&vs.root(), cfg).unwrap();
    (vs, model)
}

fn ids_tensor(ids: &Value) -> Tensor {
    let ids: Vec<i64> = ids.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    Tensor::from_slice(&ids).view([1, -1])
}

/// Loads a Hugging Face GPT-2 folder and checks the outputs recorded in its expected.json.
fn check_hf_checkpoint(dir: &Path) {
    let weights = Gpt2Weights::open(dir).unwrap();
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let (vs, model) = build(&weights.config);
    weights.load_into(&vs).unwrap();
    for prompt in expected["prompts"].as_array().unwrap() {
        let idx = ids_tensor(&prompt["ids"]);
        let name = format!("{} {}", dir.display(), prompt["ids"]);
        let logits = tch::no_grad(|| model.forward_t(&idx, false));
        let last = logits.get(0).get(-1);
        assert_close(&name, vec_f32(&last.narrow(0, 0, 8)), &prompt["last_logits_first8"], 1e-5);
        if let Some(all) = prompt.get("last_logits") {
            assert_close(&name, vec_f32(&last), all, 1e-5);
        }
        assert_eq!(last.argmax(0, false).int64_value(&[]), prompt["last_logits_argmax"].as_i64().unwrap(), "{name}");
        let sum = last.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
        assert!((sum - prompt["logits_sum_last"].as_f64().unwrap()).abs() < 1e-3, "{name}: logit sum {sum}");
        if let Some(loss) = prompt["loss"].as_f64() {
            let n = idx.size()[1];
            let ours = cross_entropy(&logits.narrow(1, 0, n - 1), &idx.narrow(1, 1, n - 1)).double_value(&[]);
            assert!((ours - loss).abs() < 1e-5, "{name}: loss {ours} vs {loss}");
        }
        let greedy: Vec<i64> = prompt["greedy_20"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let n = idx.size()[1];
        for out in [
            generate_text_simple(&model, &idx, 20, weights.config.context_length).unwrap(),
            generate_greedy_cached(&model, &idx, 20, None).unwrap(),
        ] {
            assert_eq!(Vec::<i64>::try_from(out.get(0).narrow(0, n, 20)).unwrap(), greedy, "{name}");
        }
        // The winning logit of each greedy step, from one pass over the whole sequence.
        let full = Tensor::cat(&[&idx, &Tensor::from_slice(&greedy[..19]).view([1, -1])], 1);
        let steps = tch::no_grad(|| model.forward_t(&full, false)).get(0).narrow(0, n - 1, 20).amax(-1, false);
        assert_close(&name, vec_f32(&steps), &prompt["greedy_20_max_logits"], 1e-5);
    }
}

#[test]
fn loads_a_transformers_checkpoint_with_a_tied_head() {
    check_hf_checkpoint(&fixtures().join("gpt2-tiny-hf"));
}

#[test]
fn loads_the_openai_hub_layout_with_mask_buffers_and_an_untied_head() {
    check_hf_checkpoint(&fixtures().join("gpt2-tiny-openai"));
}

#[test]
fn agrees_with_the_independent_gpt2_fixture() {
    // A committed copy of a checkpoint made apart from this project's generator
    // (tests/fixtures/independent/README.md).
    check_hf_checkpoint(&fixtures().join("independent/gpt2-tiny-a"));
}

#[test]
fn weight_errors_list_what_is_missing_or_mismatched() {
    let weights = Gpt2Weights::open(&fixtures().join("gpt2-tiny-hf")).unwrap();
    // A model of another width: every tensor mismatches, reported in one message.
    let (vs, _model) = build(&GptConfig { emb_dim: 32, ..weights.config.clone() });
    let err = weights.load_into(&vs).unwrap_err().to_string();
    assert!(err.contains("does not fit the model") && err.contains("shape mismatch"), "{err}");
    assert!(err.contains("(from transformer.h.0.attn.c_attn.bias): [8] in the file, [32] in the model"), "{err}");
    assert!(!err.contains("missing"), "{err}");
    // A model with a third layer: its tensors are missing.
    let (vs, _model) = build(&GptConfig { n_layers: 3, ..weights.config.clone() });
    let err = weights.load_into(&vs).unwrap_err().to_string();
    assert!(err.contains("missing: trf_blocks.2."), "{err}");
    // Not a checkpoint folder.
    let err = Gpt2Weights::open(&fixtures()).unwrap_err().to_string();
    assert!(err.contains("has no config.json"), "{err}");
    let err = format!("{:#}", Gpt2Weights::resolve("no-such-model").unwrap_err());
    assert!(err.contains("not a GPT-2 hub id"), "{err}");
}

#[test]
fn loads_a_state_dict_saved_by_the_books_torch_save() {
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("book-tiny.json")).unwrap()).unwrap();
    let path = fixtures().join("book-tiny.pth");
    let shapes = state_dict_shapes(&path).unwrap();
    let err = infer_config(&shapes, None).unwrap_err().to_string();
    assert!(err.contains("no GPT-2 preset has width 32"), "{err}");
    let cfg = infer_config(&shapes, Some(4)).unwrap();
    let expected: GptConfig = serde_json::from_value(reference["config"].clone()).unwrap();
    assert_eq!(cfg, expected);
    let (vs, model) = build(&cfg);
    load_state_dict(&vs, &path).unwrap();
    let logits = tch::no_grad(|| model.forward_t(&ids_tensor(&reference["ids"]), false));
    assert_close("book-tiny.pth", vec_f32(&logits.get(0)), &reference["logits"], 1e-5);
    // The same file into a model without QKV biases: the biases are unexpected.
    let (vs, _model) = build(&GptConfig { qkv_bias: false, ..cfg });
    let err = load_state_dict(&vs, &path).unwrap_err().to_string();
    assert!(err.contains("unexpected: trf_blocks.0.att.W_query.bias, trf_blocks.0.att.W_key.bias"), "{err}");
}

/// Our checkpoint fits the book's PyTorch `GPTModel`: the file holds exactly the names and
/// shapes of its `state_dict()` (what a strict `load_state_dict` demands), and the seed-123
/// model saved and loaded back gives PyTorch's logits (tests/fixtures/book-state-dict.json,
/// written by `scripts/reference/load_checkpoint.py --reference`; the same script loads a
/// checkpoint of ours into PyTorch by hand).
#[test]
fn our_checkpoints_have_the_books_state_dict() {
    let reference: Value = serde_json::from_str(include_str!("fixtures/book-state-dict.json")).unwrap();
    let cfg = GptConfig { vocab_size: 1000, ..GptConfig::tiny() };
    assert_eq!(serde_json::to_value(&cfg).unwrap()["n_layers"], reference["config"]["n_layers"]);
    let vs = nn::VarStore::new(Device::Cpu);
    {
        let _rng = shared::core::device::global_rng_lock();
        shared::core::device::seed_everything(123);
        GptModel::new(&vs.root(), &cfg).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint::at(&dir.path().join("model"));
    let meta = CheckpointMeta {
        format: CHECKPOINT_FORMAT,
        config: cfg.clone(),
        epoch: 0,
        global_step: -1,
        tokens_seen: 0,
        optimizer: AdamWConfig::default(),
        seed: 123,
        epoch_seed: None,
    };
    checkpoint.save(&vs, Some(&AdamW::new(&vs, AdamWConfig::default()).unwrap()), &meta).unwrap();
    let ours: std::collections::BTreeMap<String, Vec<i64>> = state_dict_shapes(&checkpoint.model).unwrap();
    let theirs: std::collections::BTreeMap<String, Vec<i64>> =
        serde_json::from_value(reference["state_dict"].clone()).unwrap();
    assert_eq!(ours, theirs);
    let (loaded, model) = build(&cfg);
    checkpoint.load_model(&loaded).unwrap();
    let logits = tch::no_grad(|| model.forward_t(&ids_tensor(&reference["ids"]), false));
    assert_close("PyTorch logits", vec_f32(&logits.view([-1])), &reference["logits"], 1e-5);
}
