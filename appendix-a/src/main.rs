//! `cargo run -p appendix-a [-- COMMAND]`: appendix A's walk-through and exercises.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use shared::cli::{self, CommonArgs};
use shared::exercise::ExerciseCommand;

use appendix_a::{exercises, walkthrough};

/// Appendix A, "Introduction to PyTorch", with tch. Without a command: the walk-through of
/// tensors, autograd, a multilayer perceptron, seeded data loaders, training, saving and
/// loading, and devices. The trained model goes to --out-dir.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<ExerciseCommand>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::run_main(|| run(cli))
}

fn run(cli: Cli) -> Result<()> {
    let context = cli.common.context(env!("CARGO_PKG_NAME"))?;
    match cli.command {
        None => println!("{}", walkthrough::run(context.seed, context.device, &context.out_dir)?),
        Some(command) => command.run(exercises::ALL, &context)?,
    }
    Ok(())
}
