//! The `dpo` command: preference tuning with DPO as the companion notebook runs it, from a
//! chapter 7 fine-tune (its checkpoint), GPT-2 weights or a random model. The preference
//! records (the bundled `instruction-data-with-preference.json` unless `--data FILE`) are
//! split 85/10/5 in file order; the policy trains against a frozen copy of where it started
//! (or `--reference FILE`, which must be the same model) with AdamW, optionally LoRA-only;
//! the run prints the notebook's lines, answers three validation instructions before and
//! after, and writes the tuned checkpoint `dpo.*`, `metrics.json` and the loss and
//! reward-margin plots.

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::plot::{Chart, Series, PALETTE};
use shared::app::recipe::Reporter;
use shared::core::device::{device_name, seed_everything};
use shared::model::lora::{merge_lora, LoraConfig};
use shared::train::{AdamW, AdamWConfig, Checkpoint, TrainProgress};

use crate::dpo::{dpo_loss_loader, train_model_dpo, DpoEvaluation, DpoHistory, DpoSettings};
use crate::finetune::{self, InstructionMeta, InstructionModel};
use crate::preference::{self, PreferenceCollate, PreferenceDataset, PreferenceLoader, PreferenceRecord};
use crate::records::Splits;
use crate::respond::respond;

/// The run's settings; the defaults are the notebook's (beta 0.1, AdamW at 5e-6 with weight
/// decay 0.01, batches of 8, one epoch, evaluations every 5 steps on 5 batches).
#[derive(Debug, Clone, Serialize)]
pub struct DpoOptions {
    pub beta: f64,
    pub epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub eval_freq: usize,
    pub eval_iter: usize,
    /// Train LoRA adapters of this size on every linear layer instead of every weight.
    pub lora: Option<LoraConfig>,
    /// Use only the first N records.
    pub limit: Option<usize>,
    /// The frozen reference model [default: the policy's starting point].
    pub reference: Option<PathBuf>,
    /// Tokens of the responses answered before and after.
    pub max_new_tokens: i64,
    pub verbose: bool,
}

impl Default for DpoOptions {
    fn default() -> Self {
        Self {
            beta: 0.1,
            epochs: 1,
            lr: 5e-6,
            weight_decay: 0.01,
            batch_size: 8,
            eval_freq: 5,
            eval_iter: 5,
            lora: None,
            limit: None,
            reference: None,
            max_new_tokens: 256,
            verbose: true,
        }
    }
}

/// One validation instruction answered before and after.
#[derive(Debug, Clone, Serialize)]
pub struct ResponsePair {
    pub instruction: String,
    pub chosen: String,
    pub rejected: String,
    pub before: String,
    pub after: String,
}

/// What the run did and wrote.
#[derive(Debug, Clone, Serialize)]
pub struct DpoReport {
    pub options: DpoOptions,
    pub data: PathBuf,
    pub model: String,
    pub device: String,
    pub splits: (usize, usize, usize),
    pub trainable_parameters: i64,
    /// The validation split's loss, rewards and share of pairs won before and after.
    pub val_before: DpoEvaluation,
    pub val_after: DpoEvaluation,
    pub history: DpoHistory,
    pub responses: Vec<ResponsePair>,
    pub checkpoint: PathBuf,
    pub plot: PathBuf,
}

/// Runs DPO on the model `load` gives (twice: the policy, and the frozen reference unless
/// `options.reference` names another checkpoint of the same model).
pub fn run(
    context: &RunContext,
    options: &DpoOptions,
    load: impl Fn() -> Result<InstructionModel>,
) -> Result<DpoReport> {
    ensure!(options.beta > 0.0 && options.beta.is_finite(), "--beta must be positive, got {}", options.beta);
    ensure!(options.batch_size > 0, "the batch size must be at least 1");
    let reporter = Reporter::new(&context.out_dir, options.verbose);
    let data = preference::locate(&context.data)?;
    let mut records = preference::load(&data)?;
    if let Some(limit) = options.limit {
        records.truncate(limit);
    }
    let total = records.len();
    let Splits { train: mut train_records, test: test_records, validation: mut val_records } = Splits::new(records);
    context.create_out_dir()?;

    let mut policy = load()?;
    let frozen = match &options.reference {
        Some(path) => finetune::load_model(path, Some(policy.template), context)?,
        None => load()?,
    };
    let (config, reference) = (policy.loaded.model.cfg.clone(), &frozen.loaded.model);
    ensure!(
        config == reference.cfg,
        "the reference model is not the policy's model: their configs differ ({})",
        config.differences(&reference.cfg).join(", ")
    );
    let template = policy.prompt_template()?;
    let tokenizer = config.tokenizer.build()?;
    let prompt_tokens = |pair: &PreferenceRecord| {
        let prompt = template.format_input(&pair.record);
        template.encode_ids(tokenizer.as_ref(), &prompt).map_or(usize::MAX, |ids| ids.len()) as i64
    };
    // A pair is scored on its responses' tokens within the context: one whose prompt leaves
    // no room for a response token (a model with a short context) would score 0 / 0.
    let before_filter = train_records.len() + val_records.len();
    train_records.retain(|pair| prompt_tokens(pair) + 1 < config.context_length);
    val_records.retain(|pair| prompt_tokens(pair) + 1 < config.context_length);
    let dropped = before_filter - train_records.len() - val_records.len();
    ensure!(
        train_records.len() >= options.batch_size && !val_records.is_empty(),
        "{} preference records give {} training and {} validation records: too few for batches of {}{}",
        total,
        train_records.len(),
        val_records.len(),
        options.batch_size,
        if dropped > 0 {
            format!(" ({dropped} left out: their prompts fill the model's context of {} tokens)", config.context_length)
        } else {
            String::new()
        }
    );
    if dropped > 0 {
        reporter.say(format!(
            "{dropped} training and validation pairs left out: their prompts leave no room for a response in the \
             model's context of {} tokens",
            config.context_length
        ));
    }
    let collate = PreferenceCollate { allowed_max_length: Some(config.context_length as usize), mask_prompt: true };
    let loader = |records: &[PreferenceRecord], train: bool| -> Result<PreferenceLoader> {
        Ok(PreferenceLoader {
            dataset: PreferenceDataset::new(records, template.as_ref(), tokenizer.as_ref())?,
            batch_size: options.batch_size,
            shuffle: train,
            drop_last: train,
            collate,
        })
    };
    let (train, val) = (loader(&train_records, true)?, loader(&val_records, false)?);
    reporter.say(format!(
        "{} preference records from {}: training {}, test {}, validation {}; model: {}",
        total,
        data.display(),
        train_records.len(),
        test_records.len(),
        val_records.len(),
        policy.loaded.description
    ));

    let device = context.device;
    let answer = |model: &InstructionModel, pair: &PreferenceRecord| {
        seed_everything(context.seed);
        respond(&model.loaded.model, template.as_ref(), &pair.record, options.max_new_tokens, device)
    };
    // The first three validation prompts that leave room for the response in the context.
    let fits = |pair: &&PreferenceRecord| prompt_tokens(pair) + options.max_new_tokens <= config.context_length;
    let shown: Vec<PreferenceRecord> = val_records.iter().filter(fits).take(3).cloned().collect();
    let before: Vec<String> = shown.iter().map(|pair| answer(&policy, pair)).collect::<Result<_>>()?;
    seed_everything(context.seed);
    let val_before = dpo_loss_loader(&val, &policy.loaded.model, reference, options.beta, None, device)?;
    reporter.say(format!("Before DPO (validation): {}", describe(&val_before)));

    let vs = &policy.loaded.vs;
    let (_, trainable_parameters) = finetune::add_adapters(vs, &mut policy.loaded.model, options.lora, &reporter)?;
    seed_everything(context.seed);
    let adamw = AdamWConfig { lr: options.lr, weight_decay: options.weight_decay, ..AdamWConfig::default() };
    let mut optimizer = AdamW::new(vs, adamw)?;
    let model = &mut policy.loaded.model;
    let settings = DpoSettings {
        epochs: options.epochs,
        beta: options.beta,
        eval_freq: options.eval_freq,
        eval_iter: options.eval_iter,
        verbose: options.verbose,
    };
    let history = train_model_dpo(model, reference, &mut optimizer, &train, &val, &settings, device)?;
    reporter.say(format!("DPO completed in {:.2} minutes.", history.train_seconds / 60.0));
    let val_after = dpo_loss_loader(&val, model, reference, options.beta, None, device)?;
    reporter.say(format!("After DPO (validation): {}", describe(&val_after)));
    if options.lora.is_some() {
        merge_lora(vs, model);
    }
    let tuned = &policy;
    let after: Vec<String> = shown.iter().map(|pair| answer(tuned, pair)).collect::<Result<_>>()?;
    let responses: Vec<ResponsePair> = shown
        .iter()
        .zip(before.into_iter().zip(after))
        .map(|(pair, (before, after))| ResponsePair {
            instruction: template.format_input(&pair.record),
            chosen: pair.chosen.clone(),
            rejected: pair.rejected.clone(),
            before,
            after,
        })
        .collect();
    for pair in &responses {
        reporter.say(format!(
            "{}\n\nChosen:   {}\nRejected: {}\nBefore:   {}\nAfter:    {}\n{}",
            pair.instruction,
            pair.chosen,
            pair.rejected,
            pair.before,
            pair.after,
            "-".repeat(40)
        ));
    }

    let checkpoint = Checkpoint::at(&reporter.path("dpo"));
    let meta = InstructionMeta { template: tuned.template, mask_instructions: true, lora: options.lora };
    finetune::save_model(
        &checkpoint,
        &tuned.loaded.vs,
        &tuned.loaded.model.cfg,
        &meta,
        TrainProgress::default(),
        context.seed,
    )?;
    let plot = reporter.path("dpo-plot.png");
    plot_history(&history, &plot)?;
    let report = DpoReport {
        options: options.clone(),
        data,
        model: tuned.loaded.description.clone(),
        device: device_name(device),
        splits: (train_records.len(), test_records.len(), val_records.len()),
        trainable_parameters,
        val_before,
        val_after,
        history,
        responses,
        checkpoint: checkpoint.model.clone(),
        plot,
    };
    reporter.write_metrics(&report)?;
    reporter.say(format!(
        "Wrote {}, dpo-plot.png and metrics.json in {}",
        report.checkpoint.display(),
        context.out_dir.display()
    ));
    Ok(report)
}

fn describe(evaluation: &DpoEvaluation) -> String {
    format!(
        "loss {:.3}, chosen reward {:.3}, rejected reward {:.3}, margin {:.3}, chosen preferred in {:.1} % of pairs",
        evaluation.loss,
        evaluation.chosen_reward,
        evaluation.rejected_reward,
        evaluation.margin,
        evaluation.accuracy * 100.0
    )
}

/// The losses and the reward margins on both splits against the steps.
fn plot_history(history: &DpoHistory, path: &std::path::Path) -> Result<()> {
    let steps: Vec<f64> = history.evaluations.iter().map(|log| log.step as f64).collect();
    let pick = |f: fn(&crate::dpo::DpoLog) -> f64| history.evaluations.iter().map(f).collect::<Vec<f64>>();
    let series = [
        (pick(|l| l.train.loss), "training loss"),
        (pick(|l| l.val.loss), "validation loss"),
        (pick(|l| l.train.margin), "training reward margin"),
        (pick(|l| l.val.margin), "validation reward margin"),
    ];
    Chart {
        series: series
            .iter()
            .enumerate()
            .map(|(i, (ys, label))| Series { xs: &steps, ys, color: PALETTE[i % PALETTE.len()], label })
            .collect(),
        x_label: "Step",
        y_label: "DPO loss / reward margin",
        top_axis: None,
        width: 800,
        height: 500,
    }
    .write_png(path)
    .context("writing the DPO plot")
}
