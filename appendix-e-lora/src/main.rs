//! `cargo run --release -p appendix-e-lora [-- COMMAND]`: appendix E's LoRA fine-tuning of
//! the chapter 6 spam classifier, its parameter counts and a comparison with chapter 6.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use appendix_e_lora::{counts, exercises};
use clap::{Args, Parser, Subcommand};
use shared::app::cli::{self, CommonArgs, RunContext};
use shared::app::exercise::ExerciseCommand;
use shared::app::finetune::{self, Chapter6, ClassifierMeta, FinetuneOptions, FinetuneReport};
use shared::app::model_source::InitArgs;
use shared::app::recipe::{TrainDefaults, TrainFlags};
use shared::model::classifier::{classify, Trainable};

use shared::model::lora::{merge_lora, LoraConfig};

/// Appendix E, "Parameter-efficient fine-tuning with LoRA". Without a command: chapter 6's
/// spam classifier fine-tuned with LoRA adapters (rank 16, alpha 16) on every linear layer of
/// GPT-2 124M, all other weights frozen; writes the splits, plots, metrics, the classifier and
/// the adapters alone (lora-adapters.safetensors) to the output folder.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    run: RunArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    backbone: InitArgs,
    /// LoRA rank
    #[arg(long, global = true, default_value_t = 16)]
    rank: i64,
    /// LoRA alpha (the update is scaled by alpha / rank)
    #[arg(long, global = true, default_value_t = 16.0)]
    alpha: f64,
    #[command(flatten)]
    train: TrainFlags<LoraRun>,
}

/// Chapter 6's training defaults, as flags that may also follow a subcommand.
#[derive(Debug, Clone, PartialEq)]
struct LoraRun;

impl TrainDefaults for LoraRun {
    const EPOCHS: &'static str = Chapter6::EPOCHS;
    const LR: Option<&'static str> = Chapter6::LR;
    const WEIGHT_DECAY: Option<&'static str> = Chapter6::WEIGHT_DECAY;
    const BATCH_SIZE: &'static str = Chapter6::BATCH_SIZE;
    const EVAL_FREQ: &'static str = Chapter6::EVAL_FREQ;
    const EVAL_ITER: &'static str = Chapter6::EVAL_ITER;
    const GLOBAL: bool = true;
}

impl RunArgs {
    fn lora(&self) -> LoraConfig {
        LoraConfig { rank: self.rank, alpha: self.alpha }
    }

    fn options(&self) -> Result<FinetuneOptions> {
        let lora = self.lora();
        lora.validate()?;
        Ok(FinetuneOptions {
            init: self.backbone.init()?,
            lora: Some(lora),
            train: self.train.clone().into_chapter(),
            ..FinetuneOptions::default()
        })
    }
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Exercises(ExerciseCommand),
    /// Trainable parameters of the GPT-2 124M classifier before and after freezing, and of its LoRA adapters
    Counts {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Fine-tune with LoRA and, from the same start, chapter 6's way (last block, final norm, head); compare
    Compare,
    /// Classify texts with a LoRA classifier: a checkpoint, or the base (--init ...) plus the adapters alone
    Classify {
        /// The classifier written by the run (NAME.safetensors or NAME.json)
        #[arg(long, value_name = "FILE", required_unless_present = "adapters")]
        classifier: Option<PathBuf>,
        /// The adapters alone (lora-adapters.safetensors), applied to the base model given by --init
        #[arg(long, value_name = "FILE", conflicts_with = "classifier")]
        adapters: Option<PathBuf>,
        /// Fold the adapters into the base weights first (same outputs, faster inference)
        #[arg(long)]
        merge: bool,
        #[arg(required = true)]
        texts: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::run_main(|| run(cli))
}

fn run(cli: Cli) -> Result<()> {
    let context = cli.common.context(env!("CARGO_PKG_NAME"))?;
    match cli.command {
        None => {
            let report = finetune::run(&context, &cli.run.options()?)?;
            println!("Time per epoch: {:.2} minutes", minutes_per_epoch(&report));
        }
        Some(Command::Exercises(command)) => command.run(exercises::ALL, &context)?,
        Some(Command::Counts { json }) => {
            let counts = counts::run(&counts::book_classifier_config(), "GPT-2 124M", cli.run.lora())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&counts)?);
            } else {
                println!("{counts}");
            }
        }
        Some(Command::Compare) => compare(&context, &cli.run)?,
        Some(Command::Classify { classifier, adapters, merge, texts }) => {
            let mut classifier = match (classifier, adapters) {
                (Some(path), _) => finetune::load_classifier(&path, context.device)?,
                (None, Some(adapters)) => {
                    let meta = ClassifierMeta {
                        num_classes: 2,
                        max_length: max_length_beside(&adapters)?,
                        position: shared::model::classifier::TokenPosition::Last,
                        lora: Some(cli.run.lora()),
                    };
                    finetune::classifier_from_adapters(&cli.run.backbone.init()?, &adapters, meta, &context)?
                }
                (None, None) => bail!("give --classifier FILE or --adapters FILE"),
            };
            if merge {
                merge_lora(&classifier.vs, &mut classifier.model);
            }
            for text in texts {
                let meta = &classifier.meta;
                let (label, p) = classify(&classifier.model, &text, meta.max_length, meta.position, context.device)?;
                let name = if label == 1 { "spam" } else { "not spam" };
                println!("{name} ({:.1}%): {text}", p * 100.0);
            }
        }
    }
    Ok(())
}

/// The padding length the run used, from the classifier description beside the adapters.
fn max_length_beside(adapters: &std::path::Path) -> Result<usize> {
    let path = adapters.with_file_name("classifier.classifier.json");
    let meta = ClassifierMeta::read(&path).context("the run writes it beside the adapters")?;
    Ok(meta.max_length)
}

fn minutes_per_epoch(report: &FinetuneReport) -> f64 {
    report.history.train_seconds / 60.0 / report.options.train.epochs.max(1) as f64
}

/// LoRA against chapter 6's last-block fine-tuning, from the same backbone.
fn compare(context: &RunContext, args: &RunArgs) -> Result<()> {
    let lora_options = args.options()?;
    let last_block = FinetuneOptions { lora: None, trainable: Trainable::LastBlock, ..lora_options.clone() };
    let in_dir = |name: &str| RunContext { out_dir: context.out_dir.join(name), ..context.clone() };
    let lora = finetune::run(&in_dir("lora"), &lora_options)?;
    let chapter6 = finetune::run(&in_dir("last-block"), &last_block)?;
    println!(
        "\n{:<28} {:>12} {:>8} {:>10} {:>8} {:>16}",
        "fine-tuning", "trainable", "train", "validation", "test", "minutes/epoch"
    );
    for (name, report) in [("LoRA (all linear layers)", &lora), ("last block (chapter 6)", &chapter6)] {
        let a = report.accuracies;
        println!(
            "{name:<28} {:>12} {:>7.2}% {:>9.2}% {:>7.2}% {:>16.2}",
            report.trainable_parameters,
            a.train * 100.0,
            a.validation * 100.0,
            a.test * 100.0,
            minutes_per_epoch(report)
        );
    }
    Ok(())
}
