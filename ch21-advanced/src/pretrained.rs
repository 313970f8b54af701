//! The model that the analysis exercises (21.17-21.24) study: OpenAI's GPT-2 when its weights
//! are given (`--weights`), a checkpoint of ours (`--checkpoint`), or else the project's own
//! pretrained model: a small GPT-2 (its tokenizer, tied embeddings, learned positions) trained
//! by `pretrain` on the bundled tiny Shakespeare in under half an hour on 2 CPU cores, and kept
//! under the output folder's `models/` for every later run.

use anyhow::Result;
use serde::Serialize;
use shared::app::cli::RunContext;

use crate::minigpt::{self, MiniGptOptions, TokenizerChoice};
use crate::models::{self, Model, ModelFlags};

/// How the project's pretrained model is trained.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pretraining {
    pub options: MiniGptOptions,
    /// Characters of tiny Shakespeare trained on (its first ones; `None`: all of it).
    pub corpus_chars: Option<usize>,
}

impl Pretraining {
    /// 4 layers of 4 heads, width 128, context 256, GPT-2's tokenizer with tied embeddings;
    /// 400 steps of 8 windows (about 2.7 epochs of the 304,000 training tokens), learning rate
    /// 1e-3 after 40 warmup steps, cosine decay to 1e-4.
    pub fn standard() -> Self {
        let options = MiniGptOptions {
            n_layers: 4,
            n_heads: 4,
            emb_dim: 128,
            block_size: 256,
            batch_size: 8,
            tie_embeddings: true,
            tokenizer: TokenizerChoice::Gpt2,
            iters: 400,
            eval_interval: 100,
            eval_iters: 5,
            final_eval_batches: 20,
            warmup_steps: 40,
            ..MiniGptOptions::default()
        };
        Self { options, corpus_chars: None }
    }

    /// For tests: 2 layers of 2 heads, width 32, context 32, `steps` steps on 20,000 characters.
    pub fn tiny(steps: usize) -> Self {
        let options = MiniGptOptions {
            n_heads: 2,
            emb_dim: 32,
            tie_embeddings: true,
            tokenizer: TokenizerChoice::Gpt2,
            ..MiniGptOptions::small(steps)
        };
        Self { options, corpus_chars: Some(20_000) }
    }

    /// The standard recipe for `steps` steps instead of 400.
    pub fn with_steps(mut self, steps: usize) -> Self {
        let interval = if steps % 100 == 0 { 100 } else { steps };
        self.options =
            MiniGptOptions { eval_interval: interval, warmup_steps: (steps / 10) as i64, iters: steps, ..self.options };
        self
    }

    /// The text it trains on (the first 90 % of its tokens; the rest is its validation text).
    pub fn corpus(&self, context: &RunContext) -> Result<String> {
        let text = Self::corpus_text(context)?;
        Ok(match self.corpus_chars {
            Some(chars) => text.chars().take(chars).collect(),
            None => text,
        })
    }

    /// All of tiny Shakespeare, from the bundled copy or the standard locations (never from
    /// `--data`, which names other text in the exercises that take it).
    pub fn corpus_text(context: &RunContext) -> Result<String> {
        minigpt::corpus(&RunContext { data: context.data.without_explicit(), ..context.clone() })
    }

    /// The pretrained model: the one trained earlier with these settings, or trained now
    /// (with progress printed when the settings say so).
    pub fn model(&self, context: &RunContext) -> Result<Model> {
        let options = &self.options;
        let mut model = models::trained(context, "pretrained", options, &self.corpus(context)?)?;
        model.name = format!(
            "the project's pretrained GPT ({} layers, {} heads, width {}, context {}, GPT-2 tokenizer; {} steps on tiny Shakespeare)",
            options.n_layers, options.n_heads, options.emb_dim, options.block_size, options.iters
        );
        Ok(model)
    }
}

/// The model the analysis exercises study: `--weights` or `--checkpoint` when given, else
/// `pretraining`'s model.
pub fn subject(context: &RunContext, flags: &ModelFlags, pretraining: &Pretraining) -> Result<Model> {
    match models::from_flags(context, flags)? {
        Some(model) => Ok(model),
        None => pretraining.model(context),
    }
}
