//! Section 5.2's pretraining run on The Verdict, end to end: the 90/10 split, the loaders,
//! the initial losses, `train_model_simple`, and the run's outputs (checkpoint, metrics,
//! loss plot). Resuming from a checkpoint is exercise 5.4.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::recipe::{Reporter, TrainDefaults, TrainFlags};
use shared::core::device::{device_name, seed_everything};
use shared::data::dataset::{DataLoader, GptDataset};
use shared::model::{GptConfig, GptModel};
use shared::train::distributed::{Backend, DataParallel, ProcessGroup, Rendezvous, ShardedLoader, BUCKET_BYTES};
use shared::train::{
    calc_loss_loader, check_token_ids, train_model, train_model_simple, AdamW, AdamWConfig, Checkpoint, CheckpointMeta,
    TrainHistory, TrainHooks, TrainProgress, TrainSettings,
};
use tch::nn::VarStore;
use tch::Device;

/// The prompt the book samples after every epoch.
pub const START_CONTEXT: &str = "Every effort moves you";

/// GPT-2 small with the context of 256 tokens the book trains with (`GPT_CONFIG_124M`).
pub fn book_config() -> GptConfig {
    GptConfig { context_length: 256, ..GptConfig::gpt2_small() }
}

/// Chapter 5's training defaults (the book's): 10 epochs, batches of 2, an evaluation every
/// 5 steps on 5 batches; AdamW's learning rate and weight decay are the book's 0.0004 and 0.1
/// ([`AdamWConfig::default`]), or a resumed checkpoint's.
#[derive(Debug, Clone, PartialEq)]
pub struct Chapter5;

impl TrainDefaults for Chapter5 {
    const EPOCHS: &'static str = "10";
    const EPOCHS_HELP: Option<&'static str> = Some("Epochs to train (more epochs when resuming)");
    const LR: Option<&'static str> = None;
    const LR_HELP: Option<&'static str> = Some("AdamW learning rate [default: 0.0004, or the checkpoint's]");
    const WEIGHT_DECAY: Option<&'static str> = None;
    const WEIGHT_DECAY_HELP: Option<&'static str> = Some("AdamW weight decay [default: 0.1, or the checkpoint's]");
    const BATCH_SIZE: &'static str = "2";
    const EVAL_FREQ: &'static str = "5";
}

/// A run's settings; the defaults are the book's.
#[derive(Debug, Clone, Serialize)]
pub struct PretrainOptions {
    /// The model to train; with `resume`, it must agree with the checkpoint's when given.
    pub config: Option<GptConfig>,
    /// Epochs, AdamW's settings (unset: the book's or, when resuming, the checkpoint's),
    /// batches, evaluations and the mode (book or fast).
    #[serde(flatten)]
    pub train: TrainFlags<Chapter5>,
    /// Share of the text's characters used for training.
    pub train_ratio: f64,
    pub start_context: String,
    pub epoch_seed: Option<u64>,
    pub resume: Option<PathBuf>,
    /// Compute the losses of the untrained model first (section 5.1.3).
    pub initial_losses: bool,
    pub verbose: bool,
    /// Train as one rank of a data-parallel group (appendix A.9.3 on chapter 5's run).
    #[serde(skip)]
    pub ddp: Option<DdpSettings>,
}

/// How a data-parallel rank joins its group; the rank itself comes from the environment
/// (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), as the launcher or torchrun set it.
#[derive(Debug, Clone, Copy)]
pub struct DdpSettings {
    /// `None`: NCCL on CUDA, Gloo on the CPU.
    pub backend: Option<Backend>,
    /// How long a rank waits for the others, at the start and at each step.
    pub timeout: Duration,
}

impl Default for PretrainOptions {
    fn default() -> Self {
        Self {
            config: None,
            train: TrainFlags::defaults(),
            train_ratio: 0.9,
            start_context: START_CONTEXT.into(),
            epoch_seed: None,
            resume: None,
            initial_losses: true,
            verbose: true,
            ddp: None,
        }
    }
}

/// What a run did and wrote.
#[derive(Debug, Clone, Serialize)]
pub struct PretrainReport {
    pub config: GptConfig,
    pub device: String,
    pub train_batches: usize,
    pub val_batches: usize,
    pub initial_train_loss: Option<f64>,
    pub initial_val_loss: Option<f64>,
    pub resumed_from: Option<PathBuf>,
    pub progress: TrainProgress,
    pub history: TrainHistory,
    pub checkpoint: PathBuf,
    pub metrics: PathBuf,
    pub plot: PathBuf,
}

/// Splits `text` at `ratio` of its characters (Unicode scalar values, as Python's `len`).
pub fn split_text(text: &str, ratio: f64) -> Result<(&str, &str)> {
    ensure!(ratio > 0.0 && ratio < 1.0, "the training share must be between 0 and 1, got {ratio}");
    let split = (ratio * text.chars().count() as f64) as usize;
    let byte = text.char_indices().nth(split).map_or(text.len(), |(i, _)| i);
    Ok(text.split_at(byte))
}

/// The book's loaders: windows of `context` tokens with stride `context`; training batches
/// shuffled with `drop_last`, validation batches in order and complete.
pub fn loaders(text: &str, train_ratio: f64, context: usize, batch_size: usize) -> Result<(DataLoader, DataLoader)> {
    let (train_text, val_text) = split_text(text, train_ratio)?;
    let dataset = |part: &str, name: &str| -> Result<GptDataset> {
        let dataset = GptDataset::from_text(part, context, context)?;
        ensure!(
            !dataset.is_empty(),
            "the {name} text is too short for a context of {context} tokens: use a longer text or a smaller --context-length"
        );
        Ok(dataset)
    };
    let train = DataLoader::new(dataset(train_text, "training")?, batch_size, true, true)?;
    ensure!(
        !train.is_empty(),
        "the training text has fewer than batch_size ({batch_size}) windows of {context} tokens"
    );
    let val = DataLoader::new(dataset(val_text, "validation")?, batch_size, false, false)?;
    Ok((train, val))
}

/// Runs (or resumes) the pretraining on `text` and writes the checkpoint, `metrics.json`
/// and `losses.png` into the context's output folder.
pub fn run(context: &RunContext, text: &str, options: &PretrainOptions) -> Result<PretrainReport> {
    let (resumed, config) = resolve_config(options)?;
    context.create_out_dir()?;
    let (ranks, device) = Ranks::join(options.ddp.as_ref(), context.device)?;
    let reporter = Reporter::new(&context.out_dir, options.verbose && ranks.lead());
    let flags = &options.train;
    let (train_loader, val_loader) =
        loaders(text, options.train_ratio, config.context_length as usize, flags.batch_size)?;
    ranks.describe_batches(&train_loader, &val_loader, device, &reporter)?;
    let initial = (options.initial_losses && resumed.is_none() && ranks.lead())
        .then(|| initial_losses(context.seed, &config, device, &train_loader, &val_loader, &reporter))
        .transpose()?;

    // Section 5.2: a fresh seed-123 model (or the checkpoint's), AdamW, and training.
    seed_everything(context.seed);
    let vs = VarStore::new(device);
    let mut model = GptModel::new(&vs.root(), &config)?;
    let base = resumed.as_ref().map_or_else(AdamWConfig::default, |(_, meta)| meta.optimizer);
    let mut optimizer = flags.optimizer(&vs, &mut model, base)?;
    let (mut progress, mut epoch_seed) = (TrainProgress::default(), options.epoch_seed);
    if let Some(resumed) = &resumed {
        (progress, epoch_seed) = resume(resumed, &vs, &model, &mut optimizer, epoch_seed, context.seed, &reporter)?;
    }
    let lead = ranks.lead();
    let start_context = Some(options.start_context.clone()).filter(|s| !s.is_empty() && lead);
    let settings = TrainSettings {
        // The other ranks neither evaluate nor print samples.
        eval_freq: if lead { flags.eval_freq } else { usize::MAX },
        epoch_seed,
        // A resumed run's schedule counts the steps it has taken.
        schedule: flags.schedule(&optimizer, progress.global_step.saturating_add(1), train_loader.len())?,
        ..flags.settings(start_context, options.verbose && lead, &optimizer, train_loader.len())?
    };
    // After every epoch the checkpoint is replaced (each file written under a temporary name,
    // then renamed), so a run killed midway can resume from its last complete epoch.
    let checkpoint = Checkpoint::at(&reporter.path("checkpoint"));
    let mut save = |progress: &TrainProgress, optimizer: &AdamW| {
        let meta = CheckpointMeta::new(&config, progress, optimizer.config, context.seed, epoch_seed);
        if lead {
            checkpoint.save(&vs, Some(optimizer), &meta)?;
        }
        Ok(())
    };
    let run = Training { vs: &vs, model: &model, settings: &settings, seed: context.seed, reporter: &reporter };
    let history = ranks.train(&run, &mut optimizer, (&train_loader, &val_loader), &mut progress, &mut save)?;
    if flags.epochs == 0 {
        save(&progress, &optimizer)?;
    }
    let report = PretrainReport {
        config,
        device: device_name(device),
        train_batches: train_loader.len(),
        val_batches: val_loader.len(),
        initial_train_loss: initial.map(|(train, _)| train),
        initial_val_loss: initial.map(|(_, val)| val),
        resumed_from: resumed.map(|(path, _)| path),
        progress,
        history,
        checkpoint: checkpoint.model.clone(),
        metrics: reporter.path("metrics.json"),
        plot: reporter.path("losses.png"),
    };
    if ranks.lead() {
        reporter.finish(&report, &report.checkpoint, (&report.plot, flags.epochs, &report.history))?;
    }
    Ok(report)
}

/// The checkpoint to resume (if any) and the model to train: the checkpoint's, the flags',
/// or the book's.
fn resolve_config(options: &PretrainOptions) -> Result<(Option<(PathBuf, CheckpointMeta)>, GptConfig)> {
    let resumed = match &options.resume {
        Some(path) => Some((path.clone(), read_resume_meta(path, options)?)),
        None => None,
    };
    let config = match (&resumed, &options.config) {
        (Some((_, meta)), _) => meta.config.clone(),
        (None, Some(config)) => config.clone(),
        (None, None) => book_config(),
    };
    config.validate()?;
    Ok((resumed, config))
}

/// Exercise 5.4: the checkpoint's weights, optimizer state and progress; its epoch seed
/// unless the flags give one. Returns the progress and the epoch seed.
fn resume(
    (path, meta): &(PathBuf, CheckpointMeta),
    vs: &VarStore,
    model: &GptModel,
    optimizer: &mut AdamW,
    epoch_seed: Option<u64>,
    seed: u64,
    reporter: &Reporter,
) -> Result<(TrainProgress, Option<u64>)> {
    let progress = Checkpoint::at(path).resume(vs, model, optimizer)?;
    let epoch_seed = epoch_seed.or(meta.epoch_seed);
    reporter.say(format!(
        "Resuming {} after epoch {} (step {}, {} tokens seen)",
        path.display(),
        meta.epoch,
        meta.global_step,
        meta.tokens_seen
    ));
    if epoch_seed.is_none() {
        // The generator state at the end of the saved run cannot be recovered: start from
        // the seed (see the README's note on exercise 5.4).
        seed_everything(seed);
    }
    Ok((progress, epoch_seed))
}

/// Section 5.1.3: the untrained model's losses (a seed-123 model, every batch).
fn initial_losses(
    seed: u64,
    config: &GptConfig,
    device: Device,
    train: &DataLoader,
    val: &DataLoader,
    reporter: &Reporter,
) -> Result<(f64, f64)> {
    seed_everything(seed);
    let vs = VarStore::new(device);
    let model = GptModel::new(&vs.root(), config)?;
    check_token_ids(&model, &[("training", train), ("validation", val)])?;
    seed_everything(seed);
    let train_loss = calc_loss_loader(&model, train, None, device);
    let val_loss = calc_loss_loader(&model, val, None, device);
    reporter.say(format!("Training loss: {train_loss}\nValidation loss: {val_loss}"));
    Ok((train_loss, val_loss))
}

/// What training works on besides the optimizer, the data and the progress.
struct Training<'a> {
    vs: &'a VarStore,
    model: &'a GptModel,
    settings: &'a TrainSettings,
    seed: u64,
    reporter: &'a Reporter,
}

/// The processes of a run: this one alone, or the ranks of a data-parallel group (appendix
/// A.9.3), of which rank 0 logs, evaluates and writes files.
struct Ranks {
    group: Option<ProcessGroup>,
}

impl Ranks {
    /// Joins the data-parallel group the environment describes when `ddp` is given; on GPUs
    /// each process takes its own, as `torch.cuda.set_device(local_rank)`.
    fn join(ddp: Option<&DdpSettings>, device: Device) -> Result<(Self, Device)> {
        let Some(ddp) = ddp else {
            return Ok((Self { group: None }, device));
        };
        let rendezvous = Rendezvous::from_env()?.context(
            "a data-parallel run needs RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT: start it with \
             `train --ddp --nproc-per-node N`, which sets them, or set them on every machine",
        )?;
        let backend = ddp.backend.unwrap_or(if device.is_cuda() { Backend::Nccl } else { Backend::Gloo });
        let group = ProcessGroup::new(&rendezvous, backend, ddp.timeout)?;
        let device = if device.is_cuda() { Device::Cuda(rendezvous.local_rank) } else { device };
        Ok((Self { group: Some(group) }, device))
    }

    /// Rank 0, or the only process.
    fn lead(&self) -> bool {
        self.group.as_ref().is_none_or(|group| group.rank == 0)
    }

    fn world_size(&self) -> usize {
        self.group.as_ref().map_or(1, |group| group.world_size)
    }

    /// Prints the batches (and how the ranks share them), after checking that every rank
    /// gets batches.
    fn describe_batches(
        &self,
        train: &DataLoader,
        val: &DataLoader,
        device: Device,
        reporter: &Reporter,
    ) -> Result<()> {
        let (batch_size, context_tokens) = (train.batch_size(), train.dataset().max_length());
        if self.group.is_some() {
            let world_size = self.world_size();
            reporter.say(format!(
                "Data-parallel training: {world_size} processes, each on its share of every epoch ({batch_size} x \
                 {context_tokens} tokens per process and step)"
            ));
            ensure!(
                train.dataset().len() >= world_size * batch_size,
                "the training text has too few windows for {world_size} processes with batches of {batch_size}"
            );
        }
        reporter.say(format!(
            "{} training and {} validation batches of {batch_size} x {context_tokens} tokens on {}",
            train.len(),
            val.len(),
            device_name(device)
        ));
        Ok(())
    }

    /// Section 5.2's `train_model_simple`; across ranks, with rank 0's weights everywhere,
    /// each rank on its shard of every epoch and each step's gradients averaged over the ranks.
    fn train(
        &self,
        run: &Training,
        optimizer: &mut AdamW,
        (train, val): (&DataLoader, &DataLoader),
        progress: &mut TrainProgress,
        save: &mut dyn FnMut(&TrainProgress, &AdamW) -> Result<()>,
    ) -> Result<TrainHistory> {
        let (model, settings, device) = (run.model, run.settings, run.vs.device());
        let history = match &self.group {
            None => train_model_simple(model, optimizer, train, val, settings, progress, device, save)?,
            Some(group) => {
                let mut parallel = DataParallel::new(group, &run.vs.trainable_variables(), BUCKET_BYTES)?;
                let shard = ShardedLoader::new(train, group, run.seed);
                let mut average = || parallel.average_gradients(group);
                let mut hooks = TrainHooks::book(save);
                hooks.after_backward = Some(&mut average);
                let history = train_model(model, optimizer, &shard, val, settings, progress, device, hooks)?;
                run.reporter.say(format!(
                    "All-reduce of the gradients ({} bucket(s) per step): {:.2} s, {:.1} ms per step",
                    parallel.bucket_count(),
                    parallel.communication_seconds,
                    1e3 * parallel.communication_seconds / parallel.steps.max(1) as f64
                ));
                group.barrier()?;
                history
            }
        };
        let world_size = self.world_size();
        run.reporter.say(format!(
            "Training completed in {:.2} minutes ({:.0} tokens/s{})",
            history.train_seconds / 60.0,
            history.tokens_per_second * world_size as f64,
            if world_size > 1 { format!(" over {world_size} processes") } else { String::new() }
        ));
        Ok(history)
    }
}

/// The checkpoint to resume, checked against the flags.
fn read_resume_meta(path: &Path, options: &PretrainOptions) -> Result<CheckpointMeta> {
    let meta = Checkpoint::at(path).read_meta()?;
    if let Some(config) = &options.config {
        let differences = config.differences(&meta.config);
        if !differences.is_empty() {
            bail!(
                "checkpoint {} was trained with the model config {}, but the flags ask for {} (differing: {}); \
                 leave out --config/--context-length to resume with the checkpoint's",
                path.display(),
                serde_json::to_string(&meta.config)?,
                serde_json::to_string(config)?,
                differences.join(", ")
            );
        }
    }
    Ok(meta)
}
