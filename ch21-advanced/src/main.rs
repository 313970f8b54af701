//! `cargo run --release -p ch21-advanced [-- COMMAND]`: chapter 21's mini-GPT and exercises.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use ch21_advanced::compare::{self, Study};
use ch21_advanced::exercises;
use ch21_advanced::minigpt::{self, Distill, MiniGptOptions, Teacher, TokenizerChoice};
use ch21_advanced::models::ModelFlags;
use ch21_advanced::pretrained::Pretraining;
use clap::{Args, Parser, Subcommand};
use shared::app::cli::{self, CommonArgs, DecodingArgs};
use shared::app::exercise::ExerciseCommand;
use shared::generate::Sampling;
use shared::model::attention::AttentionMask;
use shared::model::positions::PosEncoding;
use shared::nn::Activation;

/// Chapter 21. Without a command: trains the character-level mini-GPT on tiny Shakespeare
/// with nanoGPT's CPU settings, printing losses and samples, and writes a checkpoint,
/// metrics.json and losses.png to the output folder.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    models: ModelArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The models of the exercises on a trained model: without these flags the decoding and
/// compression exercises (21.18-21.35) train a 6-layer and a 2-layer model here, and the
/// analysis exercises (21.17-21.24) use the `pretrain` model (kept under the output folder's
/// models/).
#[derive(Args)]
struct ModelArgs {
    /// The model analysed, or the large model (target, teacher, scorer): a checkpoint written by `train`
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// The model analysed, or the large model: OpenAI's GPT-2 (a folder, a hub id or gpt2-small|medium|large|xl)
    #[arg(long, value_name = "DIR|HUB_ID", conflicts_with = "checkpoint")]
    weights: Option<String>,
    /// The small model (draft, student, amateur): a checkpoint with the large model's tokenizer
    #[arg(long, value_name = "FILE")]
    small_checkpoint: Option<PathBuf>,
    /// Training steps of the large model when trained here [default: 2000]
    #[arg(long, value_name = "N")]
    large_steps: Option<usize>,
    /// Training steps of the small model when trained here [default: 600]
    #[arg(long, value_name = "N")]
    small_steps: Option<usize>,
}

impl ModelArgs {
    fn flags(&self) -> ModelFlags {
        ModelFlags {
            checkpoint: self.checkpoint.clone(),
            weights: self.weights.clone(),
            small_checkpoint: self.small_checkpoint.clone(),
            large_steps: self.large_steps,
            small_steps: self.small_steps,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Exercises(ExerciseCommand),
    /// Train (or resume) the mini-GPT: tiny Shakespeare unless --data FILE
    Train(TrainArgs),
    /// Train the variants of an architecture study alike; print one table, write the curves
    Compare {
        #[arg(value_enum)]
        study: Study,
        /// Training steps of each variant
        #[arg(long, default_value_t = 2000)]
        steps: usize,
        /// Print the table as JSON
        #[arg(long)]
        json: bool,
    },
    /// Train the project's own pretrained model, the subject of exercises 21.17-21.24 when no
    /// --weights are given (under half an hour on 2 CPU cores; kept under the output folder's
    /// models/, so a second run only reports it)
    Pretrain {
        /// Optimizer steps (of 8 windows of 256 tokens)
        #[arg(long, default_value_t = Pretraining::standard().options.iters)]
        steps: usize,
    },
    /// Continue a prompt with a saved model, with its own tokenizer, over the KV cache
    Generate {
        /// The checkpoint (NAME.safetensors or NAME.json)
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        #[arg(long, default_value = "ROMEO:")]
        prompt: String,
        #[arg(long, default_value_t = 200)]
        max_new_tokens: i64,
        /// Sampling temperature; 0 decodes greedily [default: 0.8, or 0 with --beams]
        #[arg(long, allow_negative_numbers = true)]
        temperature: Option<f64>,
        /// Keep only the k most likely tokens
        #[arg(long)]
        top_k: Option<i64>,
        #[command(flatten)]
        decoding: DecodingArgs,
    },
}

#[derive(Args)]
struct TrainArgs {
    #[arg(long, default_value_t = 4)]
    n_layers: i64,
    #[arg(long, default_value_t = 4)]
    n_heads: i64,
    #[arg(long, default_value_t = 128)]
    emb_dim: i64,
    /// Context length of the model and of each training window
    #[arg(long, default_value_t = 64)]
    block_size: i64,
    #[arg(long, default_value_t = 12)]
    batch_size: i64,
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Share the token embedding with the output head
    #[arg(long, default_value_t = MiniGptOptions::default().tie_embeddings, action = clap::ArgAction::Set)]
    tie_embeddings: bool,
    /// Biases on the output projection, the feed-forward layers and the norms (GPT-2: true)
    #[arg(long, default_value_t = MiniGptOptions::default().bias, action = clap::ArgAction::Set)]
    bias: bool,
    /// Train with LibTorch's fused layer norm, GELU and attention (false: the book's code)
    #[arg(long, default_value_t = MiniGptOptions::default().fused_kernels, action = clap::ArgAction::Set)]
    fused_kernels: bool,
    /// The feed-forward activation (GPT-2: gelu_tanh)
    #[arg(long, value_enum, default_value_t = MiniGptOptions::default().activation)]
    activation: Activation,
    /// Position information (GPT-2: learned)
    #[arg(long, value_enum, default_value_t = MiniGptOptions::default().pos_encoding)]
    pos_encoding: PosEncoding,
    /// Sliding-window attention: each position sees the last W (itself included)
    #[arg(long, value_name = "W")]
    window: Option<i64>,
    /// With --window: the first N positions stay visible to every query (attention sinks)
    #[arg(long, default_value_t = 0, value_name = "N")]
    sink_tokens: i64,
    /// Output heads for multi-token prediction (head k predicts the token k places ahead)
    #[arg(long, default_value_t = 1, value_name = "N")]
    future_heads: i64,
    /// Optimizer steps in total (a resumed run continues up to this many)
    #[arg(long, default_value_t = 2000)]
    iters: usize,
    /// Evaluate and print a sample every N steps
    #[arg(long, default_value_t = 250)]
    eval_interval: usize,
    /// Batches per evaluation
    #[arg(long, default_value_t = 20)]
    eval_iters: usize,
    /// Peak learning rate (after 100 warmup steps; cosine decay to --min-lr)
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    min_lr: f64,
    #[arg(long, default_value_t = 100)]
    warmup_steps: i64,
    /// The step where the cosine reaches --min-lr [default: --iters]; give the final count to a run you will resume further
    #[arg(long)]
    decay_steps: Option<usize>,
    /// Tokenizer of a new model (a resumed one keeps its own)
    #[arg(long, value_enum, default_value_t = TokenizerChoice::Char)]
    tokenizer: TokenizerChoice,
    /// Prompt of the samples printed after each evaluation
    #[arg(long, default_value = "ROMEO:")]
    prompt: String,
    /// Continue from a checkpoint written by `train` (NAME.safetensors or NAME.json)
    #[arg(long, value_name = "CHECKPOINT")]
    resume: Option<PathBuf>,
    /// Distil from this teacher (a checkpoint written by `train`, with the same tokenizer): the loss becomes (1 - lambda) cross-entropy + lambda T^2 KL(teacher_T || student_T)
    #[arg(long, value_name = "CHECKPOINT")]
    teacher: Option<PathBuf>,
    /// With --teacher: the temperature T
    #[arg(long, default_value_t = 2.0, requires = "teacher")]
    distill_temperature: f64,
    /// With --teacher: the distillation share lambda
    #[arg(long, default_value_t = 0.5, requires = "teacher")]
    distill_weight: f64,
}

impl TrainArgs {
    fn options(&self) -> MiniGptOptions {
        MiniGptOptions {
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            emb_dim: self.emb_dim,
            block_size: self.block_size,
            batch_size: self.batch_size,
            drop_rate: self.drop_rate,
            tie_embeddings: self.tie_embeddings,
            bias: self.bias,
            activation: self.activation,
            pos_encoding: self.pos_encoding,
            attention_mask: self.window.map_or(AttentionMask::Causal, AttentionMask::SlidingWindow),
            sink_tokens: self.sink_tokens,
            n_future_heads: self.future_heads,
            fused_kernels: self.fused_kernels,
            iters: self.iters,
            eval_interval: self.eval_interval,
            eval_iters: self.eval_iters,
            peak_lr: self.lr,
            min_lr: self.min_lr,
            warmup_steps: self.warmup_steps,
            decay_steps: self.decay_steps,
            tokenizer: self.tokenizer,
            prompt: self.prompt.clone(),
            resume: self.resume.clone(),
            distill: self.teacher.as_ref().map(|teacher| Distill {
                teacher: Teacher::Checkpoint(teacher.clone()),
                temperature: self.distill_temperature,
                weight: self.distill_weight,
            }),
            ..MiniGptOptions::default()
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::run_main(|| run(cli))
}

fn run(cli: Cli) -> Result<()> {
    let context = cli.common.context(env!("CARGO_PKG_NAME"))?;
    match cli.command {
        None => minigpt::run(&context, &minigpt::corpus(&context)?, &MiniGptOptions::default()).map(|_| ()),
        Some(Command::Train(args)) => minigpt::run(&context, &minigpt::corpus(&context)?, &args.options()).map(|_| ()),
        Some(Command::Exercises(command)) => {
            command.run_with_flags(exercises::ALL, context, |_| Ok(cli.models.flags()))
        }
        Some(Command::Compare { study, steps, json }) => {
            let base = compare::base_options(steps);
            let comparison = compare::run(&context, &minigpt::corpus(&context)?, study, &base)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&comparison)?);
            } else {
                println!("{comparison}");
            }
            Ok(())
        }
        Some(Command::Pretrain { steps }) => {
            let pretraining = Pretraining::standard().with_steps(steps);
            let model = pretraining.model(&context)?;
            let text = pretraining.corpus(&context)?;
            let loss =
                minigpt::split_loss(model.gpt(), &text, pretraining.options.train_ratio, false, 20, context.seed)?;
            println!("{}: validation loss {loss:.3} (perplexity {:.1})", model.name, loss.exp());
            if let minigpt::Teacher::Checkpoint(path) = &model.source {
                println!("Saved as {}; exercises 21.17-21.24 use it when no --weights are given", path.display());
            }
            Ok(())
        }
        Some(Command::Generate { checkpoint, prompt, max_new_tokens, temperature, top_k, decoding }) => {
            let default = if decoding.beams.is_some() { 0.0 } else { 0.8 };
            let sampling = Sampling { temperature: temperature.unwrap_or(default), top_k, eos_id: None };
            let int8 = decoding.int8;
            let mut decoding = decoding.decoding(&sampling)?;
            println!("{}", minigpt::generate(&checkpoint, &prompt, max_new_tokens, &mut decoding, int8, &context)?);
            Ok(())
        }
    }
}
