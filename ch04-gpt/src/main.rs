//! `cargo run -p ch04-gpt [-- COMMAND]`: chapter 4's walk-through, exercises and text
//! generation with an untrained (seeded) GPT model.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand};
use shared::app::cli::{self, CommonArgs, RunContext};
use shared::app::exercise::ExerciseCommand;
use shared::generate::{generate_greedy_cached, generate_text_simple};
use shared::model::{GptConfig, GptModel};
use shared::tokenizer::Gpt2Tokenizer;
use tch::{nn, Kind, Tensor};

use ch04_gpt::{bench, exercises, walkthrough};

/// Chapter 4, "Implementing a GPT model from scratch to generate text". Without a command:
/// the chapter's walk-through (sections 4.1-4.7) on GPT-2 small, printing what the book prints.
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
    /// Greedy generation with a freshly initialised (seeded, untrained) model
    Generate {
        /// The prompt
        #[arg(long, default_value = walkthrough::PROMPT)]
        prompt: String,
        /// How many tokens to add
        #[arg(long, default_value_t = 10)]
        max_new_tokens: i64,
        /// Decode with a key/value cache (same tokens, faster)
        #[arg(long)]
        kv_cache: bool,
        /// A preset (gpt2-small, gpt2-medium, gpt2-large, gpt2-xl) or a JSON config file
        #[arg(long, default_value = "gpt2-small")]
        config: String,
        /// Also print the token ids
        #[arg(long)]
        ids: bool,
    },
    /// Tokens per second with and without the KV cache (use --release)
    BenchGenerate {
        #[arg(long, default_value_t = 200)]
        max_new_tokens: i64,
        /// A preset or a JSON config file
        #[arg(long, default_value = "gpt2-small")]
        config: String,
        /// float32, bfloat16 or both
        #[arg(long, default_value = "both", value_parser = ["float32", "bfloat16", "both"])]
        dtype: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::run_main(|| run(cli))
}

fn run(cli: Cli) -> Result<()> {
    let context = cli.common.context(env!("CARGO_PKG_NAME"))?;
    match cli.command {
        None => println!("{}", walkthrough::run(context.seed, context.device, &context.out_dir)?),
        Some(Command::Exercises(command)) => command.run(exercises::ALL, &context)?,
        Some(Command::Generate { prompt, max_new_tokens, kv_cache, config, ids }) => {
            generate(&context, &prompt, max_new_tokens, kv_cache, &config, ids)?
        }
        Some(Command::BenchGenerate { max_new_tokens, config, dtype }) => {
            let dtypes = match dtype.as_str() {
                "float32" => vec![Kind::Float],
                "bfloat16" => vec![Kind::BFloat16],
                _ => vec![Kind::Float, Kind::BFloat16],
            };
            let cfg = GptConfig::from_name_or_file(&config)?;
            println!("{}", bench::run(&cfg, &config, max_new_tokens, &dtypes, context.device)?);
        }
    }
    Ok(())
}

fn generate(
    context: &RunContext,
    prompt: &str,
    max_new_tokens: i64,
    kv_cache: bool,
    config: &str,
    ids: bool,
) -> Result<()> {
    let cfg = GptConfig::from_name_or_file(config)?;
    context.seed_everything();
    let vs = nn::VarStore::new(context.device);
    let model = GptModel::new(&vs.root(), &cfg)?;
    let tokenizer = Gpt2Tokenizer::new();
    let prompt_ids: Vec<i64> = tokenizer.encode(prompt).into_iter().map(i64::from).collect();
    let idx = Tensor::from_slice(&prompt_ids).view([1, -1]).to_device(context.device);
    let start = Instant::now();
    let out = if kv_cache {
        generate_greedy_cached(&model, &idx, max_new_tokens, None)?
    } else {
        generate_text_simple(&model, &idx, max_new_tokens, cfg.context_length)?
    };
    let seconds = start.elapsed().as_secs_f64();
    let out_ids = Vec::<i64>::try_from(out.get(0).to_device(tch::Device::Cpu))?;
    let tokens: Vec<u32> = out_ids.iter().map(|&id| id as u32).collect();
    println!("{}", tokenizer.decode(&tokens)?);
    if ids {
        println!("{}", serde_json::to_string(&out_ids)?);
    }
    eprintln!(
        "{max_new_tokens} tokens in {seconds:.2} s ({:.1} tokens/s, {} KV cache)",
        max_new_tokens as f64 / seconds,
        if kv_cache { "with" } else { "without" }
    );
    Ok(())
}
