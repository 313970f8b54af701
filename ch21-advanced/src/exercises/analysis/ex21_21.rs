//! Exercise 21.21: fine-tuning a pretrained model on a small corpus of another domain. The
//! default domain is the 1,100 responses of chapter 7's instruction data (modern expository
//! English, far from the Shakespeare the project's model learnt); `--data FILE` takes any
//! text, its documents separated by blank lines. The last tenth of the documents is held
//! out; the rest, tokenized with the model's own tokenizer (GPT-2's BPE) and joined by
//! `<|endoftext|>`, is cut into windows of up to 256 tokens and trained on for 3 epochs at
//! learning rate 5e-5 (AdamW, weight decay 0.1, batches of 8). Before and after: the
//! perplexity of the held-out documents, of held-out Shakespeare (what fine-tuning costs the
//! old domain), and samples from the same prompts and seed.

use std::fmt;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use shared::app::cli::RunContext;
use shared::app::exercise::Report;
use shared::core::device::seed_everything;
use shared::data::dataset::{DataLoader, GptDataset};
use shared::data::INSTRUCTION_DATA;

use crate::exercises::Exercise;
use shared::data::dataset::BatchSource;
use shared::model::GptModel;
use shared::tokenizer::{TokenId, Tokenizer};
use shared::train::{
    train_model, AdamW, AdamWConfig, Evaluation, NextTokenLoss, TrainHooks, TrainProgress, TrainSettings,
};

use crate::analysis::{data_file, held_out_text, seeded_sample};
use crate::models::Model;
use crate::pretrained::{subject, Pretraining};
use crate::quality::{perplexity_of, token_log_probs};

pub const EXERCISE: Exercise = Exercise {
    id: "21.21",
    summary: "fine-tuning the pretrained model on a small domain corpus (chapter 7's instruction responses, or --data FILE): 3 epochs at lr 5e-5; held-out perplexity and samples before and after",
    run: |context| {
        let model = subject(context, &context.flags, &Pretraining::standard())?;
        Report::new(&run(context, &model, &FineTuning::BOOK)?)
    },
};

/// The fine-tuning run's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FineTuning {
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    /// The longest training window (the model's context when shorter).
    pub window: usize,
    /// Prompts sampled from, and tokens sampled after each.
    pub samples: usize,
    pub new_tokens: i64,
    /// Held-out Shakespeare scored (its first tokens).
    pub old_domain_tokens: usize,
}

impl FineTuning {
    /// The exercise's settings: 3 epochs at 5e-5.
    pub const BOOK: Self =
        Self { epochs: 3, lr: 5e-5, batch_size: 8, window: 256, samples: 3, new_tokens: 40, old_domain_tokens: 4000 };
}

/// Perplexity before and after.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BeforeAfter {
    pub before: f64,
    pub after: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub prompt: String,
    pub before: String,
    pub after: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_21 {
    pub model: String,
    pub domain: String,
    pub settings: FineTuning,
    pub train_documents: usize,
    pub test_documents: usize,
    pub train_tokens: usize,
    pub test_tokens: usize,
    pub window: usize,
    pub steps: i64,
    pub seconds: f64,
    /// The training and held-out loss after each epoch.
    pub epochs: Vec<Evaluation>,
    pub held_out_perplexity: BeforeAfter,
    pub shakespeare_perplexity: BeforeAfter,
    pub samples: Vec<Sample>,
}

#[derive(Deserialize)]
struct Record {
    output: String,
}

/// The domain's name and documents: `--data FILE` split at blank lines, or the instruction
/// data's responses.
pub fn domain_documents(context: &RunContext) -> Result<(String, Vec<String>)> {
    if let Some((path, text)) = data_file(context)? {
        let documents = text.split("\n\n").map(str::trim).filter(|d| !d.is_empty()).map(String::from).collect();
        return Ok((path, documents));
    }
    let json = context.data.read_to_string(&INSTRUCTION_DATA)?;
    let records: Vec<Record> = serde_json::from_str(&json).context("parsing the instruction data")?;
    let documents = records.into_iter().map(|r| r.output.trim().to_string()).filter(|d| !d.is_empty()).collect();
    Ok(("the responses of chapter 7's instruction data".to_string(), documents))
}

/// The documents' tokens, each followed by the end-of-text token when the tokenizer has one.
fn token_stream(tokenizer: &dyn Tokenizer, documents: &[String]) -> Result<Vec<TokenId>> {
    let mut ids = Vec::new();
    for document in documents {
        ids.extend(tokenizer.encode(document)?);
        ids.extend(tokenizer.end_of_text());
    }
    Ok(ids)
}

fn perplexity(model: &GptModel, ids: &[TokenId]) -> Result<f64> {
    Ok(perplexity_of(&token_log_probs(model, ids)?))
}

/// Fine-tunes a copy of `model` on the domain corpus with `settings`.
pub fn run(context: &RunContext, model: &Model, settings: &FineTuning) -> Result<Ex21_21> {
    let (domain, documents) = domain_documents(context)?;
    ensure!(documents.len() >= 2, "{domain} has {} documents: fine-tuning needs at least 2", documents.len());
    let held_out = (documents.len() / 10).max(1);
    let (train_documents, test_documents) = documents.split_at(documents.len() - held_out);
    let base = model.gpt();
    let tokenizer = base.cfg.tokenizer.build()?;
    let train_ids = token_stream(tokenizer.as_ref(), train_documents)?;
    let test_ids = token_stream(tokenizer.as_ref(), test_documents)?;
    let window = settings.window.min(base.cfg.context_length as usize).min(test_ids.len() - 1);
    ensure!(train_ids.len() > window, "{domain}'s training part ({} tokens) is shorter than a window", train_ids.len());
    let shakespeare = tokenizer.encode(&held_out_text(context)?)?;
    let shakespeare = &shakespeare[..shakespeare.len().min(settings.old_domain_tokens)];
    let prompts: Vec<String> = test_documents
        .iter()
        .take(settings.samples)
        .map(|d| d.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
        .collect();
    let sample = |gpt: &GptModel, prompt: &str| seeded_sample(gpt, prompt, settings.new_tokens, context.seed, 160);
    let before: Vec<String> = prompts.iter().map(|p| sample(base, p)).collect::<Result<_>>()?;
    let (held_before, old_before) = (perplexity(base, &test_ids)?, perplexity(base, shakespeare)?);

    // A trainable copy, loaded again from where the model came from.
    let tuned = model.source.source().load(context.device, context.seed)?;
    let train = DataLoader::new(GptDataset::new(&train_ids, window, window)?, settings.batch_size, true, false)?;
    let test = DataLoader::new(GptDataset::new(&test_ids, window, window)?, settings.batch_size, false, false)?;
    let mut optimizer = AdamW::new(&tuned.vs, AdamWConfig { lr: settings.lr, ..AdamWConfig::default() })?;
    let steps_per_epoch = train.batch_count();
    let train_settings = TrainSettings {
        num_epochs: settings.epochs,
        eval_freq: steps_per_epoch,
        // The losses after each epoch: all held-out windows, as many training ones.
        eval_iter: test.batch_count(),
        start_context: None,
        epoch_seed: Some(context.seed),
        verbose: false,
        mode: shared::train::TrainMode::Book,
        schedule: Default::default(),
    };
    let mut progress = TrainProgress::default();
    let mut nothing = |_: &TrainProgress, _: &AdamW| Ok(());
    let hooks = TrainHooks {
        loss: &NextTokenLoss,
        tokenizer: tokenizer.as_ref(),
        on_epoch_end: &mut nothing,
        after_backward: None,
    };
    seed_everything(context.seed);
    let history = train_model(
        &tuned.model,
        &mut optimizer,
        &train,
        &test,
        &train_settings,
        &mut progress,
        context.device,
        hooks,
    )?;
    let after: Vec<String> = prompts.iter().map(|p| sample(&tuned.model, p)).collect::<Result<_>>()?;
    Ok(Ex21_21 {
        model: model.name.clone(),
        domain,
        settings: *settings,
        train_documents: train_documents.len(),
        test_documents: test_documents.len(),
        train_tokens: train_ids.len(),
        test_tokens: test_ids.len(),
        window,
        steps: progress.global_step + 1,
        seconds: history.train_seconds,
        epochs: history.evaluations,
        held_out_perplexity: BeforeAfter { before: held_before, after: perplexity(&tuned.model, &test_ids)? },
        shakespeare_perplexity: BeforeAfter { before: old_before, after: perplexity(&tuned.model, shakespeare)? },
        samples: prompts
            .into_iter()
            .zip(before.into_iter().zip(after))
            .map(|(prompt, (before, after))| Sample { prompt, before, after })
            .collect(),
    })
}

impl fmt::Display for Ex21_21 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Model: {}", self.model)?;
        writeln!(
            f,
            "Domain: {}: {} documents ({} tokens) to train on, {} ({} tokens) held out",
            self.domain, self.train_documents, self.train_tokens, self.test_documents, self.test_tokens
        )?;
        writeln!(
            f,
            "{} epochs at lr {:e}, batches of {} windows of {} tokens: {} steps in {:.0} s",
            self.settings.epochs, self.settings.lr, self.settings.batch_size, self.window, self.steps, self.seconds
        )?;
        writeln!(f, "| | before | after |")?;
        writeln!(f, "|---|---:|---:|")?;
        for (name, p) in [
            ("held-out documents: perplexity", self.held_out_perplexity),
            ("held-out Shakespeare: perplexity", self.shakespeare_perplexity),
        ] {
            writeln!(f, "| {name} | {:.1} | {:.1} |", p.before, p.after)?;
        }
        for e in &self.epochs {
            writeln!(f, "After epoch {}: training loss {:.3}, held-out loss {:.3}", e.epoch, e.train_loss, e.val_loss)?;
        }
        writeln!(f, "\nSamples (temperature 0.8, top-k 40, the same seed):")?;
        for s in &self.samples {
            writeln!(f, "- before: {}", s.before)?;
            writeln!(f, "  after:  {}", s.after)?;
        }
        Ok(())
    }
}
