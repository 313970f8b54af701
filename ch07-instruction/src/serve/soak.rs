//! A bounded soak test: concurrent clients send a server on this machine a mix of valid
//! requests (chat, streamed chat, completions, headers sent slowly, streams read slowly)
//! and hostile ones (overflowing `max_tokens`, broken JSON, a huge stop string, a prompt of
//! 100,000 spaces, a foreign `Host` or `Origin`, streams cut after the first event, headers
//! never finished), then checks what a server that survives them must show: every valid
//! request got its whole answer, every hostile one its 4xx, `/health` still answers at
//! once, and the memory is back near its level after the warm-up. It stops by itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use super::load_test::resident_mb;

/// The load.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Requests of every kind together.
    pub requests: usize,
    pub concurrency: usize,
    /// `max_tokens` of the valid requests.
    pub max_tokens: i64,
}

/// What [`run`] saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakReport {
    pub requests: usize,
    pub concurrency: usize,
    /// Valid requests sent, and those answered in full (status 200, the whole text or
    /// stream up to `[DONE]`).
    pub valid: usize,
    pub valid_answered: usize,
    /// Hostile requests sent, and those refused with the expected status.
    pub hostile: usize,
    pub hostile_refused: usize,
    /// Streams the clients cut after their first event, and slow or unfinished requests.
    pub cut_streams: usize,
    pub slow_clients: usize,
    /// What went wrong, one line each (at most 20 kept).
    pub failures: Vec<String>,
    pub seconds: f64,
    /// How long `/health` took to answer after the load.
    pub health_ms_after: f64,
    /// Resident memory of this process (the server's, when it runs in this process) after
    /// the warm-up and after the load, in MB.
    pub rss_mb_after_warmup: f64,
    pub rss_mb_end: f64,
}

impl SoakReport {
    /// Whether the server held up: every valid request answered, every hostile one refused,
    /// `/health` within a second, memory within 20 % of its level after the warm-up.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
            && self.valid_answered == self.valid
            && self.hostile_refused == self.hostile
            && self.health_ms_after < 1000.0
            && self.rss_mb_end <= 1.2 * self.rss_mb_after_warmup
    }
}

/// One kind of request in the mix, chosen in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    SampledStream,
    Completion,
    SpecialTokenText,
    HugeMaxTokens,
    BrokenJson,
    HugeStop,
    LongWhitespace,
    ForeignHost,
    CrossSite,
    CutStream,
    SlowHeaders,
    SlowReader,
    UnfinishedHeaders,
}

const MIX: [Kind; 14] = [
    Kind::Chat,
    Kind::HugeMaxTokens,
    Kind::SampledStream,
    Kind::BrokenJson,
    Kind::CutStream,
    Kind::Completion,
    Kind::ForeignHost,
    Kind::SlowHeaders,
    Kind::HugeStop,
    Kind::SlowReader,
    Kind::SpecialTokenText,
    Kind::CrossSite,
    Kind::UnfinishedHeaders,
    Kind::LongWhitespace,
];

/// What one request came to.
enum Outcome {
    Answered,
    Refused,
    Cut,
    Slow,
    Failed(String),
}

/// Runs the soak against `addr` (a loopback address: the test refuses others).
pub fn run(addr: SocketAddr, options: &SoakOptions) -> Result<SoakReport> {
    ensure!(addr.ip().is_loopback(), "the soak test only runs against this machine, not {addr}");
    ensure!(options.requests > 0 && options.concurrency > 0, "the soak needs at least one request and one client");
    ensure!(options.max_tokens > 0, "max_tokens must be at least 1");
    // The warm-up: every kind once per client, so that the buffers, caches, allocator
    // arenas and thread stacks of a concurrent load exist before memory is measured.
    let warmup = run_phase(addr, options, MIX.len() * options.concurrency)?;
    ensure!(warmup.failures.is_empty(), "the warm-up failed: {:?}", warmup.failures);
    let rss_mb_after_warmup = resident_mb().context("reading this process's memory")?;
    let start = Instant::now();
    let mut report = run_phase(addr, options, options.requests)?;
    report.seconds = start.elapsed().as_secs_f64();
    let health = Instant::now();
    let (status, _) = send(addr, &request("GET", "/health", &[], ""))?;
    ensure!(status == 200, "/health answered {status} after the soak");
    report.health_ms_after = health.elapsed().as_secs_f64() * 1e3;
    report.rss_mb_after_warmup = rss_mb_after_warmup;
    report.rss_mb_end = resident_mb().context("reading this process's memory")?;
    report.requests = options.requests;
    report.concurrency = options.concurrency;
    Ok(report)
}

fn run_phase(addr: SocketAddr, options: &SoakOptions, requests: usize) -> Result<SoakReport> {
    let next = AtomicUsize::new(0);
    let report = Mutex::new(SoakReport::default());
    std::thread::scope(|scope| {
        for _ in 0..options.concurrency {
            scope.spawn(|| {
                while let Some(i) = Some(next.fetch_add(1, Ordering::Relaxed)).filter(|&i| i < requests) {
                    let kind = MIX[i % MIX.len()];
                    let outcome = one(addr, kind, i, options.max_tokens)
                        .unwrap_or_else(|err| Outcome::Failed(format!("{err:#}")));
                    let mut report = report.lock().expect("no client panics holding the lock");
                    let valid = matches!(
                        kind,
                        Kind::Chat
                            | Kind::SampledStream
                            | Kind::Completion
                            | Kind::SpecialTokenText
                            | Kind::SlowHeaders
                            | Kind::SlowReader
                    );
                    let hostile = !valid && !matches!(kind, Kind::CutStream | Kind::UnfinishedHeaders);
                    report.valid += usize::from(valid);
                    report.hostile += usize::from(hostile);
                    match outcome {
                        Outcome::Answered if valid => report.valid_answered += 1,
                        Outcome::Refused if hostile => report.hostile_refused += 1,
                        Outcome::Cut => report.cut_streams += 1,
                        Outcome::Slow => report.slow_clients += 1,
                        Outcome::Answered | Outcome::Refused => {
                            report.failures.push(format!("request {i} ({kind:?}) got the wrong kind of answer"))
                        }
                        Outcome::Failed(message) => report.failures.push(format!("request {i} ({kind:?}): {message}")),
                    }
                    if matches!(kind, Kind::SlowHeaders | Kind::SlowReader) {
                        report.slow_clients += 1;
                    }
                    report.failures.truncate(20);
                }
            });
        }
    });
    Ok(report.into_inner().expect("every client has finished"))
}

/// Sends request `i` of `kind` and judges the answer.
fn one(addr: SocketAddr, kind: Kind, i: usize, max_tokens: i64) -> Result<Outcome> {
    let chat = |content: &str, extra: Value| {
        let mut body = json!({ "messages": [{ "role": "user", "content": content }], "max_tokens": max_tokens });
        body.as_object_mut().expect("an object").extend(extra.as_object().cloned().unwrap_or_default());
        body.to_string()
    };
    let post = |path: &str, body: &str, headers: &[&str]| request("POST", path, headers, body);
    let expect = |(status, body): (u16, String), wanted: u16| -> Result<Outcome> {
        ensure!(
            status == wanted,
            "answered {status} instead of {wanted}: {}",
            body.chars().take(200).collect::<String>()
        );
        Ok(if wanted == 200 { Outcome::Answered } else { Outcome::Refused })
    };
    match kind {
        Kind::Chat => {
            let (status, body) = send(addr, &post("/v1/chat/completions", &chat("Name a planet.", json!({})), &[]))?;
            let reply: Value = serde_json::from_str(&body).with_context(|| format!("{status}: {body}"))?;
            ensure!(reply["choices"][0]["message"]["content"].is_string(), "no content: {reply}");
            expect((status, body), 200)
        }
        Kind::SampledStream => {
            let body = chat("What is the capital of France?", json!({ "stream": true, "temperature": 0.8, "seed": i }));
            let events = stream_events(addr, &post("/v1/chat/completions", &body, &[]), None, Duration::ZERO)?;
            ensure!(events.last().map(String::as_str) == Some("[DONE]"), "the stream ended early: {events:?}");
            Ok(Outcome::Answered)
        }
        Kind::Completion => {
            let body = json!({ "prompt": "The capital of France is", "max_tokens": max_tokens }).to_string();
            expect(send(addr, &post("/v1/completions", &body, &[]))?, 200)
        }
        Kind::SpecialTokenText => {
            let body = chat("Repeat <|endoftext|> twice.", json!({ "stop": ["\n\n"] }));
            expect(send(addr, &post("/v1/chat/completions", &body, &[]))?, 200)
        }
        Kind::SlowHeaders => {
            // A valid request whose headers come in three pieces, 100 ms apart.
            let text = post("/v1/chat/completions", &chat("Name a color.", json!({})), &[]);
            let mut stream = connect(addr)?;
            let third = text.len() / 3;
            for piece in [&text[..third], &text[third..2 * third], &text[2 * third..]] {
                stream.write_all(piece.as_bytes())?;
                std::thread::sleep(Duration::from_millis(100));
            }
            expect(read_answer(stream)?, 200)
        }
        Kind::SlowReader => {
            // A streamed reply read a few bytes at a time, 10 ms apart.
            let body = chat("Name a planet.", json!({ "stream": true }));
            let events =
                stream_events(addr, &post("/v1/chat/completions", &body, &[]), None, Duration::from_millis(10))?;
            ensure!(events.last().map(String::as_str) == Some("[DONE]"), "the stream ended early: {events:?}");
            Ok(Outcome::Answered)
        }
        Kind::HugeMaxTokens => {
            expect(send(addr, &post("/v1/chat/completions", &chat("Hi", json!({ "max_tokens": i64::MAX })), &[]))?, 400)
        }
        Kind::BrokenJson => expect(send(addr, &post("/v1/chat/completions", "{\"messages\": [", &[]))?, 400),
        Kind::HugeStop => {
            let body = chat("Hi", json!({ "stop": ["z".repeat(100_000)] }));
            expect(send(addr, &post("/v1/chat/completions", &body, &[]))?, 400)
        }
        Kind::LongWhitespace => {
            let body = json!({ "prompt": " ".repeat(100_000) + "x", "max_tokens": 1 }).to_string();
            expect(send(addr, &post("/v1/completions", &body, &[]))?, 400)
        }
        Kind::ForeignHost => {
            let text = post("/v1/chat/completions", &chat("Hi", json!({})), &["Host: evil.example"]);
            expect(send(addr, &text)?, 403)
        }
        Kind::CrossSite => {
            let text = post(
                "/v1/completions",
                "{\"prompt\": \"Hi\"}",
                &["Origin: https://evil.example", "Content-Type: text/plain"],
            );
            expect(send(addr, &text)?, 403)
        }
        Kind::CutStream => {
            let body = chat("Write a long story.", json!({ "stream": true, "max_tokens": 200 }));
            stream_events(addr, &post("/v1/chat/completions", &body, &[]), Some(1), Duration::ZERO)?;
            Ok(Outcome::Cut)
        }
        Kind::UnfinishedHeaders => {
            let mut stream = connect(addr)?;
            stream.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Le")?;
            std::thread::sleep(Duration::from_millis(50));
            Ok(Outcome::Slow)
        }
    }
}

/// A request as raw HTTP/1.1 with `headers`, on `Host: localhost` unless they name another
/// host, closing the connection after the answer.
pub fn request(method: &str, path: &str, headers: &[&str], body: &str) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|header| header.to_ascii_lowercase().starts_with("host:")) {
        text += "Host: localhost\r\n";
    }
    for header in headers {
        text += &format!("{header}\r\n");
    }
    text + &format!("Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    Ok(stream)
}

/// Sends `text` (a [`request`]) and reads the answer to the end: its status and body.
pub fn send(addr: SocketAddr, text: &str) -> Result<(u16, String)> {
    let mut stream = connect(addr)?;
    stream.write_all(text.as_bytes())?;
    read_answer(stream)
}

/// The status and body of an answer read to the end (`Connection: close`).
fn read_answer(mut stream: TcpStream) -> Result<(u16, String)> {
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split(' ').nth(1).and_then(|code| code.parse().ok()).context("no HTTP status line")?;
    Ok((status, answer.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_string()))
}

/// The data of a stream's events, all of them or the first `keep` (then the connection is
/// dropped mid-stream), read in small pieces `pace` apart.
fn stream_events(addr: SocketAddr, text: &str, keep: Option<usize>, pace: Duration) -> Result<Vec<String>> {
    let mut stream = connect(addr)?;
    stream.write_all(text.as_bytes())?;
    let capacity = if pace.is_zero() { 8 << 10 } else { 64 };
    let mut lines = BufReader::with_capacity(capacity, stream).lines();
    let status = lines.next().context("no answer")??;
    ensure!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut events = Vec::new();
    for line in lines {
        // Chunked transfer: the data lines are whole within their chunks.
        std::thread::sleep(pace);
        if let Some(data) = line?.strip_prefix("data: ") {
            events.push(data.to_string());
            if keep.is_some_and(|keep| events.len() >= keep) {
                break;
            }
        }
    }
    Ok(events)
}

impl std::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "| requests | clients | valid answered | hostile refused | cut streams | slow clients | seconds | /health after | memory after warm-up / end |")?;
        writeln!(f, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        write!(
            f,
            "| {} | {} | {} / {} | {} / {} | {} | {} | {:.1} | {:.0} ms | {:.0} / {:.0} MB |",
            self.requests,
            self.concurrency,
            self.valid_answered,
            self.valid,
            self.hostile_refused,
            self.hostile,
            self.cut_streams,
            self.slow_clients,
            self.seconds,
            self.health_ms_after,
            self.rss_mb_after_warmup,
            self.rss_mb_end
        )?;
        for failure in &self.failures {
            write!(f, "\n{failure}")?;
        }
        Ok(())
    }
}
