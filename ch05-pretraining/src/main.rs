//! `cargo run --release -p ch05-pretraining [-- COMMAND]`: chapter 5's pretraining run,
//! generation, evaluation and exercises.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use ch05_pretraining::appendix_d::{self, AppendixDOptions};
use ch05_pretraining::decode::{file_loss, generate_text, text_losses};
use ch05_pretraining::exercises::{self, ex5_2, ex5_6};
use ch05_pretraining::pretrain::{self, book_config, Chapter5, DdpSettings, PretrainOptions, START_CONTEXT};
use ch05_pretraining::{bench, check_run};
use clap::{Args, Parser, Subcommand};
use shared::app::cli::{self, CommonArgs, DecodingArgs, RunContext};
use shared::app::exercise::ExerciseCommand;
use shared::app::model_source::ModelSource;
use shared::app::recipe::TrainFlags;
use shared::core::device::seed_everything;
use shared::data::THE_VERDICT;
use shared::generate::{continue_text, Decoding, Sampling};
use shared::model::GptConfig;
use shared::train::distributed::{self, Backend, Rendezvous};
use shared::train::TrainMode;

/// Chapter 5, "Pretraining on unlabeled data". Without a command: the book's pretraining run
/// (GPT-2 small shape, context 256, 10 epochs on The Verdict, seed 123), printing what the
/// book prints and writing a checkpoint, metrics.json and losses.png to the output folder.
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
    /// Pretrain (or resume) on a text: The Verdict unless --data FILE
    Train(TrainArgs),
    /// Generate text from a checkpoint, GPT-2 weights or a new seeded model
    Generate {
        #[command(flatten)]
        model: ModelArgs,
        /// The prompt
        #[arg(long, default_value = START_CONTEXT)]
        prompt: String,
        /// How many tokens to add at most
        #[arg(long, default_value_t = 25)]
        max_new_tokens: i64,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Also print the token ids (prompt included) as a JSON array
        #[arg(long)]
        ids: bool,
    },
    /// Loss and perplexity on The Verdict's training and validation parts, or on all of --data FILE
    Eval {
        #[command(flatten)]
        model: ModelArgs,
        /// Tokens per window (at most the model's context)
        #[arg(long, default_value_t = 256)]
        context_length: usize,
        /// Share of The Verdict used as the training part
        #[arg(long, default_value_t = 0.9)]
        train_ratio: f64,
    },
    /// Exercise 5.2: decode one prompt over a grid of temperatures and top-k values
    Sweep {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, default_value = START_CONTEXT)]
        prompt: String,
        #[arg(long, default_value_t = 15)]
        max_new_tokens: i64,
        /// Temperatures to try (0 = greedy)
        #[arg(long, value_delimiter = ',', default_values_t = ex5_2::TEMPERATURES)]
        temperatures: Vec<f64>,
        /// Top-k values to try (0 = no top-k filter)
        #[arg(long, value_delimiter = ',', default_values_t = [3, 25, 0])]
        top_ks: Vec<i64>,
    },
    /// Appendix D's run: GPT-2 small (context 256) on The Verdict for 15 epochs, the learning
    /// rate warmed up from 1e-5 to 0.001 over the first 20 % of the steps and then down a
    /// cosine to 1e-5, gradients clipped to norm 1.0 after the warmup; writes the losses and
    /// learning-rate plots to <out-dir>/appendix-d and compares the run with the PyTorch reference
    AppendixD {
        /// Model preset or JSON config file [default: the appendix's GPT-2 small at 256 tokens]
        #[arg(long)]
        config: Option<String>,
        #[arg(long, default_value_t = 15)]
        epochs: usize,
        #[arg(long, default_value_t = 2)]
        batch_size: usize,
        /// The largest loss difference from the PyTorch reference that counts as the same
        #[arg(long, default_value_t = 1e-5)]
        tolerance: f64,
    },
    /// Compare a main run's metrics.json with the book's PyTorch code run the same way
    /// (reference/pytorch-main-run.json): every logged loss and sample, and the largest difference
    CheckRun {
        /// The run's metrics [default: metrics.json in the output folder]
        #[arg(value_name = "METRICS_JSON")]
        metrics: Option<PathBuf>,
        /// The largest loss difference that counts as the same
        #[arg(long, default_value_t = 1e-5)]
        tolerance: f64,
        /// The PyTorch run to compare with, as scripts/reference/ch05_pretraining.py --full writes it (e.g. with --device cuda) [default: the committed CPU run]
        #[arg(long, value_name = "JSON")]
        reference: Option<PathBuf>,
        /// Print the comparison as JSON
        #[arg(long)]
        json: bool,
    },
    /// Time training steps (forward, backward, optimizer), tokens/s and model FLOPs utilisation, in book or fast mode
    BenchStep {
        /// Model preset or JSON config file
        #[arg(long, value_name = "PRESET|FILE", default_value = "gpt2-small")]
        config: String,
        #[arg(long, default_value_t = 2)]
        batch_size: usize,
        /// Tokens per row (the model's context)
        #[arg(long, default_value_t = 256)]
        context_length: i64,
        /// Timed steps (after one untimed warm-up step)
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// book: the book's code; fast: fused kernels and AdamW
        #[arg(long, value_enum, default_value = "book")]
        mode: TrainMode,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Time greedy decoding over the KV cache: float32, int8 weights, and prompts batched
    BenchGenerate {
        /// The model [default: a new seeded GPT-2 small]
        #[command(flatten)]
        model: ModelArgs,
        /// Tokens to decode per prompt
        #[arg(long, default_value_t = 200)]
        max_new_tokens: i64,
        /// Prompts of different lengths decoded together (1-8)
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Add the int8 rows (fbgemm; CPU only)
        #[arg(long)]
        int8: bool,
        /// Also compare float32's and int8's perplexity on The Verdict's validation part
        #[arg(long)]
        perplexity: bool,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Exercise 5.6: GPT-2 small and a larger GPT-2 on the same prompt
    CompareModels {
        /// The larger model: gpt2-medium, gpt2-large, gpt2-xl, a hub id or a folder
        #[arg(long, default_value = "gpt2-xl")]
        model: String,
        /// The model to compare with
        #[arg(long, default_value = "gpt2-small")]
        base: String,
        #[arg(long, default_value = START_CONTEXT)]
        prompt: String,
        #[arg(long, default_value_t = 25)]
        max_new_tokens: i64,
    },
}

/// Where the model comes from (default: a new model, seeded with --seed).
#[derive(Args)]
struct ModelArgs {
    /// A checkpoint: NAME.safetensors (+ NAME.json) written by `train`, or a model.pth saved by the book's torch.save
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// OpenAI's GPT-2 in the Hugging Face layout: a folder, a hub id (openai-community/gpt2) or gpt2-small|medium|large|xl
    #[arg(long, value_name = "DIR|HUB_ID", conflicts_with = "checkpoint")]
    weights: Option<String>,
    /// The config of a new model, or of a --checkpoint (checked against it; needed for a model.pth whose width matches no preset): a preset (gpt2-small, ...) or a JSON file
    #[arg(long, value_name = "PRESET|FILE", conflicts_with = "weights")]
    config: Option<String>,
}

impl ModelArgs {
    fn source(&self) -> Result<ModelSource> {
        let config = self.config.as_deref().map(GptConfig::from_name_or_file).transpose()?;
        Ok(match (&self.checkpoint, &self.weights) {
            (Some(path), _) => ModelSource::Checkpoint { path: path.clone(), config },
            (None, Some(spec)) => ModelSource::Weights(spec.clone()),
            (None, None) => ModelSource::Fresh(config.unwrap_or_else(book_config)),
        })
    }
}

#[derive(Args)]
struct SamplingArgs {
    /// Sampling temperature; 0 (the default) decodes greedily
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    temperature: f64,
    /// Keep only the k most likely tokens
    #[arg(long)]
    top_k: Option<i64>,
    /// Stop when this token is drawn (50256 is <|endoftext|>)
    #[arg(long)]
    eos_id: Option<i64>,
    /// --top-p, --repetition-penalty, --beams, --length-penalty (each implies --cached)
    #[command(flatten)]
    decoding: DecodingArgs,
    /// Decode over the key/value cache instead of re-running the model on the whole context
    #[arg(long)]
    cached: bool,
}

impl SamplingArgs {
    fn sampling(&self) -> Result<Sampling> {
        let sampling = Sampling { temperature: self.temperature, top_k: self.top_k, eos_id: self.eos_id };
        sampling.validate()?;
        Ok(sampling)
    }

    /// The cached decoding, when one of its flags is given.
    fn cached_decoding(&self) -> Result<Option<Decoding>> {
        if !(self.cached || self.decoding.is_set()) {
            return Ok(None);
        }
        Ok(Some(self.decoding.decoding(&self.sampling()?)?))
    }
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    train: TrainFlags<Chapter5>,
    /// Context length (and window stride) [default: 256, or the checkpoint's]
    #[arg(long)]
    context_length: Option<i64>,
    /// Model preset or JSON config file [default: gpt2-small, or the checkpoint's]
    #[arg(long, value_name = "PRESET|FILE")]
    config: Option<String>,
    /// Share of the text's characters used for training
    #[arg(long, default_value_t = 0.9)]
    train_ratio: f64,
    /// Reseed at the start of each epoch (with this seed + epoch) so that resumed runs repeat uninterrupted ones exactly
    #[arg(long)]
    epoch_seed: Option<u64>,
    /// Continue from a checkpoint (NAME.safetensors or NAME.json), model and optimizer
    #[arg(long, value_name = "CHECKPOINT")]
    resume: Option<PathBuf>,
    /// Skip the untrained model's losses before training
    #[arg(long)]
    no_initial_losses: bool,
    /// Data-parallel training over LibTorch's c10d (appendix A.9.3): starts --nproc-per-node processes, or with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set runs as that rank
    #[arg(long)]
    ddp: bool,
    /// With --ddp: processes to start on this machine
    #[arg(long, default_value_t = 2, requires = "ddp")]
    nproc_per_node: usize,
    /// With --ddp: gloo (CPU tensors) or nccl (CUDA tensors) [default: nccl on CUDA, else gloo]
    #[arg(long, value_enum, requires = "ddp")]
    backend: Option<Backend>,
    /// With --ddp: how long a process waits for the others before giving up
    #[arg(long, default_value_t = 300.0, requires = "ddp")]
    timeout_seconds: f64,
}

impl TrainArgs {
    fn options(&self) -> Result<PretrainOptions> {
        let config = match (&self.config, self.context_length) {
            (None, None) => None,
            (spec, context) => {
                let mut config = match spec {
                    Some(spec) => GptConfig::from_name_or_file(spec)?,
                    None => book_config(),
                };
                if let Some(context) = context {
                    config.context_length = context;
                } else if spec.as_deref().is_some_and(|s| GptConfig::preset(s).is_ok()) {
                    config.context_length = 256; // the book's training context
                }
                config.validate()?;
                Some(config)
            }
        };
        Ok(PretrainOptions {
            config,
            train: self.train.clone(),
            train_ratio: self.train_ratio,
            epoch_seed: self.epoch_seed,
            resume: self.resume.clone(),
            initial_losses: !self.no_initial_losses,
            ddp: self.ddp.then_some(DdpSettings {
                backend: self.backend,
                timeout: Duration::try_from_secs_f64(self.timeout_seconds)
                    .ok()
                    .filter(|t| !t.is_zero())
                    .context("--timeout-seconds must be positive")?,
            }),
            ..PretrainOptions::default()
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::run_main(|| run(cli))
}

fn run(cli: Cli) -> Result<()> {
    let context = cli.common.context(env!("CARGO_PKG_NAME"))?;
    match cli.command {
        None => train(&context, &PretrainOptions::default()),
        Some(Command::Train(args)) if args.ddp && Rendezvous::from_env()?.is_none() => {
            // The launcher: this command once per rank.
            args.options()?;
            distributed::launch(args.nproc_per_node, &std::env::args().skip(1).collect::<Vec<_>>())
        }
        Some(Command::Train(args)) => train(&context, &args.options()?),
        Some(Command::Exercises(command)) => command.run(exercises::ALL, &context),
        Some(Command::Generate { model, prompt, max_new_tokens, sampling, ids }) => {
            let (book, cached) = (sampling.sampling()?, sampling.cached_decoding()?);
            let mut loaded = model.source()?.load(context.device, context.seed)?;
            sampling.decoding.prepare(&mut loaded.model)?;
            seed_everything(context.seed);
            let generated = match cached {
                Some(mut decoding) => {
                    continue_text(&loaded.model, &prompt, |idx| decoding.generate(&loaded.model, idx, max_new_tokens))?
                }
                None => generate_text(&loaded.model, &prompt, max_new_tokens, &book)?,
            };
            println!("{}", generated.text);
            if ids {
                println!("{}", serde_json::to_string(&generated.ids)?);
            }
            Ok(())
        }
        Some(Command::Eval { model, context_length, train_ratio }) => {
            let text = context.data.read_to_string(&THE_VERDICT)?;
            let loaded = model.source()?.load(context.device, context.seed)?;
            println!("Model: {}", loaded.description);
            match &context.data.explicit {
                Some(file) => println!("{}: {}", file.display(), file_loss(&loaded.model, &text, context_length)?),
                None => println!("{}", text_losses(&loaded.model, &text, train_ratio, context_length, context.seed)?),
            }
            Ok(())
        }
        Some(Command::Sweep { model, prompt, max_new_tokens, temperatures, top_ks }) => {
            let top_ks: Vec<Option<i64>> = top_ks.into_iter().map(|k| (k != 0).then_some(k)).collect();
            for &temperature in &temperatures {
                for &top_k in &top_ks {
                    Sampling { temperature, top_k, eos_id: None }.validate()?;
                }
            }
            let loaded = model.source()?.load(context.device, context.seed)?;
            let sweep = ex5_2::sweep(
                &loaded.model,
                &loaded.description,
                &prompt,
                max_new_tokens,
                &temperatures,
                &top_ks,
                context.seed,
            )?;
            println!("{sweep}");
            Ok(())
        }
        Some(Command::AppendixD { config, epochs, batch_size, tolerance }) => {
            let text = context.data.read_to_string(&THE_VERDICT)?;
            let config = config.map(|name| GptConfig::from_name_or_file(&name)).transpose()?;
            let options = AppendixDOptions {
                config: config.unwrap_or_else(|| AppendixDOptions::default().config),
                epochs,
                batch_size,
                verbose: true,
            };
            let report = appendix_d::run(&context, &text, &options, tolerance)?;
            println!(
                "Warmup: {} of {} steps; plots: {} and {}",
                report.warmup_steps,
                report.total_steps,
                report.run.plot.display(),
                report.lr_plot.display()
            );
            match &report.check {
                Some(check) => println!("{check}"),
                None => println!("Not the appendix's own run (config, epochs or batch size changed): not compared"),
            }
            Ok(())
        }
        Some(Command::CheckRun { metrics, tolerance, reference, json }) => {
            let metrics = metrics.unwrap_or_else(|| context.out_dir.join("metrics.json"));
            let reference = match reference {
                Some(path) => check_run::Reference::read(&path)?,
                None => check_run::Reference::book(),
            };
            let check = check_run::check_file(&metrics, &reference, tolerance)?;
            print_result(&check, json)?;
            anyhow::ensure!(check.passed(), "{} differs from the PyTorch reference", metrics.display());
            Ok(())
        }
        Some(Command::BenchStep { config, batch_size, context_length, steps, mode, json }) => {
            let text = context.data.read_to_string(&THE_VERDICT)?;
            let cfg = GptConfig { context_length, ..GptConfig::from_name_or_file(&config)? };
            let options =
                bench::StepBenchOptions { config: cfg, config_name: config, batch_size, steps, warmup: 1, mode };
            let result = bench::bench_step(&text, &options, context.device, context.seed)?;
            print_result(&result, json)
        }
        Some(Command::BenchGenerate { model, max_new_tokens, batch, int8, perplexity, json }) => {
            let text = context.data.read_to_string(&THE_VERDICT)?;
            let source = match (&model.checkpoint, &model.weights, &model.config) {
                (None, None, None) => ModelSource::Fresh(GptConfig::gpt2_small()),
                _ => model.source()?,
            };
            let options = bench::GenerateBenchOptions { source, new_tokens: max_new_tokens, batch, int8, perplexity };
            let result = bench::bench_generate(&text, &options, context.device, context.seed)?;
            print_result(&result, json)
        }
        Some(Command::CompareModels { model, base, prompt, max_new_tokens }) => {
            let sources = [ModelSource::Weights(base), ModelSource::Weights(model)];
            let result =
                ex5_6::run(&sources, &prompt, max_new_tokens, &ex5_6::BOOK_SAMPLING, context.device, context.seed)?;
            println!("{result}");
            Ok(())
        }
    }
}

fn print_result(result: &(impl serde::Serialize + std::fmt::Display), json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(result)?);
    } else {
        println!("{result}");
    }
    Ok(())
}

fn train(context: &RunContext, options: &PretrainOptions) -> Result<()> {
    let text = context.data.read_to_string(&THE_VERDICT)?;
    pretrain::run(context, &text, options)?;
    Ok(())
}
