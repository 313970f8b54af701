//! `cargo run -p ch02-tokenization [-- COMMAND]`: chapter 2's walk-through, exercises and
//! byte-pair-encoding tools.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use shared::app::cli::{self, CommonArgs, RunContext};
use shared::app::exercise::ExerciseCommand;
use shared::data::{SMS_SPAM_COLLECTION, THE_VERDICT};
use shared::tokenizer::Gpt2Tokenizer;

use ch02_tokenization::bpe::BytePairEncoder;
use ch02_tokenization::{bpe_train, exercises, walkthrough};

/// Chapter 2, "Working with text data". Without a command: the chapter's walk-through on
/// The Verdict (sections 2.2-2.8), printing what the book prints.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Exercises(ExerciseCommand),
    /// Show GPT-2's token ids for a text, and the piece behind each id
    Encode {
        /// The text to encode (<|endoftext|> is recognised)
        text: String,
    },
    /// Train a byte-level BPE vocabulary from scratch on The Verdict (or --data FILE)
    BpeTrain {
        /// Vocabulary size, including the 256 bytes and <|endoftext|>
        #[arg(long, default_value_t = 1000)]
        vocab_size: usize,
        /// How many of the first merges to print
        #[arg(long, default_value_t = 10)]
        show_merges: usize,
        /// A text to encode and decode with the trained vocabulary
        #[arg(long, default_value = "Jack Gisburn painted a picture.")]
        sample: String,
    },
    /// Check our from-scratch GPT-2 encoder against tiktoken-rs on The Verdict and the SMS data set
    BpeCompare,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::run_main(|| run(cli))
}

fn run(cli: Cli) -> Result<()> {
    let context = cli.common.context(env!("CARGO_PKG_NAME"))?;
    match cli.command {
        None => println!("{}", walkthrough::run(&context)?),
        Some(Command::Exercises(command)) => command.run(exercises::ALL, &context)?,
        Some(Command::Encode { text }) => encode(&text)?,
        Some(Command::BpeTrain { vocab_size, show_merges, sample }) => {
            bpe_train_command(&context, vocab_size, show_merges, &sample)?
        }
        Some(Command::BpeCompare) => bpe_compare(&context)?,
    }
    Ok(())
}

fn encode(text: &str) -> Result<()> {
    let tokenizer = Gpt2Tokenizer::new();
    let ids = tokenizer.encode(text);
    println!("{} tokens: {ids:?}", ids.len());
    for id in ids {
        println!("{id:>6}  {:?}", tokenizer.decode(&[id])?);
    }
    Ok(())
}

fn bpe_train_command(context: &RunContext, vocab_size: usize, show_merges: usize, sample: &str) -> Result<()> {
    let text = context.data.read_to_string(&THE_VERDICT)?;
    let trained = bpe_train::train(&text, vocab_size)?;
    let encoder = &trained.encoder;
    println!(
        "Trained on {} bytes: {} merges, vocabulary of {}",
        text.len(),
        trained.merges.len(),
        encoder.vocab_size()
    );
    for merge in trained.merges.iter().take(show_merges) {
        let piece = |id| String::from_utf8_lossy(encoder.token_bytes(id).unwrap_or_default()).into_owned();
        println!(
            "  {:>5}: {:?} + {:?} -> {:?} ({} times)",
            merge.merged,
            piece(merge.left),
            piece(merge.right),
            piece(merge.merged),
            merge.count
        );
    }
    let ids = encoder.encode(&text)?;
    println!(
        "The training text encodes to {} tokens ({:.2} bytes per token; GPT-2: {})",
        ids.len(),
        text.len() as f64 / ids.len() as f64,
        Gpt2Tokenizer::new().encode(&text).len()
    );
    let sample_ids = encoder.encode(sample)?;
    let decoded = encoder.decode(&sample_ids)?;
    println!(
        "{sample:?} -> {sample_ids:?} -> {decoded:?} (round trip {})",
        if decoded == sample { "ok" } else { "FAILED" }
    );
    Ok(())
}

fn bpe_compare(context: &RunContext) -> Result<()> {
    let ours = BytePairEncoder::gpt2()?;
    let reference = Gpt2Tokenizer::new();
    for set in [THE_VERDICT, SMS_SPAM_COLLECTION] {
        let locator = if set == THE_VERDICT { context.data.clone() } else { context.data.without_explicit() };
        let text = locator.read_to_string(&set).with_context(|| format!("reading {}", set.name))?;
        let (mine, theirs) = (ours.encode(&text)?, reference.encode(&text));
        let verdict = if mine == theirs { "identical" } else { "DIFFERENT" };
        println!(
            "{:<20} {:>8} tokens (ours) {:>8} tokens (tiktoken-rs): {verdict}",
            set.name,
            mine.len(),
            theirs.len()
        );
    }
    Ok(())
}
