//! Section 5.4: saving and loading a training run, model and optimizer, so that training
//! can resume (exercise 5.4).
//!
//! A checkpoint named `NAME` is three files side by side:
//! - `NAME.safetensors`: the model's parameters under the book's `state_dict()` names
//!   (`tok_emb.weight`, `trf_blocks.0.att.W_query.weight`, ...) plus the causal-mask buffers
//!   the book's `state_dict()` also holds, so the file loads into the book's PyTorch
//!   `GPTModel` with `load_state_dict`;
//! - `NAME.optimizer.safetensors`: AdamW's moments and step counts;
//! - `NAME.json`: [`CheckpointMeta`] (model config, where training stopped, optimizer settings).

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

use super::{AdamW, AdamWConfig};
use crate::gpt::{GptConfig, GptModel};
use crate::weights;

/// The version written into [`CheckpointMeta::format`].
pub const CHECKPOINT_FORMAT: u32 = 1;

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format: u32,
    pub config: GptConfig,
    /// Epochs completed.
    pub epoch: usize,
    /// The book's `global_step` after the last update (-1 before any).
    pub global_step: i64,
    pub tokens_seen: i64,
    pub optimizer: AdamWConfig,
    /// The seed the run started from (`--seed`).
    pub seed: u64,
    /// When set, epoch `e` (0-based) started with `manual_seed(epoch_seed + e)`, and a resumed
    /// run does the same, so that resuming reproduces an uninterrupted run exactly.
    pub epoch_seed: Option<u64>,
}

impl CheckpointMeta {
    /// The description of a run of `config` that has reached `progress` (current format).
    pub fn new(
        config: &GptConfig,
        progress: &super::TrainProgress,
        optimizer: AdamWConfig,
        seed: u64,
        epoch_seed: Option<u64>,
    ) -> Self {
        Self {
            format: CHECKPOINT_FORMAT,
            config: config.clone(),
            epoch: progress.epoch,
            global_step: progress.global_step,
            tokens_seen: progress.tokens_seen,
            optimizer,
            seed,
            epoch_seed,
        }
    }
}

/// The three files of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub model: PathBuf,
    pub optimizer: PathBuf,
    pub meta: PathBuf,
}

impl Checkpoint {
    /// The files of the checkpoint that `path` names: `NAME.safetensors`, `NAME.json` or just
    /// `NAME`.
    pub fn at(path: &Path) -> Self {
        let name = path.to_string_lossy();
        let stem = name.strip_suffix(".safetensors").or_else(|| name.strip_suffix(".json")).unwrap_or(&name);
        Self {
            model: PathBuf::from(format!("{stem}.safetensors")),
            optimizer: PathBuf::from(format!("{stem}.optimizer.safetensors")),
            meta: PathBuf::from(format!("{stem}.json")),
        }
    }

    /// Writes the model, the optimizer state when given, and `meta`. Every file is written in
    /// full under a temporary name (`NAME.*.partial`) first and only then renamed over the
    /// old one, the metadata last: a save that is interrupted (killed, out of disk space)
    /// leaves the previous checkpoint in place, and a failed write names its file.
    pub fn save(&self, vs: &VarStore, optimizer: Option<&AdamW>, meta: &CheckpointMeta) -> Result<()> {
        if let Some(dir) = self.meta.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        named.extend(weights::mask_buffers(&meta.config));
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut written = vec![write_safetensors(&self.model, &named)?];
        if let Some(optimizer) = optimizer {
            written.push(write_safetensors(&self.optimizer, &optimizer.state_tensors())?);
        }
        written.push(write_partial(&self.meta, |path| {
            std::fs::write(path, serde_json::to_string_pretty(meta)?).map_err(Into::into)
        })?);
        if optimizer.is_none() {
            let _ = std::fs::remove_file(&self.optimizer);
        }
        for (partial, path) in written {
            std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// Reads and checks the JSON part.
    pub fn read_meta(&self) -> Result<CheckpointMeta> {
        let text = std::fs::read_to_string(&self.meta).with_context(|| {
            format!(
                "cannot read the checkpoint metadata {} (a checkpoint is NAME.safetensors + NAME.json)",
                self.meta.display()
            )
        })?;
        let meta: CheckpointMeta = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a checkpoint description", self.meta.display()))?;
        ensure!(
            meta.format == CHECKPOINT_FORMAT,
            "{} has checkpoint format {}, this version reads format {CHECKPOINT_FORMAT}",
            self.meta.display(),
            meta.format
        );
        meta.config.validate().with_context(|| format!("in {}", self.meta.display()))?;
        Ok(meta)
    }

    /// Loads the model weights into `vs` (every parameter present, shapes checked).
    pub fn load_model(&self, vs: &VarStore) -> Result<()> {
        weights::load_state_dict(vs, &self.model)
    }

    /// Loads the weights into `model` (built at the root of `vs`) after checking that the
    /// checkpoint's config describes the same architecture: every field is compared but the
    /// dropout rates, so that options with the same parameters (post-norm, a mask) cannot
    /// slip through; the message names the fields that differ.
    pub fn load_into(&self, vs: &VarStore, model: &GptModel) -> Result<()> {
        let meta = self.read_meta()?;
        let differences = model.cfg.architecture_differences(&meta.config);
        ensure!(
            differences.is_empty(),
            "{} holds a model whose config differs from this one in {}",
            self.meta.display(),
            differences.join(", ")
        );
        self.load_model(vs)
    }

    /// Restores the optimizer state into `optimizer`.
    pub fn load_optimizer(&self, optimizer: &mut AdamW) -> Result<()> {
        if !self.optimizer.is_file() {
            bail!("{} is missing: this checkpoint has no optimizer state to resume from", self.optimizer.display());
        }
        let tensors = Tensor::read_safetensors(&self.optimizer)
            .with_context(|| format!("{} is not a readable safetensors file", self.optimizer.display()))?;
        optimizer.load_state_tensors(tensors).with_context(|| format!("in {}", self.optimizer.display()))
    }
}

/// Writes `named` to `path`'s temporary name; returns (temporary, final) paths.
fn write_safetensors(path: &Path, named: &[(String, Tensor)]) -> Result<(PathBuf, PathBuf)> {
    let cpu: Vec<(String, Tensor)> =
        named.iter().map(|(name, t)| (name.clone(), t.detach().to_device(tch::Device::Cpu).contiguous())).collect();
    write_partial(path, |tmp| Tensor::write_safetensors(&cpu, tmp).map_err(Into::into))
}

/// Runs `write` on `PATH.partial` (removed again when the write fails).
fn write_partial(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<(PathBuf, PathBuf)> {
    let tmp = PathBuf::from(format!("{}.partial", path.display()));
    if let Err(err) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err.context(format!("writing {}", path.display())));
    }
    Ok((tmp, path.to_path_buf()))
}
