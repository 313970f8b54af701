//! Sections 7.2-7.7 end to end: the data split, the loaders, the starting model (GPT-2
//! medium in the book), the loss before and during fine-tuning, the loss plot, responses
//! for the test set, and the fine-tuned checkpoint; with [`FinetuneOptions::lora`], exercise
//! 7.4's LoRA fine-tuning instead of updating every weight.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use shared::app::cli::RunContext;
use shared::app::model_source::{Init, LoadedModel, ModelSource};
use shared::core::device::{device_name, seed_everything};
use shared::model::lora::{apply_lora, counts_text, merge_lora, LoraConfig};
use shared::train::{
    calc_loss_loader, check_token_ids, train_model_simple, AdamW, AdamWConfig, Checkpoint, CheckpointMeta,
    TrainHistory, TrainMode, TrainProgress, TrainSettings,
};

use crate::collate::{CollateOptions, InstructionDataset, InstructionLoader, TokenStats};
use crate::records::{self, InstructionRecord, Splits};
use crate::respond::{book_decoding, respond, respond_all, MAX_NEW_TOKENS};
use crate::template::TemplateKind;

/// The file the run writes the test set's responses to (the book's name).
pub const RESPONSES_FILE: &str = "instruction-data-with-response.json";

/// The run's settings; the defaults are the book's.
#[derive(Debug, Clone, Serialize)]
pub struct FinetuneOptions {
    pub init: Init,
    pub template: TemplateKind,
    /// Exercise 7.2: leave the prompt out of the loss.
    pub mask_instructions: bool,
    /// Exercise 7.4: train LoRA adapters on every linear layer instead of every weight.
    pub lora: Option<LoraConfig>,
    /// Cut training rows to this many tokens [default: the model's context].
    pub allowed_max_length: Option<usize>,
    /// Use only the first this many records of the data (quick runs and tests).
    pub limit: Option<usize>,
    pub epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub eval_freq: usize,
    pub eval_iter: usize,
    /// Generate and save responses for the test set after training.
    pub responses: bool,
    pub max_new_tokens: i64,
    /// Book mode (the book's code) or fast mode (fused kernels and optimizer).
    pub mode: TrainMode,
    pub verbose: bool,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        Self {
            init: Init::Gpt2("gpt2-medium".into()),
            template: TemplateKind::Alpaca,
            mask_instructions: false,
            lora: None,
            allowed_max_length: None,
            limit: None,
            epochs: 2,
            lr: 5e-5,
            weight_decay: 0.1,
            batch_size: 8,
            eval_freq: 5,
            eval_iter: 5,
            responses: true,
            max_new_tokens: MAX_NEW_TOKENS,
            mode: TrainMode::Book,
            verbose: true,
        }
    }
}

/// What the checkpoint records beyond the language model: how to prompt it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InstructionMeta {
    pub template: TemplateKind,
    pub mask_instructions: bool,
    /// The adapters' size when it was fine-tuned with LoRA (merged into the weights).
    pub lora: Option<LoraConfig>,
}

/// Record counts of the three splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SplitSizes {
    pub train: usize,
    pub test: usize,
    pub validation: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FinetuneReport {
    pub options: FinetuneOptions,
    pub data: PathBuf,
    pub model: String,
    pub device: String,
    pub splits: SplitSizes,
    /// Tokens of the training examples, as formatted by the template.
    pub train_tokens: TokenStats,
    pub total_parameters: i64,
    /// Trainable parameters during fine-tuning (the adapters' with LoRA).
    pub trainable_parameters: i64,
    /// The response to the first validation record before fine-tuning (35 tokens at most).
    pub response_before: String,
    /// Losses on 5 batches before fine-tuning (section 7.6).
    pub initial_train_loss: f64,
    pub initial_val_loss: f64,
    pub history: TrainHistory,
    pub seconds_per_epoch: f64,
    pub responses: Option<PathBuf>,
    pub checkpoint: PathBuf,
}

/// Runs the chapter and writes into the context's output folder: the three splits
/// (`train.json`, `test.json`, `validation.json`), `loss-plot.png`, the responses file,
/// the checkpoint `sft.*` and `metrics.json`.
pub fn run(context: &RunContext, options: &FinetuneOptions) -> Result<FinetuneReport> {
    let say = |line: String| {
        if options.verbose {
            println!("{line}");
        }
    };
    ensure!(options.batch_size > 0, "the batch size must be at least 1");
    let data = records::locate(&context.data)?;
    let mut all = records::load(&data)?;
    if let Some(limit) = options.limit {
        all.truncate(limit);
    }
    let splits = Splits::new(all);
    let sizes = SplitSizes { train: splits.train.len(), test: splits.test.len(), validation: splits.validation.len() };
    ensure!(
        sizes.train >= options.batch_size && sizes.validation > 0,
        "{} records give {} training and {} validation records: too few for batches of {}",
        sizes.train + sizes.test + sizes.validation,
        sizes.train,
        sizes.validation,
        options.batch_size
    );
    context.create_out_dir()?;
    splits.save(&context.out_dir)?;
    say(format!(
        "{} records from {}: training {}, test {}, validation {} (JSON files in {})",
        sizes.train + sizes.test + sizes.validation,
        data.display(),
        sizes.train,
        sizes.test,
        sizes.validation,
        context.out_dir.display()
    ));

    let LoadedModel { vs, mut model, description, .. } = options.init.load(context, Some(0.0))?;
    let context_length = model.cfg.context_length as usize;
    let allowed_max_length = options.allowed_max_length.unwrap_or(context_length);
    ensure!(
        (1..=context_length).contains(&allowed_max_length),
        "--allowed-max-length must be between 1 and the model's context of {context_length} tokens, got {allowed_max_length}"
    );
    let template = options.template.template();
    let collate =
        CollateOptions { allowed_max_length: Some(allowed_max_length), mask_instructions: options.mask_instructions };
    let loader = |records: &[InstructionRecord], train: bool| InstructionLoader {
        dataset: InstructionDataset::new(records, template),
        batch_size: options.batch_size,
        shuffle: train,
        drop_last: train,
        collate,
    };
    let (train_loader, val_loader) = (loader(&splits.train, true), loader(&splits.validation, false));
    let train_tokens = train_loader.dataset.token_stats();
    say(format!(
        "Model: {description}; {} template: {:.1} tokens per training example on average, the longest {}{}",
        options.template.name(),
        train_tokens.mean,
        train_tokens.longest,
        if options.mask_instructions { "; prompts masked out of the loss" } else { "" }
    ));

    let total_parameters: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    let trainable_parameters = match options.lora {
        Some(lora) => {
            let count = apply_lora(&vs, &mut model, lora)?;
            say(counts_text(total_parameters, count, lora));
            count
        }
        None => total_parameters,
    };

    // Section 7.5: the model's answer before fine-tuning.
    check_token_ids(&model, &[("training", &train_loader), ("validation", &val_loader)])?;
    let device = context.device;
    seed_everything(context.seed);
    let response_before = respond(&model, template, &splits.validation[0], 35, device)?;
    say(format!("Response to the first validation instruction before fine-tuning:\n{response_before}"));

    // Section 7.6: losses before fine-tuning, then fine-tuning.
    seed_everything(context.seed);
    let initial_train_loss = calc_loss_loader(&model, &train_loader, Some(5), device);
    let initial_val_loss = calc_loss_loader(&model, &val_loader, Some(5), device);
    say(format!("Training loss: {initial_train_loss}\nValidation loss: {initial_val_loss}"));

    seed_everything(context.seed);
    let mut optimizer =
        AdamW::new(&vs, AdamWConfig { lr: options.lr, weight_decay: options.weight_decay, ..AdamWConfig::default() })?;
    options.mode.prepare(&mut model, &mut optimizer)?;
    let settings = TrainSettings {
        num_epochs: options.epochs,
        eval_freq: options.eval_freq,
        eval_iter: options.eval_iter,
        start_context: Some(template.format_input(&splits.validation[0])),
        epoch_seed: None,
        verbose: options.verbose,
        mode: options.mode,
    };
    let mut progress = TrainProgress::default();
    let history = train_model_simple(
        &model,
        &mut optimizer,
        &train_loader,
        &val_loader,
        &settings,
        &mut progress,
        device,
        &mut |_, _| Ok(()),
    )?;
    let seconds_per_epoch = history.train_seconds / options.epochs.max(1) as f64;
    say(format!("Training completed in {:.2} minutes.", history.train_seconds / 60.0));
    let plot = context.out_dir.join("loss-plot.png");
    shared::app::report::write_history_plot(&plot, options.epochs, &history)?;

    // The LoRA adapters go into the weights: the checkpoint is a plain GPT model.
    if options.lora.is_some() {
        merge_lora(&vs, &mut model);
    }
    let checkpoint = Checkpoint::at(&context.out_dir.join("sft"));
    let meta = InstructionMeta {
        template: options.template,
        mask_instructions: options.mask_instructions,
        lora: options.lora,
    };
    save_model(&checkpoint, &vs, &model.cfg, &meta, progress, context.seed)?;

    // Section 7.7: responses for the test set.
    let responses = if options.responses && !splits.test.is_empty() {
        seed_everything(context.seed);
        let answered = respond_all(
            &model,
            template,
            &splits.test,
            options.max_new_tokens,
            device,
            &mut book_decoding(),
            options.verbose,
        )?;
        for record in answered.iter().take(3) {
            say(format!(
                "{}\n\nCorrect response:\n>> {}\n\nModel response:\n>> {}\n{}",
                template.format_input(record),
                record.output,
                record.model_response.as_deref().unwrap_or_default(),
                "-".repeat(40)
            ));
        }
        let path = context.out_dir.join(RESPONSES_FILE);
        records::save(&path, &answered)?;
        Some(path)
    } else {
        None
    };

    let report = FinetuneReport {
        options: options.clone(),
        data,
        model: description,
        device: device_name(device),
        splits: sizes,
        train_tokens,
        total_parameters,
        trainable_parameters,
        response_before,
        initial_train_loss,
        initial_val_loss,
        history,
        seconds_per_epoch,
        responses,
        checkpoint: checkpoint.model.clone(),
    };
    std::fs::write(context.out_dir.join("metrics.json"), serde_json::to_string_pretty(&report)?)?;
    say(format!(
        "Wrote {}, {}loss-plot.png and metrics.json in {}",
        report.checkpoint.display(),
        if report.responses.is_some() { format!("{RESPONSES_FILE}, ") } else { String::new() },
        context.out_dir.display()
    ));
    Ok(report)
}

fn instruction_meta_path(checkpoint: &Checkpoint) -> PathBuf {
    checkpoint.meta.with_extension("instruction.json")
}

fn save_model(
    checkpoint: &Checkpoint,
    vs: &tch::nn::VarStore,
    config: &shared::model::GptConfig,
    instruction: &InstructionMeta,
    progress: TrainProgress,
    seed: u64,
) -> Result<()> {
    let meta = CheckpointMeta::new(config, &progress, AdamWConfig::default(), seed, None);
    checkpoint.save(vs, None, &meta)?;
    std::fs::write(instruction_meta_path(checkpoint), serde_json::to_string_pretty(instruction)?)
        .with_context(|| format!("writing {}", instruction_meta_path(checkpoint).display()))
}

/// A fine-tuned model and the template it was trained with: a checkpoint of this chapter
/// (`sft.safetensors`), any checkpoint of ours, or the book's `gpt2-medium355M-sft.pth`.
pub struct InstructionModel {
    pub loaded: LoadedModel,
    pub template: TemplateKind,
}

/// Loads `path`; the template is `template` when given, else the one recorded beside the
/// checkpoint, else Alpaca (the book's).
pub fn load_model(path: &Path, template: Option<TemplateKind>, context: &RunContext) -> Result<InstructionModel> {
    let loaded = ModelSource::checkpoint(path).load(context.device, context.seed)?;
    let recorded = instruction_meta_path(&Checkpoint::at(path));
    let template = match template {
        Some(template) => template,
        None if recorded.is_file() => {
            let text = std::fs::read_to_string(&recorded)?;
            serde_json::from_str::<InstructionMeta>(&text)
                .with_context(|| format!("{} is not an instruction model description", recorded.display()))?
                .template
        }
        None => TemplateKind::Alpaca,
    };
    Ok(InstructionModel { loaded, template })
}
