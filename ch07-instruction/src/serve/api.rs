//! OpenAI's wire format, as far as this server speaks it: the request bodies of
//! `/v1/chat/completions` and `/v1/completions`, their checks, the chat template, and the
//! response, stream-chunk and error bodies.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::text::TextRules;
use super::worker::{FinishReason, RowSampling};
use crate::template::PromptTemplate;

/// Most stop sequences a request may give (OpenAI's limit).
pub const MAX_STOPS: usize = 4;
/// The longest stop sequence, in characters: every generated token is checked against
/// each, and the text is held back by the longest, so their size is bounded as their count.
pub const MAX_STOP_CHARS: usize = 256;

/// `POST /v1/chat/completions`. Fields this server does not use are ignored.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    /// The newer name of `max_tokens`.
    pub max_completion_tokens: Option<i64>,
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

/// A checked request, before tokenizing: the prompt text and how to continue it.
#[derive(Debug)]
pub struct Generation {
    pub prompt: String,
    /// `None`: as many as the server's default allows within the context.
    pub max_tokens: Option<i64>,
    pub sampling: RowSampling,
    pub text: TextRules,
    pub stream: bool,
    pub include_usage: bool,
}

impl Params {
    /// Checks the settings; `prompt`, `marker` and `trim` come from the endpoint.
    fn generation(
        self,
        prompt: String,
        (marker, trim): (Option<&'static str>, bool),
        defaults: &Defaults,
    ) -> Result<Generation, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("this server returns one choice per request: n must be 1", "n"));
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
            stream: self.stream.unwrap_or(false),
            include_usage: self.stream_options.is_some_and(|options| options.include_usage),
        })
    }
}

impl ChatRequest {
    /// The conversation in the model's prompt template; the text the client sees is the
    /// response as `respond` extracts it (marker removed, trimmed).
    pub fn generation(mut self, template: &dyn PromptTemplate, defaults: &Defaults) -> Result<Generation, ApiError> {
        let prompt = render_chat(template, &self.messages)?;
        self.params.max_tokens = self.max_completion_tokens.or(self.params.max_tokens);
        self.params.generation(prompt, (template.response_marker(), true), defaults)
    }
}

impl CompletionRequest {
    /// The prompt as given, continued as it is.
    pub fn generation(self, defaults: &Defaults) -> Result<Generation, ApiError> {
        if self.echo == Some(true) || self.logprobs.as_ref().is_some_and(|l| !l.is_null()) || self.suffix.is_some() {
            return Err(ApiError::invalid("echo, logprobs and suffix are not supported", "echo"));
        }
        let prompt = match self.prompt {
            Prompt::One(prompt) => prompt,
            Prompt::Many(mut prompts) if prompts.len() == 1 => prompts.remove(0),
            Prompt::Many(_) => return Err(ApiError::invalid("this server takes one prompt per request", "prompt")),
        };
        self.params.generation(prompt, (None, false), defaults)
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

/// The fields every response and chunk of one request repeats.
#[derive(Debug, Clone)]
pub struct Reply {
    pub endpoint: Endpoint,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub prompt_tokens: usize,
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

    /// The whole response of a request that did not stream.
    pub fn complete(&self, text: &str, reason: FinishReason, completion_tokens: usize) -> Value {
        let (object, choice) = match self.endpoint {
            Endpoint::Chat => (
                "chat.completion",
                json!({ "index": 0, "message": { "role": "assistant", "content": text }, "logprobs": null,
                        "finish_reason": reason }),
            ),
            Endpoint::Completion => {
                ("text_completion", json!({ "index": 0, "text": text, "logprobs": null, "finish_reason": reason }))
            }
        };
        let mut body = self.envelope(object, json!([choice]));
        body["usage"] = self.usage(completion_tokens);
        body
    }

    /// A stream chunk with new `text` and, in the last one, the finish reason. A chat
    /// stream's first chunk names the role.
    pub fn chunk(&self, text: &str, reason: Option<FinishReason>) -> Value {
        match self.endpoint {
            Endpoint::Chat => {
                let delta = if reason.is_some() { json!({}) } else { json!({ "content": text }) };
                let choice = json!({ "index": 0, "delta": delta, "logprobs": null, "finish_reason": reason });
                self.envelope("chat.completion.chunk", json!([choice]))
            }
            Endpoint::Completion => self.envelope(
                "text_completion",
                json!([{ "index": 0, "text": text, "logprobs": null, "finish_reason": reason }]),
            ),
        }
    }

    /// The first chunk of a chat stream: the assistant's role, no text yet.
    pub fn role_chunk(&self) -> Value {
        let choice = json!({ "index": 0, "delta": { "role": "assistant", "content": "" }, "logprobs": null,
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
