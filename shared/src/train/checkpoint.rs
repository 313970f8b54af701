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
//!
//! A save replaces the three files as one unit, with a journal as databases keep one: each
//! new file is written and flushed to disk under a temporary name (`NAME.*.partial`), then
//! the journal `NAME.commit` is created (one rename) to say that the new checkpoint is
//! complete, then the files are renamed over the old ones and the journal is removed. A
//! process killed before the journal leaves the old checkpoint (and partial files, which
//! the next save replaces or removes); killed after it, it leaves the new one half
//! renamed, which the next reader or writer finishes ([`Checkpoint::recover`]). Either way
//! one whole checkpoint is read, never the weights of one epoch with the optimizer of
//! another.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

use super::{AdamW, AdamWConfig};
use crate::model::{GptConfig, GptModel};
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

    /// Where the saved run stood.
    pub fn progress(&self) -> super::TrainProgress {
        super::TrainProgress { epoch: self.epoch, global_step: self.global_step, tokens_seen: self.tokens_seen }
    }
}

/// The three files of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub model: PathBuf,
    pub optimizer: PathBuf,
    pub meta: PathBuf,
}

/// What the journal `NAME.commit` records, by file name in the checkpoint's folder: the
/// files whose `.partial` copies are complete and replace them, and a file the new
/// checkpoint no longer has (an optimizer state).
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    replace: Vec<String>,
    remove: Vec<String>,
}

/// Set to an epoch number, a save of that epoch's checkpoint stops for good after its first
/// rename, having created `NAME.paused`: the fault tests kill the process there.
pub const PAUSE_IN_RENAMES_VAR: &str = "LLMS_TEST_PAUSE_IN_CHECKPOINT_RENAMES";

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

    /// Writes the model, the optimizer state when given, and `meta`, as one unit (see the
    /// module documentation): an interrupted save (killed, out of disk space) leaves either
    /// the previous checkpoint or the new one, and a failed write names its file.
    pub fn save(&self, vs: &VarStore, optimizer: Option<&AdamW>, meta: &CheckpointMeta) -> Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.recover()?;
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        named.extend(weights::mask_buffers(&meta.config));
        named.sort_by(|a, b| a.0.cmp(&b.0));
        write_safetensors(&self.model, &named)?;
        let [model, optimizer_file, meta_file] = self.file_names();
        let mut journal = Journal { replace: vec![model], remove: Vec::new() };
        match optimizer {
            Some(optimizer) => {
                write_safetensors(&self.optimizer, &optimizer.state_tensors())?;
                journal.replace.push(optimizer_file);
            }
            None => journal.remove.push(optimizer_file),
        }
        write_partial(&self.meta, |path| {
            std::fs::write(path, serde_json::to_string_pretty(meta)?).map_err(Into::into)
        })?;
        journal.replace.push(meta_file);
        // The commit point: from here on the new checkpoint is the one that counts.
        write_partial(&self.journal(), |path| {
            std::fs::write(path, serde_json::to_string(&journal)?).map_err(Into::into)
        })?;
        rename(&partial(&self.journal()), &self.journal())?;
        sync_dir(&dir)?;
        let pause = std::env::var(PAUSE_IN_RENAMES_VAR).ok().filter(|epoch| *epoch == meta.epoch.to_string());
        self.apply(&journal, pause.is_some())?;
        self.remove_stale_partials();
        Ok(())
    }

    /// Finishes a save that was interrupted after its commit point (a journal `NAME.commit`
    /// is present): renames what is left of its partial files and removes the journal. Safe
    /// to run while the saving process finishes the same renames; every read runs it first.
    pub fn recover(&self) -> Result<()> {
        let path = self.journal();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        let journal: Journal = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a checkpoint journal: delete it and the checkpoint", path.display()))?;
        let ours = self.file_names();
        ensure!(
            journal.replace.iter().chain(&journal.remove).all(|file| ours.contains(file)),
            "{} names files of another checkpoint",
            path.display()
        );
        self.apply(&journal, false).with_context(|| {
            format!("finishing the interrupted save of {} (it needs write access to its folder)", self.model.display())
        })
    }

    /// The commit's second half: the renames, the removal, then the journal's removal.
    fn apply(&self, journal: &Journal, pause: bool) -> Result<()> {
        let dir = self.dir();
        for (i, file) in journal.replace.iter().enumerate() {
            let file = dir.join(file);
            match std::fs::rename(partial(&file), &file) {
                Ok(()) => {}
                // Renamed already, by an earlier recovery or a reader that recovered it.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err).with_context(|| format!("writing {}", file.display())),
            }
            if pause && i == 0 {
                let _ = std::fs::write(self.stem_with(".paused"), "");
                std::thread::sleep(std::time::Duration::from_secs(600));
            }
        }
        for file in &journal.remove {
            let _ = std::fs::remove_file(dir.join(file));
        }
        sync_dir(&dir)?;
        if let Err(err) = std::fs::remove_file(self.journal()) {
            if err.kind() != std::io::ErrorKind::NotFound {
                return Err(err).with_context(|| format!("removing {}", self.journal().display()));
            }
        }
        sync_dir(&dir)
    }

    /// The three files' names, without their folder.
    fn file_names(&self) -> [String; 3] {
        [&self.model, &self.optimizer, &self.meta]
            .map(|path| path.file_name().map_or_else(String::new, |name| name.to_string_lossy().into_owned()))
    }

    /// Partial files that an earlier save, killed before its commit point, left and this one
    /// did not replace (a saving process only: a reader must not touch a save under way).
    fn remove_stale_partials(&self) {
        for file in [&self.model, &self.optimizer, &self.meta, &self.journal()] {
            let _ = std::fs::remove_file(partial(file));
        }
    }

    /// `NAME.commit`.
    fn journal(&self) -> PathBuf {
        self.stem_with(".commit")
    }

    fn stem_with(&self, suffix: &str) -> PathBuf {
        let name = self.meta.to_string_lossy();
        PathBuf::from(format!("{}{suffix}", name.strip_suffix(".json").unwrap_or(&name)))
    }

    fn dir(&self) -> PathBuf {
        match self.meta.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Reads and checks the JSON part.
    pub fn read_meta(&self) -> Result<CheckpointMeta> {
        self.recover()?;
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
        ensure!(
            meta.global_step >= -1 && meta.tokens_seen >= 0,
            "{} has a step count of {} and {} tokens seen: a run starts at step -1 with 0 tokens and counts up",
            self.meta.display(),
            meta.global_step,
            meta.tokens_seen
        );
        Ok(meta)
    }

    /// Loads the model weights into `vs` (every parameter present, shapes checked).
    pub fn load_model(&self, vs: &VarStore) -> Result<()> {
        self.recover()?;
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

    /// Exercise 5.4's resuming: the weights into `model` (checked as [`Checkpoint::load_into`]
    /// does) and the optimizer state into `optimizer`; returns where the saved run stood.
    pub fn resume(&self, vs: &VarStore, model: &GptModel, optimizer: &mut AdamW) -> Result<super::TrainProgress> {
        self.load_into(vs, model)?;
        self.load_optimizer(optimizer)?;
        Ok(self.read_meta()?.progress())
    }

    /// Restores the optimizer state into `optimizer`.
    pub fn load_optimizer(&self, optimizer: &mut AdamW) -> Result<()> {
        self.recover()?;
        if !self.optimizer.is_file() {
            bail!("{} is missing: this checkpoint has no optimizer state to resume from", self.optimizer.display());
        }
        let tensors = Tensor::read_safetensors(&self.optimizer)
            .with_context(|| format!("{} is not a readable safetensors file", self.optimizer.display()))?;
        optimizer.load_state_tensors(tensors).with_context(|| format!("in {}", self.optimizer.display()))
    }
}

/// Writes `named` to `path`'s temporary name.
fn write_safetensors(path: &Path, named: &[(String, Tensor)]) -> Result<()> {
    let cpu: Vec<(String, Tensor)> =
        named.iter().map(|(name, t)| (name.clone(), t.detach().to_device(tch::Device::Cpu).contiguous())).collect();
    write_partial(path, |tmp| Tensor::write_safetensors(&cpu, tmp).map_err(Into::into))
}

/// `PATH.partial`.
fn partial(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.partial", path.display()))
}

/// Runs `write` on `PATH.partial` and flushes it to disk (removed again when either fails).
fn write_partial(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = partial(path);
    let written = write(&tmp).and_then(|()| {
        std::fs::File::open(&tmp)?.sync_all()?;
        Ok(())
    });
    if let Err(err) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err.context(format!("writing {}", path.display())));
    }
    Ok(())
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).with_context(|| format!("writing {}", to.display()))
}

/// Flushes a folder's entries (the renames in it) to disk.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|dir| dir.sync_all()).with_context(|| format!("flushing {}", dir.display()))
}
