//! Every loader of `shared`, fed thousands of broken versions of a valid file (see
//! `shared::fuzz`): each ends in `Ok` or an error, never a panic or an abort. `FUZZ_CASES=N`
//! runs N cases per loader instead of 2,000.

use std::path::{Path, PathBuf};

use anyhow::Result;
use shared::app::finetune::ClassifierMeta;
use shared::core::device::global_rng_lock;
use shared::data::classification;
use shared::data::dataset::{DataLoader, GptDataset};
use shared::data::{DataLocator, SMS_SPAM_COLLECTION, THE_VERDICT};
use shared::fuzz::{cases_from_env, check_loader};
use shared::model::{GptConfig, GptModel};
use shared::train::{AdamW, AdamWConfig, Checkpoint, CheckpointMeta, CHECKPOINT_FORMAT};
use shared::weights::{state_dict_shapes, Gpt2Weights, SafeTensorsFile};
use tch::{nn, Device, Kind, Tensor};

/// A folder for one loader's inputs, and a helper that writes an input to a file there.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

fn tiny_config() -> GptConfig {
    GptConfig { vocab_size: 64, context_length: 8, emb_dim: 8, n_heads: 2, n_layers: 1, ..GptConfig::gpt2_small() }
}

fn tiny_model(cfg: &GptConfig) -> (nn::VarStore, GptModel) {
    let _rng = global_rng_lock();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = GptModel::new(&vs.root(), cfg).unwrap();
    (vs, model)
}

fn report(name: &str, summary: shared::fuzz::FuzzSummary) {
    println!("{name}: {summary}");
}

#[test]
fn safetensors_files() {
    let scratch = Scratch::new();
    let tensors = [
        ("weight".to_string(), Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3])),
        ("ids".to_string(), Tensor::from_slice(&[3i64, 1, 4, 1])),
        ("scale".to_string(), Tensor::from(0.5f32)),
    ];
    let seed_path = scratch.path("seed.safetensors");
    Tensor::write_safetensors(&tensors, &seed_path).unwrap();
    let seed = std::fs::read(&seed_path).unwrap();
    let summary = check_loader("safetensors", &seed, cases_from_env(), |bytes| -> Result<usize> {
        let mut file = SafeTensorsFile::open(&scratch.write("case.safetensors", bytes))?;
        let names: Vec<String> = file.tensors.keys().cloned().collect();
        for name in &names {
            let _tensor = file.read(name)?;
        }
        Ok(names.len())
    });
    report("safetensors", summary);
}

#[test]
fn torch_save_archives() {
    let seed = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-state-dict.pth")).unwrap();
    let scratch = Scratch::new();
    let summary = check_loader("torch-save", &seed, cases_from_env(), |bytes| {
        state_dict_shapes(&scratch.write("case.pth", bytes))
    });
    report("torch.save archives", summary);
}

/// A checkpoint of the tiny model (model, optimizer state and description) in `scratch`.
fn seed_checkpoint(scratch: &Scratch) -> (Checkpoint, CheckpointMeta) {
    let cfg = tiny_config();
    let (vs, _model) = tiny_model(&cfg);
    let optimizer = AdamW::new(&vs, AdamWConfig::default()).unwrap();
    let meta = CheckpointMeta {
        format: CHECKPOINT_FORMAT,
        config: cfg,
        epoch: 3,
        global_step: 41,
        tokens_seen: 1344,
        optimizer: AdamWConfig::default(),
        seed: 123,
        epoch_seed: Some(7),
    };
    let checkpoint = Checkpoint::at(&scratch.path("seed"));
    checkpoint.save(&vs, Some(&optimizer), &meta).unwrap();
    (checkpoint, meta)
}

#[test]
fn checkpoint_descriptions() {
    let scratch = Scratch::new();
    let (seed, _) = seed_checkpoint(&scratch);
    let bytes = std::fs::read(&seed.meta).unwrap();
    let case = Checkpoint::at(&scratch.path("case"));
    std::fs::copy(&seed.model, &case.model).unwrap();
    let summary = check_loader("checkpoint-json", &bytes, cases_from_env(), |bytes| {
        std::fs::write(&case.meta, bytes).unwrap();
        case.read_meta()
    });
    report("checkpoint descriptions", summary);
}

#[test]
fn checkpoint_weights() {
    let scratch = Scratch::new();
    let (seed, meta) = seed_checkpoint(&scratch);
    let bytes = std::fs::read(&seed.model).unwrap();
    let case = Checkpoint::at(&scratch.path("case"));
    std::fs::copy(&seed.meta, &case.meta).unwrap();
    let (vs, _model) = tiny_model(&meta.config);
    let summary = check_loader("checkpoint-weights", &bytes, cases_from_env(), |bytes| {
        std::fs::write(&case.model, bytes).unwrap();
        case.load_model(&vs)
    });
    report("checkpoint weights", summary);
}

#[test]
fn optimizer_states() {
    let scratch = Scratch::new();
    let (seed, meta) = seed_checkpoint(&scratch);
    let bytes = std::fs::read(&seed.optimizer).unwrap();
    let case = Checkpoint::at(&scratch.path("case"));
    let (vs, _model) = tiny_model(&meta.config);
    let mut optimizer = AdamW::new(&vs, AdamWConfig::default()).unwrap();
    let summary = check_loader("optimizer-state", &bytes, cases_from_env(), |bytes| {
        std::fs::write(&case.optimizer, bytes).unwrap();
        case.load_optimizer(&mut optimizer)
    });
    report("optimizer states", summary);
}

#[test]
fn gpt_configs() {
    let scratch = Scratch::new();
    let seed = serde_json::to_vec_pretty(&GptConfig { drop_rate_attn: Some(0.2), ..tiny_config() }).unwrap();
    let summary = check_loader("gpt-config", &seed, cases_from_env(), |bytes| {
        GptConfig::load(&scratch.write("config.json", bytes))
    });
    report("GPT configs", summary);
}

/// A tiny GPT-2 in the Hugging Face layout (vocabulary 64, 8 positions, width 8, 1 layer).
fn seed_hf_checkpoint(dir: &Path) {
    let config = r#"{"activation_function": "gelu_new", "layer_norm_epsilon": 1e-05, "n_embd": 8, "n_head": 2,
        "n_inner": null, "n_layer": 1, "n_positions": 8, "resid_pdrop": 0.1, "tie_word_embeddings": true,
        "vocab_size": 64}"#;
    std::fs::write(dir.join("config.json"), config).unwrap();
    let shapes: [(&str, &[i64]); 14] = [
        ("transformer.wte.weight", &[64, 8]),
        ("transformer.wpe.weight", &[8, 8]),
        ("transformer.h.0.ln_1.weight", &[8]),
        ("transformer.h.0.ln_1.bias", &[8]),
        ("transformer.h.0.attn.c_attn.weight", &[8, 24]),
        ("transformer.h.0.attn.c_attn.bias", &[24]),
        ("transformer.h.0.attn.c_proj.weight", &[8, 8]),
        ("transformer.h.0.attn.c_proj.bias", &[8]),
        ("transformer.h.0.ln_2.weight", &[8]),
        ("transformer.h.0.ln_2.bias", &[8]),
        ("transformer.h.0.mlp.c_fc.weight", &[8, 32]),
        ("transformer.h.0.mlp.c_fc.bias", &[32]),
        ("transformer.h.0.mlp.c_proj.weight", &[32, 8]),
        ("transformer.h.0.mlp.c_proj.bias", &[8]),
    ];
    let tensors: Vec<(String, Tensor)> = shapes
        .iter()
        .map(|(name, shape)| (name.to_string(), Tensor::ones(*shape, (Kind::Float, Device::Cpu))))
        .chain([
            ("transformer.ln_f.weight".to_string(), Tensor::ones([8], (Kind::Float, Device::Cpu))),
            ("transformer.ln_f.bias".to_string(), Tensor::zeros([8], (Kind::Float, Device::Cpu))),
        ])
        .collect();
    Tensor::write_safetensors(&tensors, dir.join("model.safetensors")).unwrap();
}

#[test]
fn hugging_face_configs() {
    let scratch = Scratch::new();
    seed_hf_checkpoint(scratch.dir.path());
    let seed = std::fs::read(scratch.path("config.json")).unwrap();
    let summary = check_loader("hf-config", &seed, cases_from_env(), |bytes| {
        scratch.write("config.json", bytes);
        Gpt2Weights::open(scratch.dir.path())
    });
    report("Hugging Face config.json", summary);
}

#[test]
fn hugging_face_weights() {
    let scratch = Scratch::new();
    seed_hf_checkpoint(scratch.dir.path());
    let weights = Gpt2Weights::open(scratch.dir.path()).unwrap();
    let (vs, _model) = tiny_model(&weights.config);
    let seed = std::fs::read(&weights.weights_path).unwrap();
    let summary = check_loader("hf-weights", &seed, cases_from_env(), |bytes| {
        std::fs::write(&weights.weights_path, bytes).unwrap();
        weights.load_into(&vs)
    });
    report("Hugging Face model.safetensors", summary);
}

#[test]
fn classifier_descriptions() {
    let seed = br#"{"num_classes": 2, "max_length": 120, "position": "Last", "lora": {"rank": 16, "alpha": 16.0}}"#;
    let summary = check_loader("classifier-json", seed, cases_from_env(), |bytes| {
        ClassifierMeta::parse(std::str::from_utf8(bytes)?)
    });
    report("classifier descriptions", summary);
}

/// The first `lines` lines of a bundled data set.
fn bundled_head(name: &str, lines: usize) -> Vec<u8> {
    let text = std::fs::read_to_string(shared::data::bundled_dir().join(name)).unwrap();
    text.lines().take(lines).collect::<Vec<_>>().join("\n").into_bytes()
}

#[test]
fn spam_collections() {
    let scratch = Scratch::new();
    let seed = bundled_head(SMS_SPAM_COLLECTION.name, 200);
    let summary = check_loader("spam-tsv", &seed, cases_from_env(), |bytes| {
        let locator = DataLocator { explicit: Some(scratch.write("spam.tsv", bytes)), ..DataLocator::from_env(None) };
        let splits = classification::prepare(&locator)?;
        classification::loaders(&splits, classification::Padding::Longest, 1024, 8)
    });
    report("spam collections", summary);
}

#[test]
fn text_data() {
    let scratch = Scratch::new();
    let seed = bundled_head(THE_VERDICT.name, 30);
    let summary = check_loader("text", &seed, cases_from_env(), |bytes| -> Result<usize> {
        let locator = DataLocator { explicit: Some(scratch.write("text.txt", bytes)), ..DataLocator::from_env(None) };
        let text = locator.read_to_string(&THE_VERDICT)?;
        let loader = DataLoader::new(GptDataset::from_text(&text, 16, 16)?, 2, false, false)?;
        Ok(loader.iter().count())
    });
    report("text data", summary);
}
