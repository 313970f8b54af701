//! What the model reads, in llama.cpp's server shapes: `POST /tokenize` (text to ids, with
//! each token's text when asked), `POST /detokenize` (ids to text) and `POST
//! /apply-template` (a conversation in the model's prompt template, and the ids a chat
//! request with it starts from). Each takes an optional `model` (the server's first by
//! default).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::tokenizer::TokenId;

use super::api::{render_chat, ApiError, ChatMessage, Endpoint};
use super::routes::{parse, AppState};

#[derive(Debug, Deserialize)]
pub struct TokenizeRequest {
    /// Which model's tokenizer (and template) [default: the server's first model].
    #[serde(default)]
    pub model: Option<String>,
    pub content: String,
    /// Add the tokens the tokenizer puts around a whole text (Llama's and Gemma's BOS).
    #[serde(default)]
    pub add_special: bool,
    /// Each token as `{"id", "piece"}`; the piece is text, or its bytes where they are not
    /// UTF-8 (part of a character).
    #[serde(default)]
    pub with_pieces: bool,
}

#[derive(Debug, Deserialize)]
pub struct DetokenizeRequest {
    /// Which model's tokenizer (and template) [default: the server's first model].
    #[serde(default)]
    pub model: Option<String>,
    pub tokens: Vec<i64>,
}

#[derive(Debug, Deserialize)]
pub struct TemplateRequest {
    /// Which model's tokenizer (and template) [default: the server's first model].
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
}

fn tokenizer_error(err: anyhow::Error, param: &'static str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, format!("{err:#}"), "invalid_request_error", Some(param), None)
}

/// `POST /tokenize`: `{"tokens": [ids]}`, or `{"tokens": [{"id", "piece"}]}` with pieces.
pub async fn tokenize(State(state): State<Arc<AppState>>, request: Request) -> Result<Json<Value>, ApiError> {
    let request: TokenizeRequest = parse(request, &state).await?;
    let tokenizer = state.models.find(request.model.as_deref())?.info.prompter.tokenizer.as_ref();
    let ids = if request.add_special {
        tokenizer.encode(&request.content)
    } else {
        tokenizer.encode_fragment(&request.content)
    }
    .map_err(|err| tokenizer_error(err, "content"))?;
    if !request.with_pieces {
        return Ok(Json(json!({ "tokens": ids })));
    }
    let mut tokens = Vec::with_capacity(ids.len());
    for id in ids {
        let bytes = tokenizer.token_bytes(id).map_err(|err| tokenizer_error(err, "content"))?;
        let piece = match String::from_utf8(bytes) {
            Ok(text) => json!(text),
            Err(err) => json!(err.into_bytes()),
        };
        tokens.push(json!({ "id": id, "piece": piece }));
    }
    Ok(Json(json!({ "tokens": tokens })))
}

/// `POST /detokenize`: `{"content": text}`, special tokens written out; an id outside the
/// vocabulary is the client's error.
pub async fn detokenize(State(state): State<Arc<AppState>>, request: Request) -> Result<Json<Value>, ApiError> {
    let request: DetokenizeRequest = parse(request, &state).await?;
    let tokenizer = state.models.find(request.model.as_deref())?.info.prompter.tokenizer.as_ref();
    let size = tokenizer.vocab_size() as i64;
    if let Some(bad) = request.tokens.iter().find(|&&id| !(0..size).contains(&id)) {
        return Err(ApiError::invalid(format!("token id {bad} is outside the vocabulary (0..{size})"), "tokens"));
    }
    let ids: Vec<TokenId> = request.tokens.iter().map(|&id| id as TokenId).collect();
    let content = tokenizer.decode(&ids).map_err(|err| tokenizer_error(err, "tokens"))?;
    Ok(Json(json!({ "content": content })))
}

/// `POST /apply-template`: `{"prompt": text, "tokens": [ids]}`, the conversation as a chat
/// request renders it and the ids the model reads for it.
pub async fn apply_template(State(state): State<Arc<AppState>>, request: Request) -> Result<Json<Value>, ApiError> {
    let request: TemplateRequest = parse(request, &state).await?;
    let prompter = &state.models.find(request.model.as_deref())?.info.prompter;
    let prompt = render_chat(prompter.template.as_ref(), &request.messages)?;
    let ids = prompter.encode(Endpoint::Chat, &prompt).map_err(|err| tokenizer_error(err, "messages"))?;
    Ok(Json(json!({ "prompt": prompt, "tokens": ids })))
}
