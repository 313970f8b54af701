//! Section 5.5: OpenAI's GPT-2 weights in the Hugging Face layout (`config.json` and
//! `model.safetensors`) mapped onto the book's `GptModel`:
//! - `wte`/`wpe` are the token and position embeddings; `ln_1`, `ln_2`, `ln_f` the norms
//!   (`weight` = scale, `bias` = shift);
//! - the Conv1D layers (`c_attn`, `c_proj`, `c_fc`) store weights as `[in, out]`, the
//!   transpose of `nn.Linear`'s; `c_attn` packs the query, key and value projections along
//!   its output dimension, so it is split in three;
//! - GPT-2 has biases on the query, key and value projections (`qkv_bias = true`) and ties
//!   the output head to `wte` (there is no `lm_head.weight` in the file).
//!
//! Buffers in older files (`attn.bias`, `attn.masked_bias`: the causal mask) are skipped.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use tch::nn::VarStore;

use super::hub::HubFile;
use super::{SafeTensorsFile, VarTargets};
use crate::model::GptConfig;

/// The book's model names and their Hugging Face hub ids.
pub const GPT2_HUB_IDS: [(&str, &str); 4] = [
    ("gpt2-small", "openai-community/gpt2"),
    ("gpt2-medium", "openai-community/gpt2-medium"),
    ("gpt2-large", "openai-community/gpt2-large"),
    ("gpt2-xl", "openai-community/gpt2-xl"),
];

/// The parts of a Hugging Face `GPT2Config` the model needs.
#[derive(Debug, Deserialize)]
struct HfGpt2Config {
    vocab_size: i64,
    n_positions: i64,
    n_embd: i64,
    n_layer: i64,
    n_head: i64,
    #[serde(default)]
    n_inner: Option<i64>,
    #[serde(default = "default_activation")]
    activation_function: String,
    #[serde(default = "default_epsilon")]
    layer_norm_epsilon: f64,
    #[serde(default = "default_dropout")]
    resid_pdrop: f64,
    #[serde(default = "default_true")]
    tie_word_embeddings: bool,
}

fn default_activation() -> String {
    "gelu_new".into()
}
fn default_epsilon() -> f64 {
    1e-5
}
fn default_dropout() -> f64 {
    0.1
}
fn default_true() -> bool {
    true
}

/// A GPT-2 checkpoint in the Hugging Face layout, ready to load.
#[derive(Debug, Clone)]
pub struct Gpt2Weights {
    pub config_path: PathBuf,
    pub weights_path: PathBuf,
    /// The book's config for these weights: context and sizes from `config.json`,
    /// `qkv_bias = true`, dropout `resid_pdrop` (0.1).
    pub config: GptConfig,
    tied_head: bool,
}

impl Gpt2Weights {
    /// `spec` is a folder holding `config.json` and `model.safetensors`, a hub id
    /// (`openai-community/gpt2`, `gpt2-medium`, ...), or a book model name (`gpt2-small`,
    /// `gpt2-medium`, `gpt2-large`, `gpt2-xl`). Hub files come from the Hugging Face cache,
    /// or are downloaded into it with a progress bar.
    pub fn resolve(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Self::open(path);
        }
        if path.exists() {
            bail!(
                "{spec} is not a folder: --weights takes a folder with config.json and model.safetensors, or a hub id"
            );
        }
        let repo = gpt2_hub_id(spec).with_context(|| {
            format!(
                "--weights {spec}: no such folder, and not a GPT-2 hub id ({})",
                GPT2_HUB_IDS.iter().map(|(name, id)| format!("{name} or {id}")).collect::<Vec<_>>().join(", ")
            )
        })?;
        let config_path = HubFile::new(&repo, "config.json").fetch()?;
        let weights_path = HubFile::new(&repo, "model.safetensors").fetch()?;
        Self::from_files(config_path, weights_path)
    }

    /// A local folder with `config.json` and `model.safetensors`.
    pub fn open(dir: &Path) -> Result<Self> {
        let (config_path, weights_path) = (dir.join("config.json"), dir.join("model.safetensors"));
        for file in [&config_path, &weights_path] {
            ensure!(
                file.is_file(),
                "{} has no {}: a GPT-2 checkpoint folder holds config.json and model.safetensors",
                dir.display(),
                file.file_name().unwrap_or_default().to_string_lossy()
            );
        }
        Self::from_files(config_path, weights_path)
    }

    fn from_files(config_path: PathBuf, weights_path: PathBuf) -> Result<Self> {
        let text =
            std::fs::read_to_string(&config_path).with_context(|| format!("reading {}", config_path.display()))?;
        let hf: HfGpt2Config =
            serde_json::from_str(&text).with_context(|| format!("{} is not a GPT-2 config", config_path.display()))?;
        let unsupported =
            |what: String| format!("{}: {what}, which the book's GPT model does not have", config_path.display());
        ensure!(
            matches!(hf.activation_function.as_str(), "gelu_new" | "gelu_pytorch_tanh"),
            unsupported(format!("activation {}", hf.activation_function))
        );
        ensure!(
            (hf.layer_norm_epsilon - 1e-5).abs() < 1e-12,
            unsupported(format!("LayerNorm eps {}", hf.layer_norm_epsilon))
        );
        ensure!(
            hf.n_inner.is_none_or(|n| n == 4 * hf.n_embd),
            unsupported("a feed-forward width other than 4 x n_embd".into())
        );
        let config = GptConfig {
            vocab_size: hf.vocab_size,
            context_length: hf.n_positions,
            emb_dim: hf.n_embd,
            n_heads: hf.n_head,
            n_layers: hf.n_layer,
            drop_rate: hf.resid_pdrop,
            qkv_bias: true,
            ..GptConfig::gpt2_small()
        };
        config.validate().with_context(|| format!("in {}", config_path.display()))?;
        Ok(Self { config_path, weights_path, config, tied_head: hf.tie_word_embeddings })
    }

    /// Copies the weights into `vs`, which holds a `GptModel` built from a config with the
    /// same sizes as [`Gpt2Weights::config`] (dropout may differ). Tensors are read one at a
    /// time; anything missing, mismatched or unknown is reported in one error.
    pub fn load_into(&self, vs: &VarStore) -> Result<()> {
        let mut file = SafeTensorsFile::open(&self.weights_path)?;
        let names: Vec<String> = file.tensors.keys().cloned().collect();
        let has_head = names.iter().any(|n| n.trim_start_matches("transformer.") == "lm_head.weight");
        let mut targets = VarTargets::new(vs);
        for name in &names {
            let short = name.strip_prefix("transformer.").unwrap_or(name);
            let Some(mapping) = Mapping::of(short) else {
                targets.unexpected(name);
                continue;
            };
            match mapping {
                Mapping::Skip => {}
                Mapping::Plain(target) => {
                    let tensor = file.read(name)?;
                    targets.fill(&target, &tensor, name)?;
                    if short == "wte.weight" && !has_head && self.tied_head {
                        targets.fill("out_head.weight", &tensor, name)?;
                    }
                }
                Mapping::Transposed(target) => {
                    let mut tensor = file.read(name)?;
                    expect_rank(&tensor, 2, name)?;
                    targets.fill(&target, &tensor.t_(), name)?
                }
                Mapping::QkvWeight(block) | Mapping::QkvBias(block) => {
                    let mut tensor = file.read(name)?;
                    let is_weight = matches!(mapping, Mapping::QkvWeight(_));
                    expect_rank(&tensor, if is_weight { 2 } else { 1 }, name)?;
                    if is_weight {
                        tensor = tensor.t_(); // [3E, E]: query rows, then key rows, then value rows
                    }
                    let parts = tensor.chunk(3, 0);
                    if parts.len() != 3 || parts[0].size() != parts[2].size() {
                        targets.fill(&format!("trf_blocks.{block}.att.W_query.weight"), &tensor, name)?;
                        continue;
                    }
                    let suffix = if is_weight { "weight" } else { "bias" };
                    for (part, projection) in parts.iter().zip(["W_query", "W_key", "W_value"]) {
                        targets.fill(&format!("trf_blocks.{block}.att.{projection}.{suffix}"), part, name)?;
                    }
                }
            }
        }
        targets.finish(&self.weights_path)
    }
}

/// A Conv1D weight must be a matrix and a bias a vector before it is transposed or split.
fn expect_rank(tensor: &tch::Tensor, rank: usize, name: &str) -> Result<()> {
    ensure!(tensor.dim() == rank, "tensor {name} has the shape {:?}, expected {rank} dimensions", tensor.size());
    Ok(())
}

/// Where one tensor of the Hugging Face file goes.
enum Mapping {
    Skip,
    Plain(String),
    Transposed(String),
    QkvWeight(usize),
    QkvBias(usize),
}

impl Mapping {
    fn of(name: &str) -> Option<Self> {
        let plain = |s: &str| Some(Self::Plain(s.to_string()));
        match name {
            "wte.weight" => return plain("tok_emb.weight"),
            "wpe.weight" => return plain("pos_emb.weight"),
            "ln_f.weight" => return plain("final_norm.scale"),
            "ln_f.bias" => return plain("final_norm.shift"),
            "lm_head.weight" => return plain("out_head.weight"),
            _ => {}
        }
        let rest = name.strip_prefix("h.")?;
        let (block, rest) = rest.split_once('.')?;
        let block: usize = block.parse().ok()?;
        let at = |s: &str| format!("trf_blocks.{block}.{s}");
        Some(match rest {
            "ln_1.weight" => Self::Plain(at("norm1.scale")),
            "ln_1.bias" => Self::Plain(at("norm1.shift")),
            "ln_2.weight" => Self::Plain(at("norm2.scale")),
            "ln_2.bias" => Self::Plain(at("norm2.shift")),
            "attn.c_attn.weight" => Self::QkvWeight(block),
            "attn.c_attn.bias" => Self::QkvBias(block),
            "attn.c_proj.weight" => Self::Transposed(at("att.out_proj.weight")),
            "attn.c_proj.bias" => Self::Plain(at("att.out_proj.bias")),
            "mlp.c_fc.weight" => Self::Transposed(at("ff.layers.0.weight")),
            "mlp.c_fc.bias" => Self::Plain(at("ff.layers.0.bias")),
            "mlp.c_proj.weight" => Self::Transposed(at("ff.layers.2.weight")),
            "mlp.c_proj.bias" => Self::Plain(at("ff.layers.2.bias")),
            "attn.bias" | "attn.masked_bias" => Self::Skip,
            _ => return None,
        })
    }
}

/// The hub repository for a book model name or a GPT-2 hub id.
pub(crate) fn gpt2_hub_id(spec: &str) -> Option<String> {
    let lower = spec.to_ascii_lowercase();
    let short = lower.strip_prefix("openai-community/").unwrap_or(&lower);
    let short = if short == "gpt2" { "gpt2-small" } else { short };
    GPT2_HUB_IDS.iter().find(|(name, _)| *name == short).map(|(_, id)| id.to_string())
}
