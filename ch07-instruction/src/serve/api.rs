//! OpenAI's wire format, as far as this server speaks it: the request bodies of
//! `/v1/chat/completions` and `/v1/completions`, their checks, the chat template, and the
//! response, stream-chunk and error bodies.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use shared::tokenizer::{TokenId, Tokenizer};

use super::text::TextRules;
use super::worker::{FinishReason, RowSampling, TokenLogprob};
use crate::template::PromptTemplate;

/// Most stop sequences a request may give (OpenAI's limit).
pub const MAX_STOPS: usize = 4;
/// The longest stop sequence, in characters: every generated token is checked against
/// each, and the text is held back by the longest, so their size is bounded as their count.
pub const MAX_STOP_CHARS: usize = 256;
/// Most alternatives per token a chat request may ask for (`top_logprobs`, OpenAI's limit).
pub const MAX_TOP_LOGPROBS: i64 = 20;
/// Most alternatives per token a completion request may ask for (`logprobs`, OpenAI's limit).
pub const MAX_COMPLETION_LOGPROBS: i64 = 5;

/// `POST /v1/chat/completions`. Fields this server does not use are ignored.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    /// The newer name of `max_tokens`.
    pub max_completion_tokens: Option<i64>,
    /// Report each token's log-probability.
    pub logprobs: Option<bool>,
    /// With `logprobs`: this many most likely alternatives per token (0-20).
    pub top_logprobs: Option<i64>,
    #[serde(flatten)]
    pub params: Params,
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    pub echo: Option<bool>,
    pub logprobs: Option<Value>,
    pub suffix: Option<String>,
    #[serde(flatten)]
    pub params: Params,
}

/// The settings both endpoints share.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    pub model: Option<String>,
    pub max_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Not OpenAI's, but common among local servers (llama.cpp, vLLM).
    pub top_k: Option<i64>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    pub n: Option<i64>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: Option<Content>,
}

/// A message's content: a string, or a list of parts of which only text is understood.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

/// The server's settings for what a request leaves out (`serve`'s model flags).
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub max_tokens: i64,
    pub temperature: f64,
    pub top_k: Option<i64>,
    pub top_p: Option<f64>,
}

/// What the server allows a request: the most choices (`n`), its batch size (so that a
/// request's choices can be decoded together) or its queue's, whichever is smaller.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub defaults: Defaults,
    pub max_choices: usize,
}

/// A checked request, before tokenizing: the prompt text and how to continue it.
#[derive(Debug)]
pub struct Generation {
    pub prompt: String,
    /// `None`: as many as the server's default allows within the context.
    pub max_tokens: Option<i64>,
    pub sampling: RowSampling,
    pub text: TextRules,
    /// How many choices (`n`).
    pub choices: usize,
    /// `Some(k)`: each token's log-probability with `k` alternatives.
    pub logprobs: Option<usize>,
    pub stream: bool,
    pub include_usage: bool,
}

impl Generation {
    /// The seed of choice `index`: the request's seed for the first, so that `n: 1` and the
    /// first of `n` choices agree, and a different stream for each other one.
    pub fn choice_seed(&self, index: usize) -> Option<u64> {
        self.sampling.seed.map(|seed| seed.wrapping_add((index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
    }
}

impl Params {
    /// Checks the settings; `prompt`, `marker` and `trim` come from the endpoint.
    fn generation(
        self,
        prompt: String,
        (marker, trim): (Option<&'static str>, bool),
        limits: &Limits,
    ) -> Result<Generation, ApiError> {
        let defaults = &limits.defaults;
        let choices = self.n.unwrap_or(1);
        if !(1..=limits.max_choices as i64).contains(&choices) {
            return Err(ApiError::invalid(
                format!(
                    "n must be between 1 and {} (the server's batch or queue size), got {choices}",
                    limits.max_choices
                ),
                "n",
            ));
        }
        let temperature = self.temperature.unwrap_or(defaults.temperature);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid(
                format!("temperature must be between 0 and 2, got {temperature}"),
                "temperature",
            ));
        }
        let top_p = self.top_p.or(defaults.top_p);
        if top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
            return Err(ApiError::invalid("top_p must be above 0 and at most 1", "top_p"));
        }
        let top_k = self.top_k.or(defaults.top_k);
        if top_k.is_some_and(|k| k < 1) {
            return Err(ApiError::invalid("top_k must be at least 1", "top_k"));
        }
        if self.max_tokens.is_some_and(|n| n < 1) {
            return Err(ApiError::invalid("max_tokens must be at least 1", "max_tokens"));
        }
        let stops: Vec<String> = match self.stop {
            None => Vec::new(),
            Some(Stop::One(stop)) => vec![stop],
            Some(Stop::Many(stops)) => stops,
        };
        if stops.len() > MAX_STOPS {
            return Err(ApiError::invalid(format!("stop takes at most {MAX_STOPS} sequences"), "stop"));
        }
        if stops.iter().any(|stop| stop.chars().count() > MAX_STOP_CHARS) {
            return Err(ApiError::invalid(format!("a stop sequence has at most {MAX_STOP_CHARS} characters"), "stop"));
        }
        let stops = stops.into_iter().filter(|stop| !stop.is_empty()).collect();
        Ok(Generation {
            prompt,
            max_tokens: self.max_tokens,
            sampling: RowSampling { temperature, top_k, top_p, seed: self.seed.map(|seed| seed as u64) },
            text: TextRules { marker, trim, stops },
            choices: choices as usize,
            logprobs: None,
            stream: self.stream.unwrap_or(false),
            include_usage: self.stream_options.is_some_and(|options| options.include_usage),
        })
    }
}

impl ChatRequest {
    /// The conversation in the model's prompt template; the text the client sees is the
    /// response as `respond` extracts it (marker removed, trimmed).
    pub fn generation(mut self, template: &dyn PromptTemplate, limits: &Limits) -> Result<Generation, ApiError> {
        let prompt = render_chat(template, &self.messages)?;
        self.params.max_tokens = self.max_completion_tokens.or(self.params.max_tokens);
        let top = self.top_logprobs;
        if top.is_some_and(|k| !(0..=MAX_TOP_LOGPROBS).contains(&k)) {
            return Err(ApiError::invalid(
                format!("top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}"),
                "top_logprobs",
            ));
        }
        let logprobs = match (self.logprobs.unwrap_or(false), top) {
            (true, top) => Some(top.unwrap_or(0) as usize),
            (false, Some(_)) => {
                return Err(ApiError::invalid("top_logprobs needs logprobs set to true", "top_logprobs"))
            }
            (false, None) => None,
        };
        let generation = self.params.generation(prompt, (template.response_marker(), true), limits)?;
        Ok(Generation { logprobs, ..generation })
    }
}

impl CompletionRequest {
    /// The prompt as given, continued as it is.
    pub fn generation(self, limits: &Limits) -> Result<Generation, ApiError> {
        if self.echo == Some(true) || self.suffix.is_some() {
            return Err(ApiError::invalid("echo and suffix are not supported", "echo"));
        }
        let logprobs = match &self.logprobs {
            None | Some(Value::Null) => None,
            Some(value) => match value.as_i64() {
                Some(k) if (0..=MAX_COMPLETION_LOGPROBS).contains(&k) => Some(k as usize),
                _ => {
                    return Err(ApiError::invalid(
                        format!("logprobs must be a number of alternatives between 0 and {MAX_COMPLETION_LOGPROBS}"),
                        "logprobs",
                    ))
                }
            },
        };
        let prompt = match self.prompt {
            Prompt::One(prompt) => prompt,
            Prompt::Many(mut prompts) if prompts.len() == 1 => prompts.remove(0),
            Prompt::Many(_) => return Err(ApiError::invalid("this server takes one prompt per request", "prompt")),
        };
        let generation = self.params.generation(prompt, (None, false), limits)?;
        Ok(Generation { logprobs, ..generation })
    }
}

/// The conversation in the template the model was fine-tuned with
/// ([`PromptTemplate::render_chat`]: one instruction and its input per prompt in the book's
/// styles, the whole conversation in a model's own chat template); `developer` messages are
/// system messages. A conversation the template cannot render is the client's error.
pub fn render_chat(template: &dyn PromptTemplate, messages: &[ChatMessage]) -> Result<String, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages must hold at least one message", "messages"));
    }
    let mut turns = Vec::with_capacity(messages.len());
    for message in messages {
        let text = content_text(message.content.as_ref())?;
        let role = match message.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(ApiError::invalid(
                    format!("unsupported message role '{other}': use system, developer, user or assistant"),
                    "messages",
                ))
            }
        };
        turns.push(shared::tokenizer::ChatMessage::new(role, &text));
    }
    template.render_chat(&turns).map_err(|err| ApiError::invalid(format!("{err:#}"), "messages"))
}

fn content_text(content: Option<&Content>) -> Result<String, ApiError> {
    match content {
        None => Err(ApiError::invalid("every message needs text content", "messages")),
        Some(Content::Text(text)) => Ok(text.clone()),
        Some(Content::Parts(parts)) => parts
            .iter()
            .map(|part| match (part.kind.as_str(), &part.text) {
                ("text", Some(text)) => Ok(text.as_str()),
                _ => Err(ApiError::invalid(
                    format!("content parts of type '{}' are not supported: this model reads text", part.kind),
                    "messages",
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| texts.join("\n")),
    }
}

/// Which endpoint a response belongs to: they shape the same results differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

/// The fields every response and chunk of one request repeats, and what shapes them.
#[derive(Clone)]
pub struct Reply {
    pub endpoint: Endpoint,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub prompt_tokens: usize,
    /// Whether the request asked for log-probabilities.
    pub logprobs: bool,
    /// Writes the tokens of the log-probabilities.
    pub tokenizer: Arc<dyn Tokenizer>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply").field("id", &self.id).field("endpoint", &self.endpoint).finish()
    }
}

/// One choice of a response that did not stream.
#[derive(Debug, Default)]
pub struct ChoiceResult {
    pub text: String,
    pub reason: Option<FinishReason>,
    pub completion_tokens: usize,
    pub logprobs: Vec<TokenLogprob>,
}

/// A token as OpenAI shows it: its text (U+FFFD where it holds part of a character) and its
/// bytes.
fn token_text(tokenizer: &dyn Tokenizer, id: i64) -> (String, Vec<u8>) {
    let bytes = tokenizer.token_bytes(id as TokenId).unwrap_or_default();
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

impl Reply {
    fn envelope(&self, object: &str, choices: Value) -> Value {
        json!({ "id": self.id, "object": object, "created": self.created, "model": self.model, "choices": choices })
    }

    fn usage(&self, completion_tokens: usize) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        })
    }

    /// A choice's `logprobs` field for `tokens`; a completion's `text_offset`s start at
    /// `offset`, the characters of the choice's tokens before these, which it advances.
    fn logprobs_field(&self, tokens: &[TokenLogprob], offset: &mut usize) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        let tokenizer = self.tokenizer.as_ref();
        match self.endpoint {
            Endpoint::Chat => {
                let entry = |id: i64, logprob: f64| {
                    let (token, bytes) = token_text(tokenizer, id);
                    json!({ "token": token, "logprob": logprob, "bytes": bytes })
                };
                let content: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        let mut item = entry(t.id, t.logprob);
                        item["top_logprobs"] = t.top.iter().map(|&(id, logprob)| entry(id, logprob)).collect();
                        item
                    })
                    .collect();
                json!({ "content": content, "refusal": null })
            }
            Endpoint::Completion => {
                let (mut texts, mut offsets) = (Vec::new(), Vec::new());
                for t in tokens {
                    let text = token_text(tokenizer, t.id).0;
                    offsets.push(*offset);
                    *offset += text.chars().count();
                    texts.push(text);
                }
                let top: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        let alternatives: Map<String, Value> =
                            t.top.iter().map(|&(id, logprob)| (token_text(tokenizer, id).0, json!(logprob))).collect();
                        Value::Object(alternatives)
                    })
                    .collect();
                let logprobs: Vec<f64> = tokens.iter().map(|t| t.logprob).collect();
                json!({ "tokens": texts, "token_logprobs": logprobs, "top_logprobs": top, "text_offset": offsets })
            }
        }
    }

    /// The whole response of a request that did not stream.
    pub fn complete(&self, choices: &[ChoiceResult]) -> Value {
        let object = match self.endpoint {
            Endpoint::Chat => "chat.completion",
            Endpoint::Completion => "text_completion",
        };
        let bodies: Vec<Value> = choices
            .iter()
            .enumerate()
            .map(|(index, choice)| {
                let logprobs = self.logprobs_field(&choice.logprobs, &mut 0);
                match self.endpoint {
                    Endpoint::Chat => json!({ "index": index,
                        "message": { "role": "assistant", "content": choice.text },
                        "logprobs": logprobs, "finish_reason": choice.reason }),
                    Endpoint::Completion => json!({ "index": index, "text": choice.text, "logprobs": logprobs,
                        "finish_reason": choice.reason }),
                }
            })
            .collect();
        let mut body = self.envelope(object, Value::Array(bodies));
        body["usage"] = self.usage(choices.iter().map(|c| c.completion_tokens).sum());
        body
    }

    /// A stream chunk of choice `index` with new `text` and the log-probabilities of its
    /// tokens (a completion's offsets from `offset`, advanced past them), and, in the
    /// choice's last one, the finish reason. A chat stream's first chunk of each choice
    /// names the role.
    pub fn chunk(
        &self,
        index: usize,
        text: &str,
        tokens: &[TokenLogprob],
        offset: &mut usize,
        reason: Option<FinishReason>,
    ) -> Value {
        let logprobs = if tokens.is_empty() { Value::Null } else { self.logprobs_field(tokens, offset) };
        match self.endpoint {
            Endpoint::Chat => {
                let delta = if reason.is_some() { json!({}) } else { json!({ "content": text }) };
                let choice = json!({ "index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason });
                self.envelope("chat.completion.chunk", json!([choice]))
            }
            Endpoint::Completion => self.envelope(
                "text_completion",
                json!([{ "index": index, "text": text, "logprobs": logprobs, "finish_reason": reason }]),
            ),
        }
    }

    /// The first chunk of a chat stream's choice `index`: the assistant's role, no text yet.
    pub fn role_chunk(&self, index: usize) -> Value {
        let choice = json!({ "index": index, "delta": { "role": "assistant", "content": "" }, "logprobs": null,
                             "finish_reason": null });
        self.envelope("chat.completion.chunk", json!([choice]))
    }

    /// The usage chunk `stream_options.include_usage` asks for: no choices.
    pub fn usage_chunk(&self, completion_tokens: usize) -> Value {
        let object = match self.endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Completion => "text_completion",
        };
        let mut chunk = self.envelope(object, json!([]));
        chunk["usage"] = self.usage(completion_tokens);
        chunk
    }
}

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: a request this server cannot take as it is.
    pub fn invalid(message: impl Into<String>, param: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message, "invalid_request_error", Some(param), None)
    }

    pub fn new(
        status: StatusCode,
        message: impl Into<String>,
        kind: &'static str,
        param: Option<&'static str>,
        code: Option<&'static str>,
    ) -> Self {
        Self { status, message: message.into(), kind, param, code }
    }

    /// The body, also sent as a stream's last event when decoding fails midway.
    pub fn body(&self) -> Value {
        json!({ "error": { "message": self.message, "type": self.kind, "param": self.param, "code": self.code } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
