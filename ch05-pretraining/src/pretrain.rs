//! Section 5.2's pretraining run on The Verdict, end to end: the 90/10 split, the loaders,
//! the initial losses, `train_model_simple`, and the run's outputs (checkpoint, metrics,
//! loss plot). Resuming from a checkpoint is exercise 5.4.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::core::device::{device_name, seed_everything};
use shared::data::dataset::{DataLoader, GptDataset};
use shared::model::{GptConfig, GptModel};
use shared::train::distributed::{Backend, DataParallel, ProcessGroup, Rendezvous, ShardedLoader, BUCKET_BYTES};
use shared::train::{
    calc_loss_loader, check_token_ids, train_model, train_model_simple, AdamW, AdamWConfig, Checkpoint, CheckpointMeta,
    TrainHistory, TrainHooks, TrainMode, TrainProgress, TrainSettings,
};
use tch::nn::VarStore;
use tch::Device;

/// The prompt the book samples after every epoch.
pub const START_CONTEXT: &str = "Every effort moves you";

/// GPT-2 small with the context of 256 tokens the book trains with (`GPT_CONFIG_124M`).
pub fn book_config() -> GptConfig {
    GptConfig { context_length: 256, ..GptConfig::gpt2_small() }
}

/// A run's settings; the defaults are the book's.
#[derive(Debug, Clone, Serialize)]
pub struct PretrainOptions {
    /// The model to train; with `resume`, it must agree with the checkpoint's when given.
    pub config: Option<GptConfig>,
    pub epochs: usize,
    /// AdamW's learning rate and weight decay; unset, the book's (or, when resuming, the
    /// checkpoint's).
    pub lr: Option<f64>,
    pub weight_decay: Option<f64>,
    pub batch_size: usize,
    /// Share of the text's characters used for training.
    pub train_ratio: f64,
    pub eval_freq: usize,
    pub eval_iter: usize,
    pub start_context: String,
    pub epoch_seed: Option<u64>,
    pub resume: Option<PathBuf>,
    /// Compute the losses of the untrained model first (section 5.1.3).
    pub initial_losses: bool,
    /// Book mode (bit-exact with PyTorch) or fast mode (fused kernels and optimizer).
    pub mode: TrainMode,
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
            epochs: 10,
            lr: None,
            weight_decay: None,
            batch_size: 2,
            train_ratio: 0.9,
            eval_freq: 5,
            eval_iter: 5,
            start_context: START_CONTEXT.into(),
            epoch_seed: None,
            resume: None,
            initial_losses: true,
            mode: TrainMode::Book,
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
    let mut device = context.device;
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
    context.create_out_dir()?;
    let group = match &options.ddp {
        Some(ddp) => {
            let rendezvous = Rendezvous::from_env()?.context(
                "a data-parallel run needs RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT: start it with \
                 `train --ddp --nproc-per-node N`, which sets them, or set them on every machine",
            )?;
            let backend = ddp.backend.unwrap_or(if device.is_cuda() { Backend::Nccl } else { Backend::Gloo });
            let group = ProcessGroup::new(&rendezvous, backend, ddp.timeout)?;
            // On GPUs each process takes its own, as `torch.cuda.set_device(local_rank)`.
            if let Device::Cuda(_) = device {
                device = Device::Cuda(rendezvous.local_rank);
            }
            Some(group)
        }
        None => None,
    };
    // Rank 0 (or the only process) logs, evaluates and writes files.
    let lead = group.as_ref().is_none_or(|group| group.rank == 0);
    let world_size = group.as_ref().map_or(1, |group| group.world_size);
    let context_tokens = config.context_length as usize;
    let (train_loader, val_loader) = loaders(text, options.train_ratio, context_tokens, options.batch_size)?;
    let say = |line: String| {
        if options.verbose && lead {
            println!("{line}");
        }
    };
    if let Some(group) = &group {
        say(format!(
            "Data-parallel training: {world_size} processes, each on its share of every epoch ({} x {context_tokens} \
             tokens per process and step)",
            options.batch_size
        ));
        anyhow::ensure!(
            train_loader.dataset().len() >= world_size * options.batch_size,
            "the training text has too few windows for {} processes with batches of {}",
            group.world_size,
            options.batch_size
        );
    }
    say(format!(
        "{} training and {} validation batches of {} x {context_tokens} tokens on {}",
        train_loader.len(),
        val_loader.len(),
        options.batch_size,
        device_name(device)
    ));

    // Section 5.1.3: the untrained model's losses (a seed-123 model, every batch).
    let (mut initial_train_loss, mut initial_val_loss) = (None, None);
    if options.initial_losses && resumed.is_none() && lead {
        seed_everything(context.seed);
        let vs = VarStore::new(device);
        let model = GptModel::new(&vs.root(), &config)?;
        check_token_ids(&model, &[("training", &train_loader), ("validation", &val_loader)])?;
        seed_everything(context.seed);
        let train_loss = calc_loss_loader(&model, &train_loader, None, device);
        let val_loss = calc_loss_loader(&model, &val_loader, None, device);
        say(format!("Training loss: {train_loss}\nValidation loss: {val_loss}"));
        (initial_train_loss, initial_val_loss) = (Some(train_loss), Some(val_loss));
    }

    // Section 5.2: a fresh seed-123 model (or the checkpoint's), AdamW, and training.
    seed_everything(context.seed);
    let vs = VarStore::new(device);
    let mut model = GptModel::new(&vs.root(), &config)?;
    let base = resumed.as_ref().map_or_else(AdamWConfig::default, |(_, meta)| meta.optimizer);
    let adamw = AdamWConfig {
        lr: options.lr.unwrap_or(base.lr),
        weight_decay: options.weight_decay.unwrap_or(base.weight_decay),
        ..base
    };
    let mut optimizer = AdamW::new(&vs, adamw)?;
    options.mode.prepare(&mut model, &mut optimizer)?;
    let mut progress = TrainProgress::default();
    let mut epoch_seed = options.epoch_seed;
    if let Some((path, meta)) = &resumed {
        let checkpoint = Checkpoint::at(path);
        checkpoint.load_model(&vs)?;
        checkpoint.load_optimizer(&mut optimizer)?;
        progress = TrainProgress { epoch: meta.epoch, global_step: meta.global_step, tokens_seen: meta.tokens_seen };
        epoch_seed = epoch_seed.or(meta.epoch_seed);
        say(format!(
            "Resuming {} after epoch {} (step {}, {} tokens seen)",
            path.display(),
            meta.epoch,
            meta.global_step,
            meta.tokens_seen
        ));
        if epoch_seed.is_none() {
            // The generator state at the end of the saved run cannot be recovered: start
            // from the seed (see the README's note on exercise 5.4).
            seed_everything(context.seed);
        }
    }
    let settings = TrainSettings {
        num_epochs: options.epochs,
        // The other ranks neither evaluate nor print samples.
        eval_freq: if lead { options.eval_freq } else { usize::MAX },
        eval_iter: options.eval_iter,
        start_context: Some(options.start_context.clone()).filter(|s| !s.is_empty() && lead),
        epoch_seed,
        verbose: options.verbose && lead,
        mode: options.mode,
    };
    // After every epoch the checkpoint is replaced (each file written under a temporary name,
    // then renamed), so a run killed midway can resume from its last complete epoch.
    let checkpoint = Checkpoint::at(&context.out_dir.join("checkpoint"));
    let meta = |progress: &TrainProgress, optimizer: &AdamW| {
        CheckpointMeta::new(&config, progress, optimizer.config, context.seed, epoch_seed)
    };
    let mut save = |progress: &TrainProgress, optimizer: &AdamW| {
        if lead {
            checkpoint.save(&vs, Some(optimizer), &meta(progress, optimizer))?;
        }
        Ok(())
    };
    let history = match &group {
        None => train_model_simple(
            &model,
            &mut optimizer,
            &train_loader,
            &val_loader,
            &settings,
            &mut progress,
            device,
            &mut save,
        )?,
        Some(group) => {
            // Rank 0's weights everywhere, then each step's gradients averaged over the ranks.
            let mut parallel = DataParallel::new(group, &vs.trainable_variables(), BUCKET_BYTES)?;
            let shard = ShardedLoader::new(&train_loader, group, context.seed);
            let mut average = || parallel.average_gradients(group);
            let mut hooks = TrainHooks::book(&mut save);
            hooks.after_backward = Some(&mut average);
            let history =
                train_model(&model, &mut optimizer, &shard, &val_loader, &settings, &mut progress, device, hooks)?;
            say(format!(
                "All-reduce of the gradients ({} bucket(s) per step): {:.2} s, {:.1} ms per step",
                parallel.bucket_count(),
                parallel.communication_seconds,
                1e3 * parallel.communication_seconds / parallel.steps.max(1) as f64
            ));
            group.barrier()?;
            history
        }
    };
    say(format!(
        "Training completed in {:.2} minutes ({:.0} tokens/s{})",
        history.train_seconds / 60.0,
        history.tokens_per_second * world_size as f64,
        if world_size > 1 { format!(" over {world_size} processes") } else { String::new() }
    ));
    if options.epochs == 0 && lead {
        checkpoint.save(&vs, Some(&optimizer), &meta(&progress, &optimizer))?;
    }
    let report = PretrainReport {
        config,
        device: device_name(device),
        train_batches: train_loader.len(),
        val_batches: val_loader.len(),
        initial_train_loss,
        initial_val_loss,
        resumed_from: resumed.map(|(path, _)| path),
        progress,
        history,
        checkpoint: checkpoint.model.clone(),
        metrics: context.out_dir.join("metrics.json"),
        plot: context.out_dir.join("losses.png"),
    };
    if !lead {
        return Ok(report);
    }
    std::fs::write(&report.metrics, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", report.metrics.display()))?;
    shared::app::report::write_history_plot(&report.plot, options.epochs, &report.history)?;
    say(format!("Wrote {}, {} and {}", report.checkpoint.display(), report.metrics.display(), report.plot.display()));
    Ok(report)
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
