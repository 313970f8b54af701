//! Sections 6.5-6.8: the classifier (GPT-2 with a 2-class head, most weights frozen), its
//! fine-tuning, the final accuracies, the plots and the checkpoint that `classify` and
//! `eval` read back; with [`FinetuneOptions::lora`], appendix E's LoRA fine-tuning instead
//! (every weight frozen, adapters on every linear layer).

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Tensor;

use super::cli::RunContext;
use super::model_source::Init;
use super::plot::{Chart, Series, TopAxis, PALETTE};
use super::recipe::{Reporter, TrainDefaults, TrainFlags};
use super::report::write_loss_plot;
use crate::core::device::{device_name, seed_everything};
use crate::data::classification::{self, LoaderSizes, Loaders, Padding, Splits};
use crate::data::dataset::BatchSource;
use crate::data::spam;
use crate::model::classifier::{freeze, replace_head, TokenPosition, Trainable};
use crate::model::lora::{apply_lora, counts_text, lora_state, LoraConfig};
use crate::model::{GptConfig, GptModel, MAX_CONTEXT_LENGTH};
use crate::train::classifier::{calc_accuracy_loader, train_classifier_simple, ClassifierHistory, ClassifierSettings};
use crate::train::{AdamWConfig, Checkpoint, CheckpointMeta, TrainProgress};

/// Chapter 6's training defaults (the book's): 5 epochs at a learning rate of 5e-5 with a
/// weight decay of 0.1, batches of 8, an evaluation every 50 steps on 5 batches.
#[derive(Debug, Clone, PartialEq)]
pub struct Chapter6;

impl TrainDefaults for Chapter6 {
    const EPOCHS: &'static str = "5";
    const LR: Option<&'static str> = Some("0.00005");
    const WEIGHT_DECAY: Option<&'static str> = Some("0.1");
    const BATCH_SIZE: &'static str = "8";
    const EVAL_FREQ: &'static str = "50";
}

/// The run's settings; the defaults are the book's.
#[derive(Debug, Clone, Serialize)]
pub struct FinetuneOptions {
    pub init: Init,
    /// How long texts are padded (and cut).
    pub padding: Padding,
    /// Use at most this many messages of each split (a quick experiment).
    pub limit: Option<usize>,
    pub trainable: Trainable,
    /// Appendix E: train LoRA adapters (on every linear layer) instead of `trainable`.
    pub lora: Option<LoraConfig>,
    pub position: TokenPosition,
    #[serde(flatten)]
    pub train: TrainFlags<Chapter6>,
    pub verbose: bool,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        Self {
            init: Init::Gpt2("gpt2-small".into()),
            padding: Padding::Longest,
            limit: None,
            trainable: Trainable::LastBlock,
            lora: None,
            position: TokenPosition::Last,
            train: TrainFlags::defaults(),
            verbose: true,
        }
    }
}

/// What the classifier checkpoint records beyond the language-model checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierMeta {
    pub num_classes: i64,
    pub max_length: usize,
    pub position: TokenPosition,
    /// The adapters' size, when the classifier was fine-tuned with LoRA.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
}

impl ClassifierMeta {
    /// Reads and checks a classifier description (`NAME.classifier.json`).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("{} is not a valid classifier description", path.display()))
    }

    /// Parses and checks the JSON of a classifier description.
    pub fn parse(text: &str) -> Result<Self> {
        let meta: Self = serde_json::from_str(text)?;
        ensure!(
            (2..=MAX_CLASSES).contains(&meta.num_classes),
            "num_classes must be between 2 and {MAX_CLASSES}, got {}",
            meta.num_classes
        );
        ensure!(
            (1..=MAX_CONTEXT_LENGTH as usize).contains(&meta.max_length),
            "max_length must be between 1 and {MAX_CONTEXT_LENGTH} tokens, got {}",
            meta.max_length
        );
        if let Some(lora) = meta.lora {
            lora.validate()?;
        }
        Ok(meta)
    }
}

/// The most classes a classifier head may have.
pub const MAX_CLASSES: i64 = 1 << 16;

/// Accuracies on the three splits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Accuracies {
    pub train: f64,
    pub validation: f64,
    pub test: f64,
}

impl Accuracies {
    /// Section 6.6's accuracies of `model` on the first `num_batches` batches of each split
    /// (all when `None`).
    pub fn of(
        model: &GptModel,
        loaders: &Loaders,
        num_batches: Option<usize>,
        position: TokenPosition,
        device: tch::Device,
    ) -> Self {
        Self {
            train: calc_accuracy_loader(model, &loaders.train, num_batches, position, device),
            validation: calc_accuracy_loader(model, &loaders.validation, num_batches, position, device),
            test: calc_accuracy_loader(model, &loaders.test, num_batches, position, device),
        }
    }
}

impl std::fmt::Display for Accuracies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Training accuracy: {:.2}%", self.train * 100.0)?;
        writeln!(f, "Validation accuracy: {:.2}%", self.validation * 100.0)?;
        write!(f, "Test accuracy: {:.2}%", self.test * 100.0)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FinetuneReport {
    pub options: FinetuneOptions,
    pub model: String,
    pub device: String,
    pub loaders: LoaderSizes,
    /// Parameters of the classifier (all trainable before freezing).
    pub total_parameters: i64,
    /// Trainable parameters during fine-tuning (the LoRA adapters' with LoRA).
    pub trainable_parameters: i64,
    /// Accuracies on 10 batches before fine-tuning (section 6.6).
    pub initial: Accuracies,
    pub history: ClassifierHistory,
    /// Accuracies on the full splits after fine-tuning.
    pub accuracies: Accuracies,
    pub checkpoint: PathBuf,
}

/// Runs the chapter: data, classifier, fine-tuning, accuracies, outputs in the context's
/// output folder (train/validation/test CSV files, plots, metrics, checkpoint).
pub fn run(context: &RunContext, options: &FinetuneOptions) -> Result<FinetuneReport> {
    let reporter = Reporter::new(&context.out_dir, options.verbose);
    let splits = prepare_splits(context, options.limit, &reporter)?;
    let loaded = options.init.load(context, Some(0.0))?;
    let (vs, mut model) = (loaded.vs, loaded.model);
    let context_length = model.cfg.context_length as usize;
    let loaders = classification::loaders(&splits, options.padding, context_length, options.train.batch_size)?;
    reporter.say(format!("Texts padded to {} tokens; model: {}", loaders.max_length, loaded.description));

    // Section 6.5: the 2-class head (seed 123 first, as the book) and the frozen backbone;
    // appendix E: everything frozen, adapters on every linear layer.
    seed_everything(context.seed);
    replace_head(&vs, &mut model, 2);
    let (total_parameters, trainable_parameters) = choose_trainable(&vs, &mut model, options, &reporter)?;

    // Section 6.6: accuracies before fine-tuning, on 10 batches.
    loaders.check_token_ids(&model)?;
    seed_everything(context.seed);
    let (device, position) = (context.device, options.position);
    let initial = Accuracies::of(&model, &loaders, Some(10), position, device);
    reporter.say(format!("Before fine-tuning (10 batches):\n{initial}"));

    // Section 6.7: fine-tuning.
    seed_everything(context.seed);
    let mut optimizer = options.train.optimizer(&vs, &mut model, AdamWConfig::default())?;
    let settings = ClassifierSettings {
        num_epochs: options.train.epochs,
        eval_freq: options.train.eval_freq,
        eval_iter: options.train.eval_iter,
        position,
        verbose: options.verbose,
        mode: options.train.mode,
        schedule: options.train.schedule(&optimizer, 0, loaders.train.batch_count())?,
    };
    let history =
        train_classifier_simple(&model, &mut optimizer, &loaders.train, &loaders.validation, &settings, device)?;
    reporter.say(format!("Training completed in {:.2} minutes", history.train_seconds / 60.0));
    let accuracies = Accuracies::of(&model, &loaders, None, position, device);
    reporter.say(accuracies);

    let checkpoint = Checkpoint::at(&reporter.path("classifier"));
    let classifier = ClassifierMeta { num_classes: 2, max_length: loaders.max_length, position, lora: options.lora };
    save_classifier(&checkpoint, &vs, &model.cfg, &classifier, context.seed)?;
    if options.lora.is_some() {
        Tensor::write_safetensors(&lora_state(&vs), adapters_path(&context.out_dir))?;
    }
    let report = FinetuneReport {
        options: options.clone(),
        model: loaded.description,
        device: device_name(device),
        loaders: loaders.sizes(),
        total_parameters,
        trainable_parameters,
        initial,
        history,
        accuracies,
        checkpoint: checkpoint.model.clone(),
    };
    plot(&context.out_dir, &report)?;
    reporter.write_metrics(&report)?;
    reporter.say(format!(
        "Wrote {}, metrics.json, loss-plot.png and accuracy-plot.png{} in {}",
        report.checkpoint.display(),
        if options.lora.is_some() { ", and the adapters alone in lora-adapters.safetensors" } else { "" },
        context.out_dir.display()
    ));
    Ok(report)
}

/// Sections 6.2-6.3: the book's splits (cut to `limit` messages each), written as CSV files.
fn prepare_splits(context: &RunContext, limit: Option<usize>, reporter: &Reporter) -> Result<Splits> {
    let mut splits = classification::prepare(&context.data)?;
    report_malformed(&splits);
    if let Some(limit) = limit {
        splits.truncate(limit);
    }
    context.create_out_dir()?;
    for (name, part) in [("train", &splits.train), ("validation", &splits.validation), ("test", &splits.test)] {
        spam::write_csv(&context.out_dir.join(format!("{name}.csv")), part)?;
    }
    reporter.say(format!(
        "{} training, {} validation and {} test messages (CSV files in {})",
        splits.train.len(),
        splits.validation.len(),
        splits.test.len(),
        context.out_dir.display()
    ));
    Ok(splits)
}

/// Section 6.5's freezing, or appendix E's adapters: the classifier's parameter count and
/// how many of them train.
fn choose_trainable(
    vs: &VarStore,
    model: &mut GptModel,
    options: &FinetuneOptions,
    reporter: &Reporter,
) -> Result<(i64, i64)> {
    let total: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
    let trainable = match options.lora {
        Some(lora) => {
            let count = apply_lora(vs, model, lora)?;
            reporter.say(counts_text(total, count, lora));
            count
        }
        None => {
            let names = freeze(vs, model, options.trainable);
            let variables = vs.variables();
            let count = names.iter().map(|name| variables[name].numel() as i64).sum();
            reporter.say(format!("{count} trainable parameters of {total}"));
            count
        }
    };
    Ok((total, trainable))
}

fn report_malformed(splits: &Splits) {
    for (line, reason) in &splits.malformed {
        eprintln!("warning: line {line} of the spam collection was skipped: {reason}");
    }
}

fn classifier_meta_path(checkpoint: &Checkpoint) -> PathBuf {
    checkpoint.meta.with_extension("classifier.json")
}

fn save_classifier(
    checkpoint: &Checkpoint,
    vs: &VarStore,
    config: &GptConfig,
    classifier: &ClassifierMeta,
    seed: u64,
) -> Result<()> {
    let meta = CheckpointMeta::new(config, &TrainProgress::default(), AdamWConfig::default(), seed, None);
    checkpoint.save(vs, None, &meta)?;
    std::fs::write(classifier_meta_path(checkpoint), serde_json::to_string_pretty(classifier)?)?;
    Ok(())
}

/// A fine-tuned classifier read back from its checkpoint.
pub struct Classifier {
    pub vs: VarStore,
    pub model: GptModel,
    pub meta: ClassifierMeta,
}

/// A classifier written by [`run`] (`NAME.safetensors`, `NAME.json` and `NAME.classifier.json`).
pub fn load_classifier(path: &Path, device: tch::Device) -> Result<Classifier> {
    let checkpoint = Checkpoint::at(path);
    let meta_path = classifier_meta_path(&checkpoint);
    ensure!(
        meta_path.is_file(),
        "{} is missing: is {} a classifier checkpoint written by this chapter?",
        meta_path.display(),
        path.display()
    );
    let meta = ClassifierMeta::read(&meta_path)?;
    let config = checkpoint.read_meta()?.config;
    let vs = VarStore::new(device);
    let mut model = GptModel::new(&vs.root(), &config)?;
    replace_head(&vs, &mut model, meta.num_classes);
    if let Some(lora) = meta.lora {
        apply_lora(&vs, &mut model, lora)?;
    }
    checkpoint.load_model(&vs)?;
    Ok(Classifier { vs, model, meta })
}

/// Where a LoRA run writes its adapters alone.
pub fn adapters_path(out_dir: &Path) -> PathBuf {
    out_dir.join("lora-adapters.safetensors")
}

/// Appendix E: a LoRA classifier rebuilt from its base and its adapters alone: the backbone
/// from `init`, the 2-class head drawn with `context.seed` as in the run, then the adapters
/// from `adapters` (the small file a LoRA run writes).
pub fn classifier_from_adapters(
    init: &Init,
    adapters: &Path,
    meta: ClassifierMeta,
    context: &RunContext,
) -> Result<Classifier> {
    let lora = meta.lora.context("the classifier description has no LoRA settings")?;
    let loaded = init.load(context, Some(0.0))?;
    let (vs, mut model) = (loaded.vs, loaded.model);
    seed_everything(context.seed);
    replace_head(&vs, &mut model, meta.num_classes);
    apply_lora(&vs, &mut model, lora)?;
    crate::weights::load_partial_state(&vs, adapters)?;
    Ok(Classifier { vs, model, meta })
}

/// Accuracies of a classifier on the book's three splits.
pub fn evaluate(classifier: &Classifier, context: &RunContext) -> Result<Accuracies> {
    let splits = classification::prepare(&context.data)?;
    report_malformed(&splits);
    let loaders = classification::loaders(
        &splits,
        Padding::Tokens(classifier.meta.max_length),
        classifier.model.cfg.context_length as usize,
        8,
    )?;
    loaders.check_token_ids(&classifier.model)?;
    Ok(Accuracies::of(&classifier.model, &loaders, None, classifier.meta.position, context.device))
}

/// Figure 6.16 and 6.17: losses and accuracies against epochs.
fn plot(out_dir: &Path, report: &FinetuneReport) -> Result<()> {
    let history = &report.history;
    if let (Some(first), Some(last)) = (history.evaluations.first(), history.evaluations.last()) {
        let train: Vec<f64> = history.evaluations.iter().map(|e| e.train_loss).collect();
        let val: Vec<f64> = history.evaluations.iter().map(|e| e.val_loss).collect();
        let seen = TopAxis { label: "Examples seen", from: first.examples_seen as f64, to: last.examples_seen as f64 };
        write_loss_plot(&out_dir.join("loss-plot.png"), report.options.train.epochs, &train, &val, seen)?;
    }
    if !history.train_accuracies.is_empty() {
        let xs: Vec<f64> = (1..=history.train_accuracies.len()).map(|e| e as f64).collect();
        Chart {
            series: vec![
                Series { xs: &xs, ys: &history.train_accuracies, color: PALETTE[0], label: "Training accuracy" },
                Series { xs: &xs, ys: &history.val_accuracies, color: PALETTE[1], label: "Validation accuracy" },
            ],
            x_label: "Epochs",
            y_label: "Accuracy",
            top_axis: None,
            width: 800,
            height: 500,
        }
        .write_png(&out_dir.join("accuracy-plot.png"))?;
    }
    Ok(())
}
