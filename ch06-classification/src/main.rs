//! `cargo run --release -p ch06-classification [-- COMMAND]`: chapter 6's fine-tuning run,
//! classification of new texts, evaluation and exercises.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use ch06_classification::exercises;
use clap::{Args, Parser, Subcommand};
use shared::app::cli::{self, CommonArgs};
use shared::app::exercise::ExerciseCommand;
use shared::app::finetune::{self, Chapter6, FinetuneOptions};
use shared::app::model_source::InitArgs;
use shared::app::recipe::TrainFlags;
use shared::data::classification::Padding;
use shared::model::classifier::{classify, TokenPosition, Trainable};

/// Chapter 6, "Fine-tuning for classification". Without a command: the book's run, which
/// fine-tunes GPT-2 124M (the last block, the final norm and a new 2-class head) to tell spam
/// from ham on the balanced SMS Spam Collection, and writes the splits, plots, metrics and
/// the classifier to the output folder. The run's flags are also the exercises' settings:
/// --max-length context (6.1), --trainable all (6.2), --position first (6.3); `exercise 6.N`
/// runs the main setting and the exercise's from these flags (--init, --config, --limit, ...).
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

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    backbone: InitArgs,
    /// Pad and cut texts to: longest (the longest training text, as the book), context (the model's context, exercise 6.1) or a number of tokens
    #[arg(long, default_value = "longest", value_name = "longest|context|N")]
    max_length: Padding,
    /// Use only the first N messages of each split (a quick experiment)
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Which parameters to train
    #[arg(long, value_enum, default_value = "last-block")]
    trainable: Trainable,
    /// Which output token decides the class
    #[arg(long, value_enum, default_value = "last")]
    position: TokenPosition,
    #[command(flatten)]
    train: TrainFlags<Chapter6>,
}

impl RunArgs {
    fn options(&self) -> Result<FinetuneOptions> {
        let init = self.backbone.init()?;
        Ok(FinetuneOptions {
            init,
            padding: self.max_length,
            limit: self.limit,
            trainable: self.trainable,
            position: self.position,
            train: self.train.clone(),
            ..FinetuneOptions::default()
        })
    }
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Exercises(ExerciseCommand),
    /// Classify texts with a fine-tuned classifier
    Classify {
        /// The classifier written by the run (NAME.safetensors or NAME.json)
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        /// The texts
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// Training, validation and test accuracy of a fine-tuned classifier
    Eval {
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
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
            finetune::run(&context, &cli.run.options()?)?;
        }
        Some(Command::Exercises(command)) => command.run_with_flags(exercises::ALL, context, |json| {
            Ok(FinetuneOptions { verbose: !json, ..cli.run.options()? })
        })?,
        Some(Command::Classify { checkpoint, texts }) => {
            let classifier = finetune::load_classifier(&checkpoint, context.device)?;
            for text in texts {
                let (label, probability) = classify(
                    &classifier.model,
                    &text,
                    classifier.meta.max_length,
                    classifier.meta.position,
                    context.device,
                )?;
                let name = if label == 1 { "spam" } else { "not spam" };
                println!("{name} ({:.1}%): {text}", probability * 100.0);
            }
        }
        Some(Command::Eval { checkpoint }) => {
            let classifier = finetune::load_classifier(&checkpoint, context.device)?;
            println!("{}", finetune::evaluate(&classifier, &context)?);
        }
    }
    Ok(())
}
