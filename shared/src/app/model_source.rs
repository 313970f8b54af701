//! Where a model's weights come from, for every command that takes a model: a checkpoint
//! of ours or a book `model.pth` (`--checkpoint`), OpenAI's GPT-2 (`--weights`), or a freshly
//! initialised model of a given config (seeded, as the book's `torch.manual_seed(123)`); and
//! the fine-tuning chapters' starting point ([`Init`], chosen by the `--init` flags).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tch::{nn::VarStore, Device};

use crate::app::cli::RunContext;
use crate::core::device::seed_everything;
use crate::model::{GptConfig, GptModel};
use crate::train::{Checkpoint, CheckpointMeta};
use crate::weights::{infer_config, load_state_dict, state_dict_shapes, Pretrained};

#[derive(Debug, Clone)]
pub enum ModelSource {
    /// `NAME.safetensors`/`NAME.json` (ours) or a `.pth` state dict (the book's `torch.save`),
    /// with the config the user gave, if any: it must agree with the checkpoint's, and it is
    /// what a `.pth` (which carries no config) is built with.
    Checkpoint { path: PathBuf, config: Option<GptConfig> },
    /// A Hugging Face folder or hub id: GPT-2, Llama 3, Qwen3 or Gemma 3.
    Weights(String),
    /// A new model with this config.
    Fresh(GptConfig),
}

/// A model ready to use, and what it came from.
pub struct LoadedModel {
    pub vs: VarStore,
    pub model: GptModel,
    /// The checkpoint's description, when it came from one of ours.
    pub meta: Option<CheckpointMeta>,
    pub description: String,
}

impl ModelSource {
    /// A checkpoint of ours or a book state dict, with its own config.
    pub fn checkpoint(path: impl Into<PathBuf>) -> Self {
        Self::Checkpoint { path: path.into(), config: None }
    }

    /// Builds the model on `device` (the generator seeded with `seed` first, so a fresh model
    /// is the book's) and loads its weights.
    pub fn load(&self, device: Device, seed: u64) -> Result<LoadedModel> {
        self.load_with_dropout(device, seed, None)
    }

    /// [`ModelSource::load`] with every dropout rate set to `drop_rate` when given (the
    /// fine-tuning chapters use 0).
    pub fn load_with_dropout(&self, device: Device, seed: u64, drop_rate: Option<f64>) -> Result<LoadedModel> {
        let mut pretrained = None;
        let (mut config, meta, description) = match self {
            Self::Checkpoint { path, config } => checkpoint_config(path, config.as_ref())?,
            Self::Weights(spec) => {
                let weights = Pretrained::resolve(spec)?;
                let (config, description) = (weights.config().clone(), weights.description());
                pretrained = Some(weights);
                (config, None, description)
            }
            Self::Fresh(config) => (config.clone(), None, format!("a new model (seed {seed})")),
        };
        if let Some(rate) = drop_rate {
            config = GptConfig {
                drop_rate: rate,
                drop_rate_emb: None,
                drop_rate_attn: None,
                drop_rate_shortcut: None,
                ..config
            };
        }
        seed_everything(seed);
        let vs = VarStore::new(device);
        let model = GptModel::new(&vs.root(), &config)?;
        match (self, pretrained) {
            (Self::Checkpoint { path, .. }, _) => load_state_dict(&vs, &weights_file(path))?,
            (_, Some(weights)) => weights.load_into(&vs)?,
            _ => {}
        }
        Ok(LoadedModel { vs, model, meta, description })
    }
}

/// The file holding a checkpoint's weights.
fn weights_file(path: &Path) -> PathBuf {
    if is_book_state_dict(path) {
        path.to_path_buf()
    } else {
        Checkpoint::at(path).model
    }
}

fn is_book_state_dict(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("pth" | "pt" | "bin"))
}

/// The config of a checkpoint: from its JSON when it has one, else `given`, else read off
/// the shapes. A `given` config must agree with the checkpoint's sizes.
fn checkpoint_config(path: &Path, given: Option<&GptConfig>) -> Result<(GptConfig, Option<CheckpointMeta>, String)> {
    let description = format!("checkpoint {}", path.display());
    let file = weights_file(path);
    if !file.is_file() {
        anyhow::bail!("checkpoint {} does not exist", file.display());
    }
    let checkpoint = Checkpoint::at(path);
    let (config, meta) = if !is_book_state_dict(path) && checkpoint.meta.is_file() {
        let meta = checkpoint.read_meta()?;
        (meta.config.clone(), Some(meta))
    } else {
        let inferred = match (infer_config(&state_dict_shapes(&file)?, given.map(|c| c.n_heads)), given) {
            (Ok(config), _) => config,
            (Err(err), Some(given)) => anyhow::bail!(
                "checkpoint {} does not match --config {}: {err}",
                file.display(),
                serde_json::to_string(given)?
            ),
            (Err(err), None) => {
                return Err(err).with_context(|| {
                    format!(
                        "{} has no JSON description, and its config cannot be inferred: pass --config",
                        file.display()
                    )
                })
            }
        };
        (inferred, None)
    };
    if let Some(given) = given {
        // A state dict without a description shows its sizes only: compare those.
        let differences = if meta.is_some() {
            config.architecture_differences(given)
        } else {
            let sizes = |c: &GptConfig| (c.vocab_size, c.context_length, c.emb_dim, c.n_heads, c.n_layers, c.qkv_bias);
            if sizes(given) == sizes(&config) {
                Vec::new()
            } else {
                vec!["sizes".to_string()]
            }
        };
        anyhow::ensure!(
            differences.is_empty(),
            "checkpoint {} holds a model with config {}, which does not match --config {} (differing: {})",
            file.display(),
            serde_json::to_string(&config)?,
            serde_json::to_string(given)?,
            differences.join(", ")
        );
    }
    // A state dict without a description takes the given config (its dropout rates, say).
    let config = if meta.is_none() { given.cloned().unwrap_or(config) } else { config };
    Ok((config, meta, description))
}

/// Where a fine-tuning run's starting model comes from (chapters 6 and 7, appendix E).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum Init {
    /// OpenAI's GPT-2 weights (a book model name, hub id or folder): the book's choice.
    Gpt2(String),
    /// A checkpoint of a language model (chapter 5's, say).
    Checkpoint(PathBuf),
    /// A new model of this preset or config file, seeded, with the QKV bias of OpenAI's models.
    Random(String),
}

impl Init {
    /// The model on the context's device, every dropout rate set to `drop_rate` when given
    /// (the fine-tuning chapters use 0). Without OpenAI's weights the error names the other
    /// starting points.
    pub fn load(&self, context: &RunContext, drop_rate: Option<f64>) -> Result<LoadedModel> {
        let source = match self {
            Self::Gpt2(spec) => ModelSource::Weights(spec.clone()),
            Self::Checkpoint(path) => ModelSource::checkpoint(path),
            Self::Random(spec) => {
                ModelSource::Fresh(GptConfig { qkv_bias: true, ..GptConfig::from_name_or_file(spec)? })
            }
        };
        let loaded = source.load_with_dropout(context.device, context.seed, drop_rate);
        match (self, loaded) {
            (Self::Gpt2(spec), Err(err)) => Err(err.context(format!(
                "OpenAI's GPT-2 weights ({spec}) are needed for this --init; without them, start from a \
                 checkpoint (--init checkpoint --checkpoint FILE, e.g. chapter 5's) or a randomly initialised \
                 model (--init random --config NAME|FILE)"
            ))),
            (_, loaded) => loaded,
        }
    }
}

/// The `--init`, `--weights`, `--checkpoint` and `--config` flags that choose an [`Init`],
/// shared by the fine-tuning binaries (a binary may change the `--init` default).
#[derive(clap::Args, Debug, Clone)]
pub struct InitArgs {
    /// Starting model: gpt2 (OpenAI's weights named by --weights), gpt2-small|medium|large|xl (those weights), checkpoint (--checkpoint FILE, e.g. chapter 5's) or random (seeded, --config)
    #[arg(long, global = true, default_value = "gpt2", value_parser = INIT_CHOICES)]
    pub init: String,
    /// With --init gpt2: which weights (gpt2-small|medium|large|xl, a hub id or a folder)
    #[arg(long, global = true, default_value = "gpt2-small")]
    pub weights: String,
    /// With --init checkpoint: the language-model checkpoint to start from
    #[arg(long, global = true, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// With --init random: a preset or JSON config file
    #[arg(long, global = true, default_value = "gpt2-small")]
    pub config: String,
}

/// The values `--init` takes.
pub const INIT_CHOICES: [&str; 7] =
    ["gpt2", "gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl", "checkpoint", "random"];

impl InitArgs {
    pub fn init(&self) -> Result<Init> {
        Ok(match (self.init.as_str(), &self.checkpoint) {
            ("gpt2", _) => Init::Gpt2(self.weights.clone()),
            ("checkpoint", Some(path)) => Init::Checkpoint(path.clone()),
            ("checkpoint", None) => anyhow::bail!("--init checkpoint needs --checkpoint FILE"),
            ("random", _) => Init::Random(self.config.clone()),
            (preset, _) => Init::Gpt2(preset.to_string()),
        })
    }
}
