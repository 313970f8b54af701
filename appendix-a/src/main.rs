//! `cargo run -p appendix-a [-- COMMAND]`: appendix A's walk-through, exercises and
//! data-parallel training.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use shared::app::cli::{self, CommonArgs, RunContext};
use shared::app::exercise::ExerciseCommand;
use shared::train::distributed::{self, Backend, Rendezvous};

use appendix_a::ddp::{self, DdpOptions};
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
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Exercises(ExerciseCommand),
    /// Section A.9.3's data-parallel training over LibTorch's c10d: starts --nproc-per-node processes on this machine, or, with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set (as torchrun sets them), runs as that rank
    Ddp(DdpArgs),
}

#[derive(Args)]
struct DdpArgs {
    /// Processes to start on this machine (ignored when RANK is set)
    #[arg(long, default_value_t = 2)]
    nproc_per_node: usize,
    /// gloo: CPU tensors over TCP (the default); nccl: CUDA tensors
    #[arg(long, value_enum, default_value = "gloo")]
    backend: Backend,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Examples per process and step
    #[arg(long, default_value_t = 2)]
    batch_size: usize,
    #[arg(long, default_value_t = 0.5)]
    lr: f64,
    /// How long a process waits for the others before giving up with an error
    #[arg(long, default_value_t = 60.0)]
    timeout_seconds: f64,
    /// Write every rank's weights (ddp-rank<R>.safetensors), not only rank 0's model
    #[arg(long)]
    save_every_rank: bool,
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
        Some(Command::Ddp(args)) => run_ddp(&args, &context)?,
    }
    Ok(())
}

fn run_ddp(args: &DdpArgs, context: &RunContext) -> Result<()> {
    anyhow::ensure!(
        args.timeout_seconds > 0.0 && args.timeout_seconds.is_finite(),
        "--timeout-seconds must be positive"
    );
    anyhow::ensure!(args.batch_size >= 1 && args.epochs >= 1, "--batch-size and --epochs must be at least 1");
    let Some(rendezvous) = Rendezvous::from_env()? else {
        // The launcher: the same command once per rank.
        return distributed::launch(args.nproc_per_node, &std::env::args().skip(1).collect::<Vec<_>>());
    };
    let options = DdpOptions {
        backend: args.backend,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: context.seed,
        timeout: Duration::from_secs_f64(args.timeout_seconds),
        out_dir: context.out_dir.clone(),
        save_every_rank: args.save_every_rank,
    };
    let rank = rendezvous.rank;
    let report = ddp::run_rank(&rendezvous, &options).map_err(|err| err.context(format!("rank {rank}")))?;
    if let (Some(train), Some(test)) = (report.train_accuracy, report.test_accuracy) {
        println!("[rank 0] Training accuracy {train}");
        println!("[rank 0] Test accuracy {test}");
        println!(
            "[rank 0] {} steps on {} in {:.3} s, {:.3} s of it in all-reduce ({} bucket{}); model saved to {}",
            report.steps,
            report.device,
            report.seconds,
            report.communication_seconds,
            report.buckets,
            if report.buckets == 1 { "" } else { "s" },
            context.out_dir.join("ddp-model.safetensors").display()
        );
    }
    Ok(())
}
