//! `cargo run --release -p ch07-instruction [-- COMMAND]`: chapter 7's instruction
//! fine-tuning run, responses from a fine-tuned model, a chat loop, scoring by a local LLM
//! judge, and the exercises.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use ch07_instruction::finetune::{self, FinetuneOptions, RESPONSES_FILE};
use ch07_instruction::judge::{self, JudgeReport, OllamaClient};
use ch07_instruction::records::{self, InstructionRecord, Splits};
use ch07_instruction::respond::{respond_all, respond_with, MAX_NEW_TOKENS};
use ch07_instruction::template::TemplateKind;
use ch07_instruction::{exercises, finetune::InstructionModel};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use shared::cli::{self, CommonArgs, DecodingArgs, RunContext};
use shared::device::seed_everything;
use shared::exercise::ExerciseCommand;
use shared::generate::{Decoding, Sampling};
use shared::lora::LoraConfig;
use shared::model_source::InitArgs;
use shared::tokenizer::END_OF_TEXT_ID;
use shared::train::TrainMode;

/// Chapter 7, "Fine-tuning to follow instructions". Without a command: the book's run, which
/// fine-tunes GPT-2 medium (355M) on 935 instruction records in the Alpaca prompt style for
/// 2 epochs, then answers the 110 test instructions, and writes the splits, the loss plot,
/// the responses and the fine-tuned model to the output folder. The run's flags are also
/// the exercises' starting point: --template phi3 (7.1), --mask-instructions (7.2),
/// --data alpaca (7.3), --lora (7.4).
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
    model: InitArgs,
    /// Prompt style
    #[arg(long, value_enum, default_value = "alpaca")]
    template: TemplateKind,
    /// Leave the instruction and input out of the loss (exercise 7.2)
    #[arg(long)]
    mask_instructions: bool,
    /// Train LoRA adapters on every linear layer instead of every weight (exercise 7.4)
    #[arg(long)]
    lora: bool,
    #[arg(long, default_value_t = 16, requires = "lora")]
    lora_rank: i64,
    #[arg(long, default_value_t = 16.0, requires = "lora")]
    lora_alpha: f64,
    /// Cut training examples to this many tokens [default: the model's context]
    #[arg(long, value_name = "N")]
    allowed_max_length: Option<usize>,
    /// Use only the first N records of the data (quick runs)
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    #[arg(long, default_value_t = 5e-5)]
    lr: f64,
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f64,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Evaluate every N steps
    #[arg(long, default_value_t = 5)]
    eval_freq: usize,
    /// Batches per evaluation
    #[arg(long, default_value_t = 5)]
    eval_iter: usize,
    /// Longest response when answering the test set
    #[arg(long, default_value_t = MAX_NEW_TOKENS)]
    max_new_tokens: i64,
    /// Skip answering the test set after training
    #[arg(long)]
    no_responses: bool,
    /// book: the book's code; fast: fused kernels and AdamW (same model and loss, not bit-exact)
    #[arg(long, value_enum, default_value = "book")]
    mode: TrainMode,
}

impl RunArgs {
    fn options(&self) -> Result<FinetuneOptions> {
        Ok(FinetuneOptions {
            init: self.model.init()?,
            template: self.template,
            mask_instructions: self.mask_instructions,
            lora: self.lora.then_some(LoraConfig { rank: self.lora_rank, alpha: self.lora_alpha }),
            allowed_max_length: self.allowed_max_length,
            limit: self.limit,
            epochs: self.epochs,
            lr: self.lr,
            weight_decay: self.weight_decay,
            batch_size: self.batch_size,
            eval_freq: self.eval_freq,
            eval_iter: self.eval_iter,
            responses: !self.no_responses,
            max_new_tokens: self.max_new_tokens,
            mode: self.mode,
            verbose: true,
        })
    }
}

#[derive(Args)]
struct ModelArgs {
    /// A fine-tuned model: this chapter's checkpoint (NAME.safetensors or NAME.json), or a
    /// book state dict such as gpt2-medium355M-sft.pth
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
    /// Prompt style [default: the one the checkpoint was trained with, else alpaca]
    #[arg(long, value_enum)]
    template: Option<TemplateKind>,
    /// Longest response
    #[arg(long, default_value_t = MAX_NEW_TOKENS)]
    max_new_tokens: i64,
    /// Sampling temperature; 0 (the book's) decodes greedily
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    temperature: f64,
    /// Keep only the k most likely tokens
    #[arg(long)]
    top_k: Option<i64>,
    #[command(flatten)]
    decoding: DecodingArgs,
}

impl ModelArgs {
    /// The model, with int8 weights when `--int8` is given.
    fn load(&self, context: &RunContext) -> Result<InstructionModel> {
        let mut model = finetune::load_model(&self.checkpoint, self.template, context)?;
        self.decoding.prepare(&mut model.loaded.model)?;
        Ok(model)
    }

    /// The decoding the flags ask for, stopping at the end-of-text token (default: the
    /// book's greedy decoding); seeds the generator for sampling.
    fn decoding(&self, context: &RunContext) -> Result<Decoding> {
        let sampling =
            Sampling { temperature: self.temperature, top_k: self.top_k, eos_id: Some(END_OF_TEXT_ID as i64) };
        let decoding = self.decoding.decoding(&sampling)?;
        seed_everything(context.seed);
        Ok(decoding)
    }
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Exercises(ExerciseCommand),
    /// Answer one instruction with a fine-tuned model
    Respond {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        instruction: String,
        /// Context for the instruction
        #[arg(long, default_value = "")]
        input: String,
    },
    /// Answer instructions typed on standard input, one after the other (Ctrl-D quits)
    Chat {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Answer every record of a file (default: the test split of the data) and save them with a model_response field
    Responses {
        #[command(flatten)]
        model: ModelArgs,
        /// Records to answer [default: the test split of --data]
        #[arg(long, value_name = "FILE")]
        records: Option<PathBuf>,
    },
    /// Score the responses in a file 0-100 with a local LLM judge served by Ollama
    Evaluate {
        /// Records with a model_response field, as the run writes them
        #[arg(long, value_name = "FILE")]
        responses: PathBuf,
        /// The judge model, as Ollama names it
        #[arg(long, default_value = judge::DEFAULT_MODEL)]
        model: String,
        /// The Ollama server
        #[arg(long, default_value = judge::DEFAULT_HOST, value_name = "URL")]
        host: String,
        /// The prompt style shown to the judge
        #[arg(long, value_enum, default_value = "alpaca")]
        template: TemplateKind,
    },
}

fn main() -> ExitCode {
    // The book starts from GPT-2 medium; the shared --init flag defaults to gpt2 (small).
    let command = Cli::command().mut_arg("init", |arg| arg.default_value("gpt2-medium"));
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    cli::run_main(|| run(cli))
}

fn run(cli: Cli) -> Result<()> {
    let context = cli.common.context(env!("CARGO_PKG_NAME"))?;
    match cli.command {
        None => {
            finetune::run(&context, &cli.run.options()?)?;
        }
        Some(Command::Exercises(command)) => {
            if let ExerciseCommand::Exercise { json, .. } = command {
                // With --json, stdout carries the result alone.
                exercises::BASE_OPTIONS.set(FinetuneOptions { verbose: !json, ..cli.run.options()? });
            }
            command.run(exercises::ALL, &context)?
        }
        Some(Command::Respond { model, instruction, input }) => {
            let mut decoding = model.decoding(&context)?;
            let loaded = model.load(&context)?;
            let record = InstructionRecord::new(&instruction, &input, "");
            let (m, template) = (&loaded.loaded.model, loaded.template.template());
            println!("{}", respond_with(m, template, &record, model.max_new_tokens, context.device, &mut decoding)?);
        }
        Some(Command::Chat { model }) => chat(&model, &context)?,
        Some(Command::Responses { model, records: file }) => {
            let mut decoding = model.decoding(&context)?;
            let loaded = model.load(&context)?;
            let records = match file {
                Some(path) => records::load(&path)?,
                None => Splits::new(records::load(&records::locate(&context.data)?)?).test,
            };
            context.create_out_dir()?;
            let answered = respond_all(
                &loaded.loaded.model,
                loaded.template.template(),
                &records,
                model.max_new_tokens,
                context.device,
                &mut decoding,
                true,
            )?;
            let path = context.out_dir.join(RESPONSES_FILE);
            records::save(&path, &answered)?;
            println!("Wrote {} responses to {}", answered.len(), path.display());
        }
        Some(Command::Evaluate { responses, model, host, template }) => {
            evaluate(&responses, &model, &host, template, &context)?
        }
    }
    Ok(())
}

fn chat(model: &ModelArgs, context: &RunContext) -> Result<()> {
    let mut decoding = model.decoding(context)?;
    let loaded = model.load(context)?;
    let template = loaded.template.template();
    eprintln!("Type an instruction, then an input (or an empty line for none); Ctrl-D quits.");
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut ask = |prompt: &str| -> Result<Option<String>> {
        eprint!("{prompt}");
        std::io::stderr().flush()?;
        lines.next().transpose().context("reading standard input")
    };
    while let Some(instruction) = ask("instruction> ")? {
        if instruction.trim().is_empty() {
            continue;
        }
        let Some(input) = ask("input> ")? else { break };
        let record = InstructionRecord::new(instruction.trim(), input.trim(), "");
        match respond_with(&loaded.loaded.model, template, &record, model.max_new_tokens, context.device, &mut decoding)
        {
            Ok(response) => println!("{response}\n"),
            Err(err) => eprintln!("error: {err:#}"),
        }
    }
    Ok(())
}

fn evaluate(
    responses: &std::path::Path,
    model: &str,
    host: &str,
    template: TemplateKind,
    context: &RunContext,
) -> Result<()> {
    let records = records::load(responses)?;
    context.create_out_dir()?;
    let client = OllamaClient::new(host, model);
    let bar = shared::train::progress_bar(true, records.len() as u64);
    bar.set_message(format!("scoring with {model}"));
    let mut partial = Vec::new();
    let result = judge::score_responses(&client, template.template(), &records, |score| {
        partial.push(score.clone());
        bar.inc(1);
    });
    bar.finish_and_clear();
    let path = context.out_dir.join("scores.json");
    let report = match result {
        Ok(report) => report,
        Err(err) if !partial.is_empty() => {
            let kept = JudgeReport::new(model, records.len(), partial);
            std::fs::write(&path, serde_json::to_string_pretty(&kept)?)?;
            return Err(err.context(format!(
                "scoring stopped after {} of {} records; their scores are in {}",
                kept.scores.len(),
                records.len(),
                path.display()
            )));
        }
        Err(err) => return Err(err),
    };
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!("{report}\nScores written to {}", path.display());
    Ok(())
}
