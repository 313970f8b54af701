//! `serve`: a fine-tuned model behind OpenAI's HTTP API (`/v1/chat/completions`,
//! `/v1/completions`, `/v1/models`) with a chat page at `/`, on axum and tokio.
//!
//! | module | holds |
//! |---|---|
//! | [`api`] | the wire format: requests and their checks, the chat template, responses, errors |
//! | [`prompt`] | a request's prompt as ids: the model's template and tokenizer |
//! | [`guard`] | who may call: loopback `Host`, same-origin pages, an optional API key |
//! | [`models`] | the models offered: models of their own and LoRA adapters over them |
//! | [`routes`] | the axum handlers, streaming as server-sent events |
//! | [`tokenize`] | `/tokenize`, `/detokenize`, `/apply-template`: what the model reads |
//! | [`worker`] | the thread that owns the model and decodes queued requests in batches |
//! | [`text`] | the streamed text: the response marker, trimming, stop sequences |
//! | [`load_test`] | concurrent clients against a server, with latency percentiles |
//! | [`soak`] | valid and hostile requests mixed, and what the server must show afterwards |

pub mod api;
pub mod guard;
pub mod load_test;
pub mod models;
pub mod prompt;
pub mod routes;
pub mod soak;
pub mod text;
pub mod tokenize;
pub mod worker;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{oneshot, Semaphore};

use crate::finetune::InstructionModel;
use api::Defaults;
use guard::Access;
use models::{ModelEntry, ServedModels, WorkerSettings};
use routes::AppState;
use worker::ModelInfo;

/// How `serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    /// The model's name in the API, when [`start`] serves one model.
    pub model_id: String,
    /// Requests decoded together at most.
    pub max_batch: usize,
    /// Requests waiting at most; more get 429.
    pub max_queue: usize,
    /// Finished requests whose caches are kept for a next turn ([`worker::PromptCache`]).
    pub prompt_cache: usize,
    /// Largest request body; larger ones get 413.
    pub max_body_bytes: usize,
    pub defaults: Defaults,
    pub access: Access,
    pub connections: ConnectionLimits,
}

/// How many connections the server holds at once and how long it waits for a client
/// (hyper's header-read timeout, a semaphore on accepted connections, a deadline on bodies).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; further ones wait in the listen queue until one closes.
    pub max_connections: usize,
    /// The time a client has to send a request's headers, which is also how long an idle
    /// keep-alive connection is kept.
    pub header_timeout: Duration,
    /// The time a client has to send a request's body.
    pub body_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { max_connections: 256, header_timeout: Duration::from_secs(10), body_timeout: Duration::from_secs(30) }
    }
}

impl ServeOptions {
    /// The defaults of `serve`'s flags, on `127.0.0.1:port`.
    pub fn local(port: u16) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port,
            model_id: "llms-from-scratch".into(),
            max_batch: 8,
            max_queue: 64,
            prompt_cache: 4,
            max_body_bytes: 1 << 20,
            defaults: Defaults {
                max_tokens: crate::respond::MAX_NEW_TOKENS,
                temperature: 0.0,
                top_k: None,
                top_p: None,
            },
            access: Access::default(),
            connections: ConnectionLimits::default(),
        }
    }
}

/// A server running on its own threads until [`RunningServer::stop`] (or dropped).
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The models it offers, by name, the default first.
    pub models: Vec<(String, ModelInfo)>,
    stop: Option<oneshot::Sender<()>>,
    http: Option<JoinHandle<Result<()>>>,
    workers: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops taking requests, lets the open ones finish, and waits for both threads.
    pub fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join()
    }

    /// Serves until Ctrl-C, then stops as [`RunningServer::stop`] does.
    pub fn run_until_ctrl_c(self) -> Result<()> {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(tokio::signal::ctrl_c())?;
        eprintln!("Stopping: finishing the open requests");
        self.stop()
    }

    fn join(&mut self) -> Result<()> {
        let http = self.http.take().map(|thread| thread.join().map_err(|_| anyhow!("the HTTP thread panicked")));
        for worker in self.workers.drain(..) {
            worker.join().map_err(|_| anyhow!("a model's thread panicked"))?;
        }
        http.unwrap_or(Ok(Ok(())))?
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            let _ = self.join();
        }
    }
}

/// Serves one model, named `options.model_id`, loaded with `load` on its worker's thread
/// ([`start_models`]).
pub fn start(
    load: impl FnOnce() -> Result<InstructionModel> + Send + 'static,
    options: ServeOptions,
) -> Result<RunningServer> {
    start_models(vec![ModelEntry::model(options.model_id.clone(), load)], options)
}

/// Loads the models of `entries` (each model of its own on its worker's thread, with the
/// adapters over it), binds `host:port`, and serves until stopped. Returns once the models
/// are loaded and the port is listening.
pub fn start_models(entries: Vec<ModelEntry>, options: ServeOptions) -> Result<RunningServer> {
    let limits = options.connections;
    ensure!(limits.max_connections > 0, "the server must take at least one connection");
    ensure!(
        !limits.header_timeout.is_zero() && !limits.body_timeout.is_zero(),
        "the header and body timeouts must be above 0"
    );
    let listener = TcpListener::bind((options.host.as_str(), options.port))
        .with_context(|| format!("listening on {}:{}", options.host, options.port))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let settings = WorkerSettings {
        max_batch: options.max_batch,
        max_queue: options.max_queue,
        prompt_cache: options.prompt_cache,
    };
    let (models, workers) = ServedModels::start(entries, settings)?;
    let served = models.models.iter().map(|model| (model.name.clone(), model.info.clone())).collect();
    let state = Arc::new(AppState {
        models,
        // A request's choices share a batch and are queued together.
        limits: api::Limits { defaults: options.defaults, max_choices: options.max_batch.min(options.max_queue) },
        started: routes::now(),
        body_timeout: limits.body_timeout,
        max_body_bytes: options.max_body_bytes,
    });
    let access = options.access.clone().for_bind_address(&options.host);
    let app = routes::router(state, options.max_body_bytes, access);
    let (stop, stopped) = oneshot::channel::<()>();
    let http = std::thread::Builder::new().name("http".into()).spawn(move || -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            serve_connections(listener, app, limits, stopped).await
        })
    })?;
    Ok(RunningServer { addr, models: served, stop: Some(stop), http: Some(http), workers })
}

/// Accepts connections until `stopped`, at most `limits.max_connections` at a time, each
/// served by hyper's HTTP/1 with the header-read timeout; then lets the open ones finish.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stopped: oneshot::Receiver<()>,
) -> Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut stopped = std::pin::pin!(stopped);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot?,
            _ = &mut stopped => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors, say: wait a moment and try again, as axum does.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    graceful.shutdown().await;
    Ok(())
}
