//! Chat templates: the Jinja template a model's folder ships (`chat_template.jinja`, or the
//! `chat_template` of `tokenizer_config.json`) rendered with `minijinja` as `transformers`'
//! `apply_chat_template` renders it: blocks trimmed (`trim_blocks`, `lstrip_blocks`), loop
//! controls (`break`, `continue`), `messages`, `add_generation_prompt`, `bos_token` and
//! `eos_token` defined, `tools` and `documents` none, Python's string methods available,
//! `raise_exception` an error, and `strftime_now` today's local date (Llama 3's templates
//! date their system prompt with it).

use std::path::Path;

use anyhow::{Context, Result};
use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::huggingface::read_json;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        Self { role: role.to_string(), content: content.to_string() }
    }
}

/// A model's chat template with its special tokens.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    pub source: String,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

impl ChatTemplate {
    /// The template of a model folder: `chat_template.jinja`, else `tokenizer_config.json`'s
    /// `chat_template` (a string, or a list of named templates whose `default` is taken).
    pub fn open(dir: &Path, bos_token: Option<String>, eos_token: Option<String>) -> Result<Option<Self>> {
        let file = dir.join("chat_template.jinja");
        let source = if file.is_file() {
            Some(std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?)
        } else {
            read_json(&dir.join("tokenizer_config.json"))?.and_then(|config| match config.get("chat_template")? {
                Value::String(template) => Some(template.clone()),
                Value::Array(named) => named
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                    .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
                _ => None,
            })
        };
        Ok(source.map(|source| Self { source, bos_token, eos_token }))
    }

    /// The prompt for `messages`; with `add_generation_prompt`, ending where the assistant's
    /// reply begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_function("strftime_now", |format: String| -> Result<String, minijinja::Error> {
            let items: Vec<_> = chrono::format::StrftimeItems::new(&format).collect();
            if items.contains(&chrono::format::Item::Error) {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("bad strftime format {format:?}"),
                ));
            }
            Ok(chrono::Local::now().format_with_items(items.into_iter()).to_string())
        });
        env.add_template("chat", &self.source).context("the chat template does not parse")?;
        let template = env.get_template("chat").expect("just added");
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                tools => minijinja::Value::from(()),
                documents => minijinja::Value::from(()),
                bos_token => self.bos_token.clone().unwrap_or_default(),
                eos_token => self.eos_token.clone().unwrap_or_default(),
            })
            .map_err(|e| anyhow::anyhow!("rendering the chat template: {e:#}"))
    }
}
