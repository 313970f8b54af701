//! How the server turns a request into the prompt's ids: the model's prompt template
//! renders a chat, and the model's tokenizer encodes it (GPT-2's in the book; a Hugging
//! Face model's own, with its chat template).

use std::sync::Arc;

use anyhow::Result;
use shared::tokenizer::Tokenizer;

use super::api::Endpoint;
use crate::finetune::InstructionModel;
use crate::template::{PromptTemplate, TemplateKind};

/// The model's template and tokenizer, shared by the HTTP threads.
pub struct Prompter {
    pub kind: TemplateKind,
    pub template: Box<dyn PromptTemplate>,
    pub tokenizer: Arc<dyn Tokenizer>,
}

impl std::fmt::Debug for Prompter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prompter")
            .field("template", &self.kind)
            .field("tokenizer", &self.tokenizer.spec().name())
            .finish()
    }
}

impl Prompter {
    pub fn new(model: &InstructionModel) -> Result<Self> {
        Self::with_template(model.template, Arc::from(model.loaded.model.cfg.tokenizer.build()?))
    }

    /// `kind`'s template over `tokenizer` (an adapter's, over its base's tokenizer).
    pub fn with_template(kind: TemplateKind, tokenizer: Arc<dyn Tokenizer>) -> Result<Self> {
        Ok(Self { kind, template: kind.template(tokenizer.as_ref())?, tokenizer })
    }

    /// The ids of a request's prompt. A chat template's markup is special tokens, read as
    /// such (as `transformers`' `apply_chat_template` tokenizes); otherwise the prompt is
    /// text, the user's and the book template's alike: `<|endoftext|>` written in a message
    /// is those characters, never the token that ends a document. A completion's prompt
    /// starts as a whole text does (Llama's BOS); an empty one, with GPT-2, is the
    /// end-of-text token that starts a new document, as GPT-2 saw them in training.
    pub fn encode(&self, endpoint: Endpoint, prompt: &str) -> Result<Vec<i64>> {
        let ids = if endpoint == Endpoint::Chat && self.template.writes_special_tokens() {
            self.tokenizer.encode_fragment(prompt)?
        } else {
            let mut ids = self.tokenizer.encode("")?;
            ids.extend(self.tokenizer.encode_ordinary(prompt)?);
            if ids.is_empty() {
                ids.extend(self.tokenizer.end_of_text());
            }
            ids
        };
        Ok(ids.into_iter().map(i64::from).collect())
    }
}
