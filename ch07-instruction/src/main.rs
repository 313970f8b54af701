//! `cargo run --release -p ch07-instruction [-- COMMAND]`: chapter 7's instruction
//! fine-tuning run, responses from a fine-tuned model, a chat loop, scoring by a local LLM
//! judge, and the exercises.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ch07_instruction::dpo_run::{self, DpoOptions};
use ch07_instruction::finetune::{self, Chapter7, FinetuneOptions, RESPONSES_FILE};
use ch07_instruction::judge::{self, JudgeReport, OllamaClient};
use ch07_instruction::preference_data::make_preference_data;
use ch07_instruction::records::{self, InstructionRecord, Splits};
use ch07_instruction::respond::{respond_all, respond_with, MAX_NEW_TOKENS};
use ch07_instruction::serve::api::Defaults;
use ch07_instruction::serve::guard::Access;
use ch07_instruction::serve::load_test::{self, ConversationOptions, LoadTestOptions};
use ch07_instruction::serve::models::ModelEntry;
use ch07_instruction::serve::soak::{self, SoakOptions};
use ch07_instruction::serve::worker::AdapterSource;
use ch07_instruction::serve::{self, ConnectionLimits, RunningServer, ServeOptions};
use ch07_instruction::template::{Alpaca, TemplateKind};
use ch07_instruction::{exercises, finetune::InstructionModel};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use shared::app::cli::{self, CommonArgs, DecodingArgs, RunContext};
use shared::app::exercise::ExerciseCommand;
use shared::app::model_source::{Init, InitArgs};
use shared::app::recipe::TrainFlags;
use shared::core::device::seed_everything;
use shared::generate::{Decoding, Sampling};
use shared::model::lora::LoraConfig;
use shared::tokenizer::{Gpt2Tokenizer, END_OF_TEXT_ID};

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
    /// Prompt style (model: a Hugging Face instruction model's own chat template)
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
    #[command(flatten)]
    train: TrainFlags<Chapter7>,
    /// Longest response when answering the test set
    #[arg(long, default_value_t = MAX_NEW_TOKENS)]
    max_new_tokens: i64,
    /// Skip answering the test set after training
    #[arg(long)]
    no_responses: bool,
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
            train: self.train.clone(),
            responses: !self.no_responses,
            max_new_tokens: self.max_new_tokens,
            verbose: true,
        })
    }
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// A fine-tuned model: this chapter's checkpoint (NAME.safetensors or NAME.json), any checkpoint of ours (chapter 5's), or a book state dict such as gpt2-medium355M-sft.pth [default: the model --init names, e.g. --init random --config FILE]
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Prompt style [default: the one the checkpoint was trained with, else the model's own chat template when it has one, else alpaca]
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
    /// The model: `--checkpoint`, else the one `init` names; with int8 weights when
    /// `--int8` is given.
    fn load(&self, init: &InitArgs, context: &RunContext) -> Result<InstructionModel> {
        let init = match &self.checkpoint {
            Some(path) => Init::Checkpoint(path.clone()),
            None => init.init()?,
        };
        self.load_from(&init, context)
    }

    /// The model `init` names, prompted in `--template` (else as a checkpoint records), with
    /// the decoding flags' kernels.
    fn load_from(&self, init: &Init, context: &RunContext) -> Result<InstructionModel> {
        let mut model = match init {
            Init::Checkpoint(path) => finetune::load_model(path, self.template, context)?,
            init => InstructionModel::new(init.load(context, Some(0.0))?, self.template)?,
        };
        self.decoding.prepare(&mut model.loaded.model)?;
        Ok(model)
    }

    /// [`ModelArgs::load`], with `decoding` stopping at the model's own end-of-text tokens
    /// (Llama's, Qwen3's, Gemma's; GPT-2's is the one it was built with).
    fn load_for(&self, init: &InitArgs, context: &RunContext, decoding: &mut Decoding) -> Result<InstructionModel> {
        let model = self.load(init, context)?;
        decoding.stop_at_model_stops(&model.loaded.model)?;
        Ok(model)
    }

    /// The model's name in the server's API: the checkpoint's file name, else the model
    /// `init` names.
    fn model_id(&self, init: &InitArgs) -> String {
        let stem = |path: &std::path::Path| path.file_stem().map(|s| s.to_string_lossy().into_owned());
        match (&self.checkpoint, init.init.as_str()) {
            (Some(path), _) => stem(path),
            (None, "random") => stem(std::path::Path::new(&init.config)).map(|name| format!("random-{name}")),
            (None, "gpt2") => Some(init.weights.clone()),
            (None, preset) => Some(preset.to_string()),
        }
        .unwrap_or_else(|| "model".into())
    }

    /// The server's settings for what a request leaves out: these flags.
    fn serve_defaults(&self) -> Result<Defaults> {
        anyhow::ensure!(
            self.decoding.beams.is_none() && self.decoding.repetition_penalty.is_none(),
            "the server decodes token by token with each request's sampling settings: --beams and \
             --repetition-penalty are respond's flags"
        );
        Sampling { temperature: self.temperature, top_k: self.top_k, eos_id: None }.validate()?;
        anyhow::ensure!(self.max_new_tokens >= 1, "--max-new-tokens must be at least 1");
        Ok(Defaults {
            max_tokens: self.max_new_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.decoding.top_p,
        })
    }

    /// `serve`'s options; the model loads on the server's worker thread.
    fn serve_options(&self, server: &ServerArgs, init: &InitArgs) -> Result<ServeOptions> {
        anyhow::ensure!(self.temperature <= 2.0, "the API takes temperatures up to 2");
        Ok(ServeOptions {
            host: server.host.clone(),
            port: server.port,
            model_id: server.model_name.clone().unwrap_or_else(|| self.model_id(init)),
            max_batch: server.max_batch,
            max_queue: server.max_queue,
            prompt_cache: server.prompt_cache,
            max_body_bytes: server.max_body_bytes,
            defaults: self.serve_defaults()?,
            access: server.access()?,
            connections: server.connections()?,
        })
    }

    /// Starts a server for this model, or for the models `--model` names.
    fn start_server(&self, server: &ServerArgs, init: &InitArgs, context: &RunContext) -> Result<RunningServer> {
        let options = self.serve_options(server, init)?;
        if server.models.is_empty() {
            let (model, init, context) = (self.clone(), init.clone(), context.clone());
            return serve::start(move || model.load(&init, &context), options);
        }
        ensure!(
            self.checkpoint.is_none() && server.model_name.is_none(),
            "with --model NAME=SOURCE, give every model that way (--model NAME=FILE for a checkpoint), not \
             --checkpoint or --model-name"
        );
        let names: Vec<&str> = server.models.iter().filter_map(|spec| spec.split_once('=').map(|(n, _)| n)).collect();
        let entries =
            server.models.iter().map(|spec| self.model_entry(spec, &names, context)).collect::<Result<Vec<_>>>()?;
        serve::start_models(entries, options)
    }

    /// `--model NAME=SOURCE`: `BASE+FILE` (a LoRA run's adapters over the model named BASE),
    /// `random:CONFIG`, a checkpoint file, else GPT-2 weights (a size, hub id or folder).
    fn model_entry(&self, spec: &str, names: &[&str], context: &RunContext) -> Result<ModelEntry> {
        let (name, source) = spec.split_once('=').filter(|(name, source)| !name.is_empty() && !source.is_empty()).with_context(|| {
            format!("--model takes NAME=SOURCE (e.g. base=gpt2-small or tuned=base+runs/lora-adapters.safetensors), got '{spec}'")
        })?;
        if let Some((base, file)) = source.split_once('+').filter(|(_, file)| file.ends_with(".safetensors")) {
            ensure!(names.contains(&base), "--model {spec}: no --model is named '{base}', the adapters' base");
            let adapter = AdapterSource { path: PathBuf::from(file), template: self.template };
            return Ok(ModelEntry::adapter(name, base, adapter));
        }
        let init = match source.strip_prefix("random:") {
            Some(config) => Init::Random(config.to_string()),
            None if std::path::Path::new(source).is_file() => Init::Checkpoint(PathBuf::from(source)),
            None => Init::Gpt2(source.to_string()),
        };
        let (model, context) = (self.clone(), context.clone());
        Ok(ModelEntry::model(name, move || model.load_from(&init, &context)))
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

/// Where and how `serve` listens.
#[derive(Args)]
struct ServerArgs {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// 0 picks a free port
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The model's name in the API [default: the checkpoint's file name, or the --init model]
    #[arg(long)]
    model_name: Option<String>,
    /// A model to serve, as NAME=SOURCE (repeatable; requests choose one by its name, the
    /// first by default). SOURCE: a checkpoint file, GPT-2 weights (gpt2-small|medium|large|xl,
    /// a hub id or a folder), random:CONFIG (a seeded new model), or BASE+FILE.safetensors (a
    /// LoRA run's adapters over the model named BASE, sharing its weights) [default: the one
    /// model --checkpoint or --init names]
    #[arg(long = "model", value_name = "NAME=SOURCE")]
    models: Vec<String>,
    /// Requests decoded together at most
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
    /// Requests waiting at most; more are answered 429
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Finished requests whose keys and values are kept for a next turn that extends their
    /// prompt (each as large as the model's context); 0 turns prompt caching off
    #[arg(long, default_value_t = 4)]
    prompt_cache: usize,
    /// Largest request body in bytes; larger ones are answered 413
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// A host name requests may give in their Host header besides localhost, 127.0.0.1, ::1
    /// and --host (repeatable; * allows any). Needed when serving on 0.0.0.0
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<String>,
    /// An origin (https://example.org) whose web pages may call the server, with CORS
    /// headers (repeatable; * allows any). By default only the server's own page may
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// Require 'Authorization: Bearer KEY' on every /v1/ request (OpenAI clients send their api_key so)
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
    /// Connections open at once; more wait until one closes
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers (also how long an idle connection is kept)
    #[arg(long, default_value_t = ConnectionLimits::default().header_timeout.as_secs_f64())]
    header_timeout: f64,
    /// Seconds a client has to send a request's body
    #[arg(long, default_value_t = ConnectionLimits::default().body_timeout.as_secs_f64())]
    body_timeout: f64,
}

impl ServerArgs {
    /// The server's settings on `127.0.0.1` with a free port (the load test's).
    fn local(max_batch: usize, max_queue: usize) -> Self {
        let limits = ConnectionLimits::default();
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            model_name: None,
            models: Vec::new(),
            max_batch,
            max_queue,
            prompt_cache: 4,
            max_body_bytes: 1 << 20,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            api_key: None,
            max_connections: limits.max_connections,
            header_timeout: limits.header_timeout.as_secs_f64(),
            body_timeout: limits.body_timeout.as_secs_f64(),
        }
    }

    fn connections(&self) -> Result<ConnectionLimits> {
        let seconds = |value: f64, flag: &str| {
            ensure!(value > 0.0 && value <= 86_400.0, "{flag} must be between 0 and 86400 seconds, got {value}");
            Ok(Duration::from_secs_f64(value))
        };
        Ok(ConnectionLimits {
            max_connections: self.max_connections,
            header_timeout: seconds(self.header_timeout, "--header-timeout")?,
            body_timeout: seconds(self.body_timeout, "--body-timeout")?,
        })
    }

    fn access(&self) -> Result<Access> {
        ensure!(self.api_key.as_ref().is_none_or(|key| !key.trim().is_empty()), "--api-key cannot be empty");
        Ok(Access {
            allowed_hosts: self.allowed_hosts.clone(),
            allowed_origins: self.allowed_origins.clone(),
            api_key: self.api_key.clone(),
        })
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
    /// Serve the model over OpenAI's HTTP API (/v1/chat/completions, /v1/completions, /v1/models) with a chat page at /
    Serve {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Serve the model on a free local port and measure it under concurrent chat requests
    LoadTest {
        #[command(flatten)]
        model: ModelArgs,
        /// Requests to time (after a warm-up of one per client)
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Clients sending at the same time
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// max_tokens of each request
        #[arg(long, default_value_t = 32)]
        max_tokens: i64,
        /// Requests decoded together at most
        #[arg(long, default_value_t = 8)]
        max_batch: usize,
        /// Turns per conversation: above 1, each client holds conversations of this many
        /// streamed turns (--requests of them), and the load runs twice, with prompt caching
        /// and without, to compare the time to the first token
        #[arg(long, default_value_t = 1)]
        turns: usize,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Serve the model on a free local port and send it valid and hostile requests mixed
    /// (the reliability soak test); fails unless every valid request got its whole answer,
    /// every hostile one its 4xx, /health answers within 1 s and memory is back within 20 %
    Soak {
        #[command(flatten)]
        model: ModelArgs,
        /// Requests of every kind together (after a warm-up of one of each kind)
        #[arg(long, default_value_t = 3000)]
        requests: usize,
        /// Clients sending at the same time
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// max_tokens of the valid requests
        #[arg(long, default_value_t = 8)]
        max_tokens: i64,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Preference tuning with DPO (the book's companion notebook): the policy, from a chapter 7
    /// fine-tune (--checkpoint) or the model --init names, learns to prefer the chosen responses of
    /// the preference data (bundled; --data FILE) over the rejected ones, against a frozen copy of
    /// itself; writes dpo.safetensors, metrics.json and dpo-plot.png
    Dpo(DpoArgs),
    /// Make preference data as the companion notebook does: a local model served by Ollama
    /// rewrites each record's output slightly more polite or impolite (a seeded coin decides);
    /// the politer response is chosen. Writes instruction-data-with-preference.json
    PreferenceData {
        /// Instruction records [default: the book's instruction data]
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// The model that rewrites, as Ollama names it
        #[arg(long, default_value = judge::DEFAULT_MODEL)]
        model: String,
        /// The Ollama server
        #[arg(long, default_value = judge::DEFAULT_HOST, value_name = "URL")]
        host: String,
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

#[derive(Args)]
struct DpoArgs {
    /// The model to tune: a chapter 7 fine-tune (NAME.safetensors) or any checkpoint of ours [default: the model --init names]
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// The frozen reference model, the same model as the policy [default: the policy's starting point]
    #[arg(long, value_name = "FILE")]
    reference: Option<PathBuf>,
    /// How far the policy may move from the reference (DPO's beta; the notebook's 0.1)
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    beta: f64,
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    #[arg(long, default_value_t = 5e-6, allow_negative_numbers = true)]
    lr: f64,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Evaluate every N steps
    #[arg(long, default_value_t = 5)]
    eval_freq: usize,
    /// Batches per evaluation
    #[arg(long, default_value_t = 5)]
    eval_iter: usize,
    /// Train LoRA adapters of this rank on every linear layer instead of every weight
    #[arg(long, value_name = "RANK")]
    lora_rank: Option<i64>,
    #[arg(long, default_value_t = 16.0, requires = "lora_rank")]
    lora_alpha: f64,
    /// Use only the first N preference records (quick runs)
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Longest response when answering validation instructions before and after
    #[arg(long, default_value_t = MAX_NEW_TOKENS)]
    max_new_tokens: i64,
}

impl DpoArgs {
    fn run(&self, init: &InitArgs, context: &RunContext) -> Result<()> {
        let options = DpoOptions {
            beta: self.beta,
            epochs: self.epochs,
            lr: self.lr,
            weight_decay: self.weight_decay,
            batch_size: self.batch_size,
            eval_freq: self.eval_freq,
            eval_iter: self.eval_iter,
            lora: self.lora_rank.map(|rank| LoraConfig { rank, alpha: self.lora_alpha }),
            limit: self.limit,
            reference: self.reference.clone(),
            max_new_tokens: self.max_new_tokens,
            verbose: true,
        };
        let load = || match &self.checkpoint {
            Some(path) => finetune::load_model(path, None, context),
            None => InstructionModel::new(init.init()?.load(context, Some(0.0))?, None),
        };
        dpo_run::run(context, &options, load)?;
        Ok(())
    }
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
        Some(Command::Exercises(command)) => command.run_with_flags(exercises::ALL, context, |json| {
            Ok(FinetuneOptions { verbose: !json, ..cli.run.options()? })
        })?,
        Some(Command::Respond { model, instruction, input }) => {
            let mut decoding = model.decoding(&context)?;
            let loaded = model.load_for(&cli.run.model, &context, &mut decoding)?;
            let record = InstructionRecord::new(&instruction, &input, "");
            let (m, template) = (&loaded.loaded.model, loaded.prompt_template()?);
            println!("{}", respond_with(m, &*template, &record, model.max_new_tokens, context.device, &mut decoding)?);
        }
        Some(Command::Chat { model }) => chat(&model, &cli.run.model, &context)?,
        Some(Command::Serve { model, server }) => {
            let running = model.start_server(&server, &cli.run.model, &context)?;
            let url = running.url();
            for (name, info) in &running.models {
                eprintln!("Serving {name} ({}) on {}", info.description, info.device);
            }
            eprintln!("on {url}");
            eprintln!(
                "  chat page:  {url}/\n  OpenAI API: {url}/v1 (chat/completions, completions, models)\nCtrl-C stops."
            );
            running.run_until_ctrl_c()?;
        }
        Some(Command::LoadTest { model, requests, concurrency, max_tokens, max_batch, turns, json }) if turns > 1 => {
            let options = ConversationOptions { conversations: requests, concurrency, turns, max_tokens };
            let mut reports = Vec::new();
            // A cache entry per client, so that each client's next turn can find its own.
            for prompt_cache in [concurrency.max(4), 0] {
                let server = ServerArgs { prompt_cache, ..ServerArgs::local(max_batch, concurrency.max(1)) };
                let running = model.start_server(&server, &cli.run.model, &context)?;
                reports.push(load_test::run_conversations(&running.url(), &options, prompt_cache)?);
                running.stop()?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                println!("{}", load_test::CONVERSATION_HEADER);
                reports.iter().for_each(|report| println!("{report}"));
            }
        }
        Some(Command::LoadTest { model, requests, concurrency, max_tokens, max_batch, json, .. }) => {
            let server = ServerArgs::local(max_batch, concurrency.max(1));
            let running = model.start_server(&server, &cli.run.model, &context)?;
            let (name, info) = &running.models[0];
            eprintln!("Load test of {name} ({}) on {}", info.description, info.device);
            let report = load_test::run(&running.url(), &LoadTestOptions { requests, concurrency, max_tokens })?;
            running.stop()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Some(Command::Soak { model, requests, concurrency, max_tokens, json }) => {
            let server = ServerArgs::local(8, concurrency.max(1) * 2);
            let running = model.start_server(&server, &cli.run.model, &context)?;
            let report = soak::run(running.addr, &SoakOptions { requests, concurrency, max_tokens })?;
            running.stop()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            ensure!(report.passed(), "the server did not hold up under the soak (see the report above)");
        }
        Some(Command::Responses { model, records: file }) => {
            let mut decoding = model.decoding(&context)?;
            let loaded = model.load_for(&cli.run.model, &context, &mut decoding)?;
            let records = match file {
                Some(path) => records::load(&path)?,
                None => Splits::new(records::load(&records::locate(&context.data)?)?).test,
            };
            context.create_out_dir()?;
            let answered = respond_all(
                &loaded.loaded.model,
                &*loaded.prompt_template()?,
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
        Some(Command::Dpo(args)) => args.run(&cli.run.model, &context)?,
        Some(Command::PreferenceData { input, model, host }) => preference_data(input, &model, &host, &context)?,
        Some(Command::Evaluate { responses, model, host, template }) => {
            evaluate(&responses, &model, &host, template, &context)?
        }
    }
    Ok(())
}

fn chat(model: &ModelArgs, init: &InitArgs, context: &RunContext) -> Result<()> {
    let mut decoding = model.decoding(context)?;
    let loaded = model.load_for(init, context, &mut decoding)?;
    let template = &*loaded.prompt_template()?;
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

fn preference_data(input: Option<PathBuf>, model: &str, host: &str, context: &RunContext) -> Result<()> {
    let path = match input {
        Some(path) => path,
        None => records::locate(&context.data)?,
    };
    let records = records::load(&path)?;
    context.create_out_dir()?;
    let client = OllamaClient::new(host, model);
    let bar = shared::train::progress_bar(true, records.len() as u64);
    bar.set_message(format!("rewriting with {model}"));
    let out = context.out_dir.join(shared::data::PREFERENCE_DATA.name);
    let mut made = Vec::new();
    let result = make_preference_data(&client, &Alpaca, &records, context.seed, |pair| {
        made.push(pair.clone());
        bar.inc(1);
    });
    bar.finish_and_clear();
    match result {
        Ok(pairs) => {
            records::save(&out, &pairs)?;
            println!("Wrote {} preference records to {}", pairs.len(), out.display());
            Ok(())
        }
        Err(err) if !made.is_empty() => {
            records::save(&out, &made)?;
            Err(err.context(format!(
                "the server failed after {} of {} records; those are in {}",
                made.len(),
                records.len(),
                out.display()
            )))
        }
        Err(err) => Err(err),
    }
}

fn evaluate(
    responses: &std::path::Path,
    model: &str,
    host: &str,
    template: TemplateKind,
    context: &RunContext,
) -> Result<()> {
    ensure!(
        template != TemplateKind::Model,
        "the judge reads each instruction in one of the book's styles: --template alpaca or phi3"
    );
    let template = &*template.template(&Gpt2Tokenizer::new())?;
    let records = records::load(responses)?;
    context.create_out_dir()?;
    let client = OllamaClient::new(host, model);
    let bar = shared::train::progress_bar(true, records.len() as u64);
    bar.set_message(format!("scoring with {model}"));
    let mut partial = Vec::new();
    let result = judge::score_responses(&client, template, &records, |score| {
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
