//! Bad input gets a clear error, never a panic or an abort: each case below once reached
//! LibTorch or an index unchecked.

use std::path::Path;

use shared::app::finetune::ClassifierMeta;
use shared::core::device::global_rng_lock;
use shared::data::classification::{loaders, Splits};
use shared::data::dataset::{DataLoader, GptDataset};
use shared::data::spam::Message;
use shared::model::classifier::{classify, TokenPosition};
use shared::model::{GptConfig, GptModel, MAX_CONTEXT_LENGTH};
use shared::train::{check_token_ids, train_model_simple, AdamW, AdamWConfig, TrainProgress, TrainSettings};
use shared::weights::{infer_config, Gpt2Weights, SafeTensorsFile};
use tch::{nn, Device, Kind, Tensor};

fn small_vocab_model() -> (nn::VarStore, GptModel) {
    let _rng = global_rng_lock();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = GptModel::new(&vs.root(), &GptConfig { vocab_size: 1000, ..GptConfig::tiny() }).unwrap();
    (vs, model)
}

const TEXT: &str = "Every effort moves you toward the finish line, one step at a time, until the very end.";

/// Case 1 of the issue: A model whose vocabulary is smaller than GPT-2's cannot read GPT-2 token ids: training,
/// evaluation and classification all say so before any forward pass.
#[test]
fn token_ids_outside_the_vocabulary_are_refused_on_every_path() {
    let (vs, model) = small_vocab_model();
    let loader = DataLoader::new(GptDataset::from_text(TEXT, 4, 4).unwrap(), 2, false, false).unwrap();
    let err = check_token_ids(&model, &[("training", &loader)]).unwrap_err().to_string();
    assert!(err.contains("the training data holds token id") && err.contains("vocabulary of 1000 ids"), "{err}");

    let mut optimizer = AdamW::new(&vs, AdamWConfig::default()).unwrap();
    let settings = TrainSettings {
        num_epochs: 1,
        eval_freq: 1,
        eval_iter: 1,
        start_context: None,
        epoch_seed: None,
        verbose: false,
        mode: shared::train::TrainMode::Book,
        schedule: Default::default(),
    };
    let err = train_model_simple(
        &model,
        &mut optimizer,
        &loader,
        &loader,
        &settings,
        &mut TrainProgress::default(),
        Device::Cpu,
        &mut |_, _| Ok(()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("outside the model's vocabulary"), "{err}");

    let message = |label, text: &str| Message { label, text: text.into() };
    let messages: Vec<Message> = (0..10).map(|i| message(i % 2, "You won a prize, call now")).collect();
    let splits = Splits { train: messages.clone(), validation: messages.clone(), test: messages, malformed: vec![] };
    let spam = loaders(&splits, shared::data::classification::Padding::Longest, 16, 2).unwrap();
    let err = spam.check_token_ids(&model).unwrap_err().to_string();
    assert!(err.contains("outside the model's vocabulary"), "{err}");
    let err = classify(&model, "You won a prize", 8, TokenPosition::Last, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("outside the vocabulary"), "{err}");
}

/// Case 2 of the issue: Sizes that cannot fit are refused with the number, in our configs and in Hugging Face's.
#[test]
fn configs_with_sizes_that_cannot_fit_are_refused() {
    for (field, config) in [
        ("context_length", GptConfig { context_length: MAX_CONTEXT_LENGTH + 1, ..GptConfig::tiny() }),
        ("emb_dim", GptConfig { emb_dim: 1 << 40, n_heads: 1, ..GptConfig::tiny() }),
        ("n_layers", GptConfig { n_layers: i64::MAX, ..GptConfig::tiny() }),
        ("vocab_size", GptConfig { vocab_size: 1 << 50, ..GptConfig::tiny() }),
    ] {
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(field) && err.contains("more than the largest supported"), "{field}: {err}");
    }
    // Each size allowed, together too large.
    let err = GptConfig { vocab_size: 1 << 24, emb_dim: 1 << 16, n_heads: 1, ..GptConfig::tiny() }
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("its parameters and masks take") && err.contains("more than the largest supported, 274.9 GB"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"vocab_size": 50257, "n_positions": 1000000000, "n_embd": 32, "n_layer": 2, "n_head": 4}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"").unwrap();
    let err = format!("{:#}", Gpt2Weights::open(dir.path()).unwrap_err());
    assert!(err.contains("context_length is 1000000000, more than the largest supported"), "{err}");
}

/// A config that passes the limits but not this machine's memory is refused when built.
#[test]
fn a_model_larger_than_the_memory_is_refused_before_allocating() {
    let Some(memory) = shared::core::device::system_memory_bytes() else {
        panic!("this test needs /proc/meminfo (Linux)");
    };
    // Layers of width 8,192 (805 MB each) until they pass the machine's memory.
    let per_layer = 12 * 8192 * 8192 * 4;
    let cfg = GptConfig { emb_dim: 8192, n_heads: 64, n_layers: memory / per_layer + 1, ..GptConfig::tiny() };
    cfg.validate().unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let err = GptModel::new(&vs.root(), &cfg).unwrap_err().to_string();
    assert!(err.contains("GB this process can allocate (the bound: the machine's memory)"), "{err}");
    assert!(vs.variables().is_empty(), "nothing was allocated");
}

/// Case 3 of the issue: Weight files whose tensors have the wrong number of dimensions.
#[test]
fn weights_of_the_wrong_rank_are_refused() {
    let shapes = [("tok_emb.weight".to_string(), vec![50257]), ("pos_emb.weight".to_string(), vec![64, 32])];
    let err = infer_config(&shapes.into_iter().collect(), None).unwrap_err().to_string();
    assert!(err.contains("tok_emb.weight has the shape [50257]; an embedding is a matrix"), "{err}");

    // The tiny Hugging Face checkpoint with a 3-D c_attn weight, then with a 0-D c_proj weight.
    let source = fixtures().join("gpt2-tiny-hf");
    let mut file = SafeTensorsFile::open(&source.join("model.safetensors")).unwrap();
    let names: Vec<String> = file.tensors.keys().cloned().collect();
    let tensors: Vec<(String, Tensor)> = names.iter().map(|name| (name.clone(), file.read(name).unwrap())).collect();
    for (broken, want) in [
        ("transformer.h.0.attn.c_attn.weight", "has the shape [1, 8, 24], expected 2 dimensions"),
        ("transformer.h.0.mlp.c_proj.weight", "has the shape [], expected 2 dimensions"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(source.join("config.json"), dir.path().join("config.json")).unwrap();
        let altered: Vec<(String, Tensor)> = tensors
            .iter()
            .map(|(name, t)| {
                let t = match name.as_str() {
                    n if n != broken => t.shallow_clone(),
                    n if n.contains("c_attn") => t.unsqueeze(0),
                    _ => t.sum(Kind::Float),
                };
                (name.clone(), t)
            })
            .collect();
        Tensor::write_safetensors(&altered, dir.path().join("model.safetensors")).unwrap();
        let weights = Gpt2Weights::open(dir.path()).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let _model = {
            let _rng = global_rng_lock();
            GptModel::new(&vs.root(), &weights.config).unwrap()
        };
        let err = weights.load_into(&vs).unwrap_err().to_string();
        assert!(err.contains(broken) && err.contains(want), "{err}");
    }
}

/// Case 4 of the issue: Classifier descriptions with impossible numbers.
#[test]
fn classifier_descriptions_with_impossible_numbers_are_refused() {
    let meta = |num_classes: i64, max_length: i64| {
        format!(r#"{{"num_classes": {num_classes}, "max_length": {max_length}, "position": "Last"}}"#)
    };
    ClassifierMeta::parse(&meta(2, 120)).unwrap();
    for (text, needle) in [
        (meta(0, 120), "num_classes must be between 2 and 65536, got 0"),
        (meta(-3, 120), "got -3"),
        (meta(1 << 40, 120), "num_classes must be between"),
        (meta(2, 0), "max_length must be between 1 and 131072 tokens, got 0"),
        (meta(2, 1 << 40), "max_length must be between"),
        (
            r#"{"num_classes": 2, "max_length": 8, "position": "Last", "lora": {"rank": 0, "alpha": 1.0}}"#.into(),
            "LoRA rank",
        ),
    ] {
        let err = format!("{:#}", ClassifierMeta::parse(&text).unwrap_err());
        assert!(err.contains(needle), "{text}: {err}");
    }
}

/// Case 6: safetensors headers whose offsets or shapes overflow.
#[test]
fn safetensors_headers_that_overflow_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let write = |header: &str, data: usize| {
        let path = dir.path().join("bad.safetensors");
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.resize(bytes.len() + data, 0);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    for (header, needle) in [
        (r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 18446744073709551615]}}"#, "outside the file"),
        (
            r#"{"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 8]}}"#,
            "not a valid size",
        ),
        (r#"{"a": {"dtype": "F32", "shape": [-2, -1], "data_offsets": [0, 8]}}"#, "not a valid size"),
        (r#"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#, "has 8 bytes for the shape [3]"),
        (r#"{"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}"#, "dtype Q4 is not supported"),
        (r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}"#, "outside the file"),
    ] {
        let err = format!("{:#}", SafeTensorsFile::open(&write(header, 8)).unwrap_err());
        assert!(err.contains(needle), "{header}: {err}");
    }
    let path = write(r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#, 8);
    assert_eq!(SafeTensorsFile::open(&path).unwrap().read("a").unwrap().size(), [2]);
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}
