//! The models of chapter 21's decoding and compression exercises (21.18-21.35): a large
//! model (the target, teacher and scorer; 6 layers of the walk-through's width by default)
//! and a small one (the draft, student and amateur; 2 layers), trained here on the first
//! 200,000 characters of the corpus, or loaded from the command line (`--checkpoint`,
//! `--weights` for GPT-2, `--small-checkpoint`). Trained models are kept under the output
//! folder's `models/` and reused by the next exercise that asks for the same one.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::model_source::{LoadedModel, ModelSource};
use shared::train::Checkpoint;

use crate::minigpt::{self, MiniGptOptions, Teacher};

/// Where the exercises' models come from (the binary's top-level flags).
#[derive(Debug, Clone, Default)]
pub struct ModelFlags {
    /// The large model: a checkpoint of ours.
    pub checkpoint: Option<PathBuf>,
    /// The large model: OpenAI's GPT-2 (a folder, a hub id or gpt2-small|medium|large|xl).
    pub weights: Option<String>,
    /// The small model: a checkpoint of ours sharing the large model's tokenizer.
    pub small_checkpoint: Option<PathBuf>,
    /// Training steps of the large model trained here (default: [`Budget::standard`]'s).
    pub large_steps: Option<usize>,
    /// Training steps of the small model trained here (default: [`Budget::standard`]'s).
    pub small_steps: Option<usize>,
}

/// How much text a decoding exercise generates: prompts (cut from the validation text) and
/// new tokens after each.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sizes {
    pub prompts: usize,
    pub prompt_chars: usize,
    pub new_tokens: i64,
}

impl Sizes {
    /// 10 prompts of 16 characters, 200 new tokens each.
    pub const STANDARD: Self = Self { prompts: 10, prompt_chars: 16, new_tokens: 200 };

    /// For tests: 2 prompts of 8 characters, 12 new tokens.
    pub const TINY: Self = Self { prompts: 2, prompt_chars: 8, new_tokens: 12 };

    /// The prompts, from the validation part of the text the models trained on.
    pub fn prompts(&self, context: &RunContext, budget: &Budget) -> Result<Vec<String>> {
        let text = budget.corpus(context)?;
        crate::quality::validation_prompts(&text, budget.large.train_ratio, self.prompts, self.prompt_chars)
    }
}

/// The sizes and training budgets of the models trained here.
#[derive(Debug, Clone)]
pub struct Budget {
    pub large: MiniGptOptions,
    pub small: MiniGptOptions,
    /// Characters of the corpus trained on (its first ones).
    pub corpus_chars: usize,
}

impl Budget {
    /// 6 layers trained 2,000 steps and 2 layers trained 600, of width 128 (4 heads,
    /// context 64): the large model clearly ahead of the small one.
    pub fn standard() -> Self {
        let model = |layers: i64, steps: usize| MiniGptOptions {
            n_layers: layers,
            emb_dim: 128,
            block_size: 64,
            ..MiniGptOptions::small(steps)
        };
        Self { large: model(6, 2000), small: model(2, 600), corpus_chars: 200_000 }
    }

    /// Models small enough for tests: 2 and 1 layers of width 32, context 32, `steps` steps.
    pub fn tiny(steps: usize) -> Self {
        let model = |layers: i64| MiniGptOptions {
            n_layers: layers,
            emb_dim: 32,
            block_size: 32,
            ..MiniGptOptions::small(steps)
        };
        Self { large: model(2), small: model(1), corpus_chars: 20_000 }
    }

    /// The text the models train on: the corpus's first `corpus_chars` characters.
    pub fn corpus(&self, context: &RunContext) -> Result<String> {
        Ok(minigpt::corpus(context)?.chars().take(self.corpus_chars).collect())
    }

    /// The standard budget with the steps the flags ask for.
    pub fn from_flags(flags: &ModelFlags) -> Self {
        let mut budget = Self::standard();
        if let Some(steps) = flags.large_steps {
            budget.large = budget.large.with_steps(steps);
        }
        if let Some(steps) = flags.small_steps {
            budget.small = budget.small.with_steps(steps);
        }
        budget
    }
}

/// A model ready to use, and a description for tables ("6-layer mini-GPT, 600 steps").
pub struct Model {
    pub loaded: LoadedModel,
    pub name: String,
    /// Where it came from, to hand it on (as a teacher).
    pub source: Teacher,
}

impl Model {
    pub fn gpt(&self) -> &shared::model::GptModel {
        &self.loaded.model
    }
}

/// The large model: loaded from the flags, or trained with `budget`.
pub fn large(context: &RunContext, flags: &ModelFlags, budget: &Budget) -> Result<Model> {
    if let Some(model) = from_flags(context, flags)? {
        return Ok(model);
    }
    trained(context, "large", &budget.large, &budget.corpus(context)?)
}

/// The small model: loaded from the flags, or trained with `budget` for `steps` steps (the
/// budget's when `None`) with the large model's tokenizer.
pub fn small(
    context: &RunContext,
    flags: &ModelFlags,
    budget: &Budget,
    large: &Model,
    steps: Option<usize>,
) -> Result<Model> {
    if let (Some(path), None) = (&flags.small_checkpoint, steps) {
        return load(Teacher::Checkpoint(path.clone()), context, "--small-checkpoint");
    }
    let mut options = budget.small.clone();
    if let Some(steps) = steps {
        options = options.with_steps(steps);
    }
    options.tokenizer_spec = Some(large.gpt().cfg.tokenizer.clone());
    trained(context, "small", &options, &budget.corpus(context)?)
}

/// The model given by `--weights` or `--checkpoint`, if either is.
pub fn from_flags(context: &RunContext, flags: &ModelFlags) -> Result<Option<Model>> {
    if let Some(spec) = &flags.weights {
        return load(Teacher::Weights(spec.clone()), context, "--weights").map(Some);
    }
    flags.checkpoint.as_ref().map(|path| load(Teacher::Checkpoint(path.clone()), context, "--checkpoint")).transpose()
}

fn load(source: Teacher, context: &RunContext, flag: &str) -> Result<Model> {
    let loaded =
        source.source().load(context.device, context.seed).with_context(|| format!("loading the model of {flag}"))?;
    let cfg = &loaded.model.cfg;
    let name = format!("{} ({} layers, width {})", loaded.description, cfg.n_layers, cfg.emb_dim);
    Ok(Model { loaded, name, source })
}

/// A model trained with `options` on `text`, or the one an earlier exercise (or `pretrain`)
/// trained the same way and left under `models/`.
pub fn trained(context: &RunContext, role: &str, options: &MiniGptOptions, text: &str) -> Result<Model> {
    let folder = format!(
        "models/{role}-{}x{}-{}steps-seed{}-{:08x}",
        options.n_layers,
        options.emb_dim,
        options.iters,
        context.seed,
        fingerprint(&format!("{text}{options:?}"))
    );
    let checkpoint = context.out_dir.join(&folder).join("minigpt");
    let finished =
        Checkpoint::at(&checkpoint).read_meta().is_ok_and(|meta| meta.global_step + 1 == options.iters as i64);
    let loaded = if finished {
        ModelSource::checkpoint(&checkpoint).load(context.device, context.seed)?
    } else {
        minigpt::train_and_load(context, &folder, text, options)?.1
    };
    let name = format!("{}-layer mini-GPT, width {}, {} steps", options.n_layers, options.emb_dim, options.iters);
    Ok(Model { loaded, name, source: Teacher::Checkpoint(checkpoint) })
}

/// FNV-1a: a stable 32-bit fingerprint of the corpus and settings a trained model came from.
fn fingerprint(text: &str) -> u32 {
    text.bytes().fold(0x811C_9DC5u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193))
}
