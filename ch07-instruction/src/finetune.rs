//! Sections 7.2-7.7 end to end: the data split, the loaders, the starting model (GPT-2
//! medium in the book), the loss before and during fine-tuning, the loss plot, responses
//! for the test set, and the fine-tuned checkpoint; with [`FinetuneOptions::lora`], exercise
//! 7.4's LoRA fine-tuning instead of updating every weight.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use shared::app::cli::RunContext;
use shared::app::model_source::{Init, LoadedModel, ModelSource};
use shared::app::recipe::{Reporter, TrainDefaults, TrainFlags};
use shared::core::device::{device_name, seed_everything};
use shared::data::dataset::BatchSource;
use shared::model::lora::{apply_lora, counts_text, lora_state, merge_lora, LoraAdapters, LoraConfig};
use shared::model::GptModel;
use shared::train::{
    calc_loss_loader, check_token_ids, train_model_simple, AdamW, AdamWConfig, Checkpoint, CheckpointMeta,
    TrainHistory, TrainProgress,
};
use shared::weights::read_lora_adapters;
use tch::nn::VarStore;
use tch::Tensor;

use crate::collate::{CollateOptions, InstructionDataset, InstructionLoader, TokenStats};
use crate::records::{self, InstructionRecord, Splits};
use crate::respond::{greedy_decoding, respond, respond_all, MAX_NEW_TOKENS};
use crate::template::{PromptTemplate, TemplateKind};

/// The file the run writes the test set's responses to (the book's name).
pub const RESPONSES_FILE: &str = "instruction-data-with-response.json";

/// Chapter 7's training defaults (the book's): 2 epochs at a learning rate of 5e-5 with a
/// weight decay of 0.1, batches of 8, an evaluation every 5 steps on 5 batches.
#[derive(Debug, Clone, PartialEq)]
pub struct Chapter7;

impl TrainDefaults for Chapter7 {
    const EPOCHS: &'static str = "2";
    const LR: Option<&'static str> = Some("0.00005");
    const WEIGHT_DECAY: Option<&'static str> = Some("0.1");
    const BATCH_SIZE: &'static str = "8";
    const EVAL_FREQ: &'static str = "5";
}

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
    #[serde(flatten)]
    pub train: TrainFlags<Chapter7>,
    /// Generate and save responses for the test set after training.
    pub responses: bool,
    pub max_new_tokens: i64,
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
            train: TrainFlags::defaults(),
            responses: true,
            max_new_tokens: MAX_NEW_TOKENS,
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

impl InstructionMeta {
    /// Reads the description written by [`InstructionMeta::write`].
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not an instruction model description", path.display()))
    }

    /// Writes the description as JSON (beside a checkpoint or an adapter file).
    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?).with_context(|| format!("writing {}", path.display()))
    }
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
    let reporter = Reporter::new(&context.out_dir, options.verbose);
    let (data, splits, sizes) = prepare_splits(context, options, &reporter)?;
    let LoadedModel { vs, mut model, description, .. } = options.init.load(context, Some(0.0))?;
    let template = &*options.template.template(&*model.cfg.tokenizer.build()?)?;
    let (train, val) = loaders(options, template, &splits, &model)?;
    let train_tokens = train.dataset.token_stats();
    reporter.say(format!(
        "Model: {description}; {} template: {:.1} tokens per training example on average, the longest {}{}",
        options.template.name(),
        train_tokens.mean,
        train_tokens.longest,
        if options.mask_instructions { "; prompts masked out of the loss" } else { "" }
    ));
    let (total_parameters, trainable_parameters) = add_adapters(&vs, &mut model, options.lora, &reporter)?;
    let device = context.device;
    let first = &splits.validation[0];
    let (response_before, initial_train_loss, initial_val_loss) =
        before_fine_tuning(context, &model, template, first, (&train, &val), &reporter)?;

    // Section 7.6: fine-tuning.
    seed_everything(context.seed);
    let mut optimizer = options.train.optimizer(&vs, &mut model, AdamWConfig::default())?;
    let settings =
        options.train.settings(Some(template.format_input(first)), options.verbose, &optimizer, train.batch_count())?;
    let mut progress = TrainProgress::default();
    let no_checkpoints = &mut |_: &TrainProgress, _: &AdamW| Ok(());
    let history =
        train_model_simple(&model, &mut optimizer, &train, &val, &settings, &mut progress, device, no_checkpoints)?;
    reporter.say(format!("Training completed in {:.2} minutes.", history.train_seconds / 60.0));

    let meta = InstructionMeta {
        template: options.template,
        mask_instructions: options.mask_instructions,
        lora: options.lora,
    };
    // The LoRA adapters are saved alone (a few MB, served over the base by `serve`), then go
    // into the weights: the checkpoint is a plain GPT model.
    if options.lora.is_some() {
        save_adapters(&reporter.path(ADAPTERS_FILE), &vs, &meta)?;
        merge_lora(&vs, &mut model);
    }
    let checkpoint = Checkpoint::at(&reporter.path("sft"));
    save_model(&checkpoint, &vs, &model.cfg, &meta, progress, context.seed)?;
    let responses = answer_test_set(context, options, &model, template, &splits.test, &reporter)?;
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
        seconds_per_epoch: history.train_seconds / options.train.epochs.max(1) as f64,
        history,
        responses,
        checkpoint: checkpoint.model.clone(),
    };
    reporter.write_metrics_and_plot(&report, &reporter.path("loss-plot.png"), options.train.epochs, &report.history)?;
    reporter.say(format!(
        "Wrote {}, {}loss-plot.png and metrics.json{} in {}",
        report.checkpoint.display(),
        if report.responses.is_some() { format!("{RESPONSES_FILE}, ") } else { String::new() },
        if options.lora.is_some() { format!(", and the adapters alone in {ADAPTERS_FILE}") } else { String::new() },
        context.out_dir.display()
    ));
    Ok(report)
}

/// Exercise 7.4: LoRA adapters on every linear layer when `lora` is given. Returns the
/// parameter count and how many of them train.
pub(crate) fn add_adapters(
    vs: &VarStore,
    model: &mut GptModel,
    lora: Option<LoraConfig>,
    reporter: &Reporter,
) -> Result<(i64, i64)> {
    let total: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    let Some(lora) = lora else {
        return Ok((total, total));
    };
    let trainable = apply_lora(vs, model, lora)?;
    reporter.say(counts_text(total, trainable, lora));
    Ok((total, trainable))
}

/// Sections 7.5-7.6: the model's answer to `first` and its losses on 5 batches of each
/// loader, before fine-tuning.
fn before_fine_tuning(
    context: &RunContext,
    model: &GptModel,
    template: &dyn PromptTemplate,
    first: &InstructionRecord,
    (train, val): (&InstructionLoader, &InstructionLoader),
    reporter: &Reporter,
) -> Result<(String, f64, f64)> {
    check_token_ids(model, &[("training", train), ("validation", val)])?;
    seed_everything(context.seed);
    let response = respond(model, template, first, 35, context.device)?;
    reporter.say(format!("Response to the first validation instruction before fine-tuning:\n{response}"));
    seed_everything(context.seed);
    let train_loss = calc_loss_loader(model, train, Some(5), context.device);
    let val_loss = calc_loss_loader(model, val, Some(5), context.device);
    reporter.say(format!("Training loss: {train_loss}\nValidation loss: {val_loss}"));
    Ok((response, train_loss, val_loss))
}

/// Section 7.2: the records (the first `limit`), split 85/10/5 and saved as JSON files.
fn prepare_splits(
    context: &RunContext,
    options: &FinetuneOptions,
    reporter: &Reporter,
) -> Result<(PathBuf, Splits, SplitSizes)> {
    ensure!(options.train.batch_size > 0, "the batch size must be at least 1");
    let data = records::locate(&context.data)?;
    let mut all = records::load(&data)?;
    if let Some(limit) = options.limit {
        all.truncate(limit);
    }
    let splits = Splits::new(all);
    let sizes = SplitSizes { train: splits.train.len(), test: splits.test.len(), validation: splits.validation.len() };
    let total = sizes.train + sizes.test + sizes.validation;
    ensure!(
        sizes.train >= options.train.batch_size && sizes.validation > 0,
        "{total} records give {} training and {} validation records: too few for batches of {}",
        sizes.train,
        sizes.validation,
        options.train.batch_size
    );
    context.create_out_dir()?;
    splits.save(&context.out_dir)?;
    reporter.say(format!(
        "{total} records from {}: training {}, test {}, validation {} (JSON files in {})",
        data.display(),
        sizes.train,
        sizes.test,
        sizes.validation,
        context.out_dir.display()
    ));
    Ok((data, splits, sizes))
}

/// Sections 7.3-7.4: the training loader (shuffled, incomplete batches dropped) and the
/// validation loader, tokenized with the model's tokenizer (GPT-2's in the book), rows cut to
/// `--allowed-max-length` (the model's context by default).
fn loaders(
    options: &FinetuneOptions,
    template: &dyn PromptTemplate,
    splits: &Splits,
    model: &GptModel,
) -> Result<(InstructionLoader, InstructionLoader)> {
    let context_length = model.cfg.context_length as usize;
    let tokenizer = &*model.cfg.tokenizer.build()?;
    let allowed_max_length = options.allowed_max_length.unwrap_or(context_length);
    ensure!(
        (1..=context_length).contains(&allowed_max_length),
        "--allowed-max-length must be between 1 and the model's context of {context_length} tokens, got {allowed_max_length}"
    );
    let collate =
        CollateOptions { allowed_max_length: Some(allowed_max_length), mask_instructions: options.mask_instructions };
    let loader = |records: &[InstructionRecord], train: bool| -> Result<InstructionLoader> {
        Ok(InstructionLoader {
            dataset: InstructionDataset::tokenized_with(records, template, tokenizer)?,
            batch_size: options.train.batch_size,
            shuffle: train,
            drop_last: train,
            collate,
        })
    };
    Ok((loader(&splits.train, true)?, loader(&splits.validation, false)?))
}

/// Section 7.7: the fine-tuned model's responses for the test set, saved beside the splits
/// (`None` when turned off or the test set is empty); the first three are printed.
fn answer_test_set(
    context: &RunContext,
    options: &FinetuneOptions,
    model: &GptModel,
    template: &dyn PromptTemplate,
    test: &[InstructionRecord],
    reporter: &Reporter,
) -> Result<Option<PathBuf>> {
    if !options.responses || test.is_empty() {
        return Ok(None);
    }
    seed_everything(context.seed);
    let answered = respond_all(
        model,
        template,
        test,
        options.max_new_tokens,
        context.device,
        &mut greedy_decoding(model)?,
        options.verbose,
    )?;
    for record in answered.iter().take(3) {
        reporter.say(format!(
            "{}\n\nCorrect response:\n>> {}\n\nModel response:\n>> {}\n{}",
            template.format_input(record),
            record.output,
            record.model_response.as_deref().unwrap_or_default(),
            "-".repeat(40)
        ));
    }
    let path = reporter.path(RESPONSES_FILE);
    records::save(&path, &answered)?;
    Ok(Some(path))
}

fn instruction_meta_path(checkpoint: &Checkpoint) -> PathBuf {
    checkpoint.meta.with_extension("instruction.json")
}

pub(crate) fn save_model(
    checkpoint: &Checkpoint,
    vs: &tch::nn::VarStore,
    config: &shared::model::GptConfig,
    instruction: &InstructionMeta,
    progress: TrainProgress,
    seed: u64,
) -> Result<()> {
    let meta = CheckpointMeta::new(config, &progress, AdamWConfig::default(), seed, None);
    checkpoint.save(vs, None, &meta)?;
    instruction.write(&instruction_meta_path(checkpoint))
}

/// A fine-tuned model and the template it was trained with: a checkpoint of this chapter
/// (`sft.safetensors`), any checkpoint of ours, or the book's `gpt2-medium355M-sft.pth`.
pub struct InstructionModel {
    pub loaded: LoadedModel,
    pub template: TemplateKind,
}

impl InstructionModel {
    /// A model prompted with `template`, else in the style its tokenizer suggests
    /// ([`TemplateKind::default_for`]: the book's Alpaca for GPT-2).
    pub fn new(loaded: LoadedModel, template: Option<TemplateKind>) -> Result<Self> {
        let template = match template {
            Some(template) => template,
            None => TemplateKind::default_for(&*loaded.model.cfg.tokenizer.build()?)?,
        };
        Ok(Self { loaded, template })
    }

    /// The model's prompt template.
    pub fn prompt_template(&self) -> Result<Box<dyn PromptTemplate>> {
        self.template.template(&*self.loaded.model.cfg.tokenizer.build()?)
    }
}

/// The file a LoRA run writes its adapters to, alone (with `lora-adapters.json`, the run's
/// [`InstructionMeta`]).
pub const ADAPTERS_FILE: &str = "lora-adapters.safetensors";

/// The description beside an adapter file.
fn adapter_meta_path(adapters: &Path) -> PathBuf {
    adapters.with_extension("json")
}

/// Writes the adapters of `vs` alone to `path`, and `meta` beside them.
pub fn save_adapters(path: &Path, vs: &VarStore, meta: &InstructionMeta) -> Result<()> {
    Tensor::write_safetensors(&lora_state(vs), path).with_context(|| format!("writing {}", path.display()))?;
    meta.write(&adapter_meta_path(path))
}

/// A LoRA run's adapters from `path` (the run's [`ADAPTERS_FILE`], or a copy with its `.json`
/// beside it) on `device`, and the template they were trained with.
pub fn load_adapters(path: &Path, device: tch::Device) -> Result<(LoraAdapters, TemplateKind)> {
    let described = adapter_meta_path(path);
    let meta = InstructionMeta::read(&described).context("a LoRA run writes this description beside its adapters")?;
    let lora = meta.lora.with_context(|| format!("{} describes a run without LoRA", described.display()))?;
    Ok((read_lora_adapters(path, lora, device)?, meta.template))
}

/// Loads `path`; the template is `template` when given, else the one recorded beside the
/// checkpoint, else the model's chat template when its tokenizer has one, else Alpaca (the
/// book's).
pub fn load_model(path: &Path, template: Option<TemplateKind>, context: &RunContext) -> Result<InstructionModel> {
    let loaded = ModelSource::checkpoint(path).load(context.device, context.seed)?;
    let recorded = instruction_meta_path(&Checkpoint::at(path));
    let template = match template {
        Some(template) => Some(template),
        None if recorded.is_file() => Some(InstructionMeta::read(&recorded)?.template),
        None => None,
    };
    InstructionModel::new(loaded, template)
}
