//! The HTTP side: axum handlers for the OpenAI endpoints, `/health`, `/v1/models` and the
//! chat page. A handler checks and tokenizes the request, queues it with the worker and
//! answers with the whole response or a stream of server-sent events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use rand::RngExt;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::api::{ApiError, ChatRequest, ChoiceResult, CompletionRequest, Endpoint, Generation, Limits, Reply};
use super::guard::{guard, Access};
use super::models::{ServedModel, ServedModels};
use super::tokenize::{apply_template, detokenize, tokenize};
use super::worker::{Event, Job, RowSampling, SubmitError};

/// The chat page: one self-contained file.
const PAGE: &str = include_str!("page.html");

/// What every handler shares.
pub struct AppState {
    /// The models offered, and their workers.
    pub models: ServedModels,
    /// Defaults for what a request leaves out, and the most choices it may ask for.
    pub limits: Limits,
    pub started: u64,
    /// The time a client has to send a request body.
    pub body_timeout: std::time::Duration,
    /// The largest request body.
    pub max_body_bytes: usize,
}

/// How much of a body over the limit is read (and dropped) before the 413 goes out.
const DRAIN_BYTES: u64 = 16 << 20;

/// The routes, every error (unknown path, wrong method, body too large) in OpenAI's shape,
/// behind the [`guard`] of `access`.
pub fn router(state: Arc<AppState>, max_body_bytes: usize, access: Access) -> Router {
    let cors = access.cors();
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/apply-template", post(apply_template))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such endpoint", "invalid_request_error", None, None)
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed here",
                "invalid_request_error",
                None,
                None,
            )
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(Arc::new(access), guard))
        .with_state(state);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// The server's state: the default model's name and context (as before there were
/// several), every model's, the workers' counters added up, and memory: the process's
/// resident bytes and the weights' (each model's own once, each adapter's).
async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let default = &state.models.models[0];
    let models: Vec<Value> = state
        .models
        .models
        .iter()
        .map(|model| {
            json!({
                "id": model.name,
                "parent": model.parent,
                "context_length": model.info.context_length,
                "weight_bytes": model.info.weight_bytes,
                "device": model.info.device,
                "description": model.info.description,
            })
        })
        .collect();
    Json(json!({
        "status": "ok",
        "model": default.name,
        "context_length": default.info.context_length,
        "models": models,
        "memory": {
            "resident_bytes": memory_stats::memory_stats().map(|usage| usage.physical_mem),
            "weight_bytes": state.models.weight_bytes(),
        },
        "stats": state.models.stats(),
    }))
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    let cards: Vec<Value> = state.models.models.iter().map(|model| ServedModels::card(model, state.started)).collect();
    Json(json!({ "object": "list", "data": cards }))
}

async fn model(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(ServedModels::card(state.models.find(Some(&id))?, state.started)))
}

async fn chat_completions(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let request = parse::<ChatRequest>(request, &state).await.and_then(|request| {
        let model = state.models.find(request.params.model.as_deref())?;
        Ok((model, request.generation(model.info.prompter.template.as_ref(), &state.limits)?))
    });
    respond(&state, Endpoint::Chat, request).await
}

async fn completions(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let request = parse::<CompletionRequest>(request, &state).await.and_then(|request| {
        let model = state.models.find(request.params.model.as_deref())?;
        Ok((model, request.generation(&state.limits)?))
    });
    respond(&state, Endpoint::Completion, request).await
}

/// The body as JSON of type `T`, whatever its content type says (`curl -d` sends a form
/// type): 413 over the size limit, 408 when it takes longer than the body timeout to
/// arrive, 400 for anything that is not such JSON.
pub(super) async fn parse<T: DeserializeOwned>(request: Request, state: &AppState) -> Result<T, ApiError> {
    let timeout = state.body_timeout;
    let declared = request.headers().get(CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|&n| n > state.max_body_bytes as u64) {
        // Read what the client sends (up to a bound) before answering: a connection closed
        // in the middle of an upload reaches the client as a broken pipe, not as the 413.
        let mut body = request.into_body().into_data_stream();
        let (mut drained, deadline) = (0u64, tokio::time::Instant::now() + timeout);
        while drained < DRAIN_BYTES.min(declared) {
            match tokio::time::timeout_at(deadline, body.next()).await {
                Ok(Some(Ok(chunk))) => drained += chunk.len() as u64,
                _ => break,
            }
        }
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("length limit exceeded: the body has {declared} bytes, the limit is {}", state.max_body_bytes),
            "invalid_request_error",
            None,
            None,
        ));
    }
    let body = tokio::time::timeout(timeout, Bytes::from_request(request, &())).await.map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} s", timeout.as_secs_f64()),
            "invalid_request_error",
            None,
            None,
        )
    })?;
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        let kind = if status.is_client_error() { "invalid_request_error" } else { "server_error" };
        ApiError::new(status, rejection.body_text(), kind, None, None)
    })?;
    serde_json::from_slice(&bytes).map_err(|err| {
        let what =
            if std::str::from_utf8(&bytes).is_err() { "the body is not UTF-8 text" } else { "invalid JSON body" };
        ApiError::new(StatusCode::BAD_REQUEST, format!("{what}: {err}"), "invalid_request_error", None, None)
    })
}

async fn respond(
    state: &AppState,
    endpoint: Endpoint,
    request: Result<(&ServedModel, Generation), ApiError>,
) -> Response {
    match generate(state, endpoint, request).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn generate(
    state: &AppState,
    endpoint: Endpoint,
    request: Result<(&ServedModel, Generation), ApiError>,
) -> Result<Response, ApiError> {
    let (model, request) = request?;
    let prompt = model.info.prompter.encode(endpoint, &request.prompt).map_err(|err| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("{err:#}"), "invalid_request_error", None, None)
    })?;
    let max_tokens = max_tokens(model.info.context_length, &state.limits, prompt.len() as i64, request.max_tokens)?;
    let (events, receiver) = unbounded_channel();
    let prompt_tokens = prompt.len();
    let jobs = (0..request.choices)
        .map(|choice| Job {
            prompt: prompt.clone(),
            max_tokens,
            sampling: RowSampling { seed: request.choice_seed(choice), ..request.sampling },
            text: request.text.clone(),
            choice,
            logprobs: request.logprobs,
            events: events.clone(),
            variant: model.variant,
        })
        .collect();
    drop(events);
    model.worker.submit(jobs).map_err(|err| match err {
        SubmitError::QueueFull => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "the server's queue is full; retry shortly",
            "rate_limit_error",
            None,
            Some("queue_full"),
        ),
        SubmitError::Stopped => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model has stopped", "server_error", None, None)
        }
    })?;
    let id_prefix = match endpoint {
        Endpoint::Chat => "chatcmpl",
        Endpoint::Completion => "cmpl",
    };
    let reply = Reply {
        endpoint,
        id: format!("{id_prefix}-{:016x}", rand::rng().random::<u64>()),
        created: now(),
        model: model.name.clone(),
        prompt_tokens,
        logprobs: request.logprobs.is_some(),
        tokenizer: Arc::clone(&model.info.prompter.tokenizer),
    };
    if request.stream {
        let events = stream_events(reply, receiver, request.choices, request.include_usage);
        Ok(Sse::new(events.map(|data| Ok::<_, Infallible>(SseEvent::default().data(data)))).into_response())
    } else {
        whole_response(reply, receiver, request.choices).await
    }
}

/// The new tokens a request gets: what it asks for, or the server's default, within the
/// context left after the prompt.
fn max_tokens(context: i64, limits: &Limits, prompt: i64, asked: Option<i64>) -> Result<i64, ApiError> {
    // Saturating: a request for i64::MAX tokens is too long, not an overflow.
    let too_long = |requested: i64| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "this model's context is {context} tokens, and the request needs {requested} ({prompt} in the \
                 prompt, {} for the completion); shorten the prompt or lower max_tokens",
                requested.saturating_sub(prompt)
            ),
            "invalid_request_error",
            Some(if asked.is_some() { "max_tokens" } else { "messages" }),
            Some("context_length_exceeded"),
        )
    };
    match asked {
        Some(n) if prompt.saturating_add(n) > context => Err(too_long(prompt.saturating_add(n))),
        Some(n) => Ok(n),
        None if prompt >= context => Err(too_long(prompt + 1)),
        None => Ok(limits.defaults.max_tokens.min(context - prompt)),
    }
}

/// Waits for every choice's end and answers with the whole texts.
async fn whole_response(
    reply: Reply,
    mut receiver: UnboundedReceiver<Event>,
    choices: usize,
) -> Result<Response, ApiError> {
    let mut results: Vec<ChoiceResult> = (0..choices).map(|_| ChoiceResult::default()).collect();
    let mut open = choices;
    while let Some(event) = receiver.recv().await {
        match event {
            Event::Text { choice, text, logprobs } => {
                results[choice].text.push_str(&text);
                results[choice].logprobs.extend(logprobs);
            }
            Event::Done { choice, reason, completion_tokens } => {
                (results[choice].reason, results[choice].completion_tokens) = (Some(reason), completion_tokens);
                open -= 1;
                if open == 0 {
                    return Ok(Json(reply.complete(&results)).into_response());
                }
            }
            Event::Failed(message) => return Err(decoding_failed(message)),
        }
    }
    Err(decoding_failed("the model's worker stopped".into()))
}

fn decoding_failed(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("decoding failed: {message}"), "server_error", None, None)
}

/// What a stream has sent of each choice: characters (a completion's `text_offset`s
/// continue from them), whether it has ended, and the tokens of those that have.
struct StreamState {
    receiver: UnboundedReceiver<Event>,
    reply: Reply,
    offsets: Vec<usize>,
    open: usize,
    completion_tokens: usize,
}

/// The stream's events' data: (for chat) each choice's role, a chunk per piece of text of
/// any choice, each choice's finish reason, the usage when asked for, then `[DONE]`. When
/// the client goes, axum drops this stream and with it the receiver, which tells the worker
/// to stop.
fn stream_events(
    reply: Reply,
    receiver: UnboundedReceiver<Event>,
    choices: usize,
    include_usage: bool,
) -> impl Stream<Item = String> + Send {
    let head: Vec<String> = match reply.endpoint {
        Endpoint::Chat => (0..choices).map(|index| reply.role_chunk(index).to_string()).collect(),
        Endpoint::Completion => Vec::new(),
    };
    let state = StreamState { receiver, reply, offsets: vec![0; choices], open: choices, completion_tokens: 0 };
    let body = stream::unfold(Some(state), move |state| async move {
        let mut state = state?;
        let data = match state.receiver.recv().await {
            Some(Event::Text { choice, text, logprobs }) => {
                let chunk = state.reply.chunk(choice, &text, &logprobs, &mut state.offsets[choice], None);
                return Some((vec![chunk.to_string()], Some(state)));
            }
            Some(Event::Done { choice, reason, completion_tokens }) => {
                let chunk = state.reply.chunk(choice, "", &[], &mut 0, Some(reason)).to_string();
                state.completion_tokens += completion_tokens;
                state.open -= 1;
                if state.open > 0 {
                    return Some((vec![chunk], Some(state)));
                }
                let mut data = vec![chunk];
                if include_usage {
                    data.push(state.reply.usage_chunk(state.completion_tokens).to_string());
                }
                data
            }
            Some(Event::Failed(message)) => vec![decoding_failed(message).body().to_string()],
            None => vec![decoding_failed("the model's worker stopped".into()).body().to_string()],
        };
        Some(([data, vec!["[DONE]".to_string()]].concat(), None))
    });
    stream::iter(head).chain(body.flat_map(stream::iter))
}

/// Seconds since 1970, for the `created` fields.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |t| t.as_secs())
}
