//! `--weights DIR|HUB_ID`: a pretrained model in the Hugging Face layout, whichever family
//! its `config.json` names: OpenAI's GPT-2 (section 5.5) or Llama 3, Qwen3 and Gemma 3
//! ([`super::families`]). A hub id is fetched into (or read from) the Hugging Face cache.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tch::nn::VarStore;

use super::families::{Family, FamilyWeights, FAMILY_MODEL_TYPES};
use super::gpt2::{gpt2_hub_id, Gpt2Weights};
use super::hub::HubFile;
use crate::model::GptConfig;

/// The files beside the weights that tokenizers and chat templates read, fetched with them
/// when present in the repository.
const COMPANION_FILES: [&str; 4] =
    ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja"];

/// A pretrained checkpoint, ready to load.
#[derive(Debug, Clone)]
pub enum Pretrained {
    Gpt2(Gpt2Weights),
    Family(FamilyWeights),
}

impl Pretrained {
    /// `spec`: a folder, a GPT-2 name (`gpt2-small`, ...), or a hub id (`Qwen/Qwen3-0.6B`).
    pub fn resolve(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Self::open(path);
        }
        if path.exists() {
            bail!("{spec} is not a folder: --weights takes a folder with config.json and the weights, or a hub id");
        }
        if gpt2_hub_id(spec).is_some() {
            return Ok(Self::Gpt2(Gpt2Weights::resolve(spec)?));
        }
        if !spec.contains('/') {
            bail!(
                "--weights {spec}: no such folder, and neither a GPT-2 name (gpt2-small, gpt2-medium, gpt2-large, \
                 gpt2-xl) nor a hub id (organisation/name, e.g. Qwen/Qwen3-0.6B)"
            );
        }
        let config = HubFile::new(spec, "config.json").fetch()?;
        let dir = config.parent().context("a cached file sits in a snapshot folder")?.to_path_buf();
        if model_type(&read_config(&dir)?) == "gpt2" {
            // Any GPT-2 repository, not only the book's four names.
            HubFile::new(spec, "model.safetensors").fetch()?;
            return Self::open(&dir);
        }
        match HubFile::new(spec, "model.safetensors.index.json").fetch() {
            Ok(index) => {
                for shard in FamilyWeights::shards(&index)? {
                    HubFile::new(spec, &shard).fetch()?;
                }
            }
            Err(_) => {
                HubFile::new(spec, "model.safetensors").fetch()?;
            }
        }
        for file in COMPANION_FILES {
            // Optional: a repository without a chat template has none to fetch.
            let _ = HubFile::new(spec, file).fetch();
        }
        Self::open(&dir)
    }

    /// A local folder, by the `model_type` of its `config.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let json = read_config(dir)?;
        match model_type(&json) {
            "gpt2" => Ok(Self::Gpt2(Gpt2Weights::open(dir)?)),
            other if Family::of_model_type(other).is_some() => Ok(Self::Family(FamilyWeights::open(dir, &json)?)),
            other => bail!(
                "{}: model_type {other} is not one this project reads (gpt2, {})",
                dir.join("config.json").display(),
                FAMILY_MODEL_TYPES.join(", ")
            ),
        }
    }

    /// The model the weights fit.
    pub fn config(&self) -> &GptConfig {
        match self {
            Self::Gpt2(weights) => &weights.config,
            Self::Family(weights) => &weights.config,
        }
    }

    pub fn load_into(&self, vs: &VarStore) -> Result<()> {
        match self {
            Self::Gpt2(weights) => weights.load_into(vs),
            Self::Family(weights) => weights.load_into(vs),
        }
    }

    /// What the weights are, for messages.
    pub fn description(&self) -> String {
        match self {
            Self::Gpt2(weights) => format!("GPT-2 weights {}", weights.weights_path.display()),
            Self::Family(weights) => format!("{} weights {}", weights.family.name(), weights.dir.display()),
        }
    }
}

/// A folder's `config.json`.
fn read_config(dir: &Path) -> Result<Value> {
    let path = dir.join("config.json");
    if !path.is_file() {
        bail!(
            "{} has no config.json: a checkpoint folder holds config.json and model.safetensors (or its shards)",
            dir.display()
        );
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// The `model_type` of a `config.json` (`gpt2` when it names none, as older GPT-2 configs
/// may not).
fn model_type(json: &Value) -> &str {
    json.get("model_type").and_then(Value::as_str).unwrap_or("gpt2")
}
