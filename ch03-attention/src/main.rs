//! `cargo run -p ch03-attention [-- COMMAND]`: chapter 3's walk-through, exercises and the
//! multi-head attention benchmark.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use shared::app::cli::{self, CommonArgs};
use shared::app::exercise::ExerciseCommand;
use tch::Kind;

use ch03_attention::bench::{self, BenchConfig, BenchTable};
use ch03_attention::{exercises, walkthrough};

/// Chapter 3, "Coding attention mechanisms". Without a command: the chapter's walk-through
/// on the six-word example (sections 3.3-3.6), printing what the book prints.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Dtypes {
    Float32,
    Bfloat16,
    Both,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Exercises(ExerciseCommand),
    /// Time forward and forward+backward of each multi-head attention variant (use --release)
    Bench {
        #[arg(long, default_value_t = 8)]
        batch: i64,
        #[arg(long, default_value_t = 1024)]
        tokens: i64,
        /// d_in = d_out
        #[arg(long, default_value_t = 768)]
        emb_dim: i64,
        #[arg(long, default_value_t = 12)]
        heads: i64,
        /// Timed runs per measurement (the median is printed)
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        #[arg(long, value_enum, default_value_t = Dtypes::Both)]
        dtype: Dtypes,
        /// Print the table as JSON
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::run_main(|| run(cli))
}

fn run(cli: Cli) -> Result<()> {
    let context = cli.common.context(env!("CARGO_PKG_NAME"))?;
    match cli.command {
        None => println!("{}", walkthrough::run(context.seed)?),
        Some(Command::Exercises(command)) => command.run(exercises::ALL, &context)?,
        Some(Command::Bench { batch, tokens, emb_dim, heads, repeats, dtype, json }) => {
            let dtypes = match dtype {
                Dtypes::Float32 => vec![Kind::Float],
                Dtypes::Bfloat16 => vec![Kind::BFloat16],
                Dtypes::Both => vec![Kind::Float, Kind::BFloat16],
            };
            let config = BenchConfig { batch, tokens, emb_dim, heads, repeats, dtypes, device: context.device };
            if json {
                println!("{}", serde_json::to_string_pretty(&bench::run(&config, |_| {})?)?);
            } else {
                // The header first, then each row as soon as it is measured.
                println!("{}", BenchTable::empty(&config));
                bench::run(&config, |row| println!("{row}"))?;
            }
        }
    }
    Ok(())
}
