//! A bounded load test: `concurrency` clients send chat requests to a server on this
//! machine until `requests` have been answered, after a warm-up of one request each. It
//! reports throughput, latency percentiles, errors, and the process's resident memory
//! after the warm-up and at the end (the `load-test` command serves the model in the same
//! process, so that is the server's memory).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use super::worker::StatsSnapshot;

/// The load.
#[derive(Debug, Clone)]
pub struct LoadTestOptions {
    pub requests: usize,
    pub concurrency: usize,
    pub max_tokens: i64,
}

/// What [`run`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub requests: usize,
    pub concurrency: usize,
    pub max_tokens: i64,
    /// Requests answered with a complete response.
    pub ok: usize,
    /// Failed requests by HTTP status (0: no answer).
    pub errors: BTreeMap<u16, usize>,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub completion_tokens: u64,
    pub tokens_per_second: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    /// Requests per decoded batch, on average (the server's counters).
    pub mean_batch: f64,
    /// Resident memory of this process after the warm-up and at the end, in MB.
    pub rss_mb_after_warmup: Option<f64>,
    pub rss_mb_end: Option<f64>,
}

/// The instructions the clients send, in turn: prompts of different lengths, half of them
/// decoded greedily and half sampled with a seed.
const INSTRUCTIONS: [&str; 4] = [
    "Name a planet.",
    "Rewrite the sentence in the passive voice: The chef cooked the meal.",
    "What is the capital of France?",
    "Convert 45 kilometers to meters and explain the steps you take to do it.",
];

/// Runs the load against `url` (`http://127.0.0.1:PORT`, or another loopback address).
pub fn run(url: &str, options: &LoadTestOptions) -> Result<LoadReport> {
    ensure!(options.requests > 0 && options.concurrency > 0, "the load needs at least one request and one client");
    let host = url.strip_prefix("http://").and_then(|rest| rest.rsplit_once(':')).map(|(host, _)| host);
    ensure!(
        matches!(host, Some("127.0.0.1" | "localhost" | "[::1]")),
        "the load test only runs against this machine (http://127.0.0.1:PORT), not {url}"
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into();
    let stats_before = server_stats(&agent, url)?;
    let warmup = run_phase(&agent, url, options, options.concurrency)?;
    ensure!(warmup.errors.is_empty(), "the warm-up requests failed: {:?}", warmup.errors);
    let rss_mb_after_warmup = resident_mb();
    let start = Instant::now();
    let phase = run_phase(&agent, url, options, options.requests)?;
    let seconds = start.elapsed().as_secs_f64();
    let stats = server_stats(&agent, url)?;
    let mut latencies = phase.latencies.clone();
    latencies.sort_by(f64::total_cmp);
    let percentile = |q: f64| {
        latencies.get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN)
    };
    let batches = (stats.batches - stats_before.batches) as f64;
    Ok(LoadReport {
        requests: options.requests,
        concurrency: options.concurrency,
        max_tokens: options.max_tokens,
        ok: phase.ok,
        errors: phase.errors,
        seconds,
        requests_per_second: phase.ok as f64 / seconds,
        completion_tokens: phase.tokens,
        tokens_per_second: phase.tokens as f64 / seconds,
        latency_ms_p50: percentile(0.5),
        latency_ms_p99: percentile(0.99),
        latency_ms_max: latencies.last().copied().unwrap_or(f64::NAN),
        mean_batch: (stats.batched_requests - stats_before.batched_requests) as f64 / batches.max(1.0),
        rss_mb_after_warmup,
        rss_mb_end: resident_mb(),
    })
}

#[derive(Debug, Default)]
struct Phase {
    ok: usize,
    errors: BTreeMap<u16, usize>,
    tokens: u64,
    latencies: Vec<f64>,
}

/// Sends `requests` requests from `options.concurrency` threads.
fn run_phase(agent: &ureq::Agent, url: &str, options: &LoadTestOptions, requests: usize) -> Result<Phase> {
    let next = AtomicUsize::new(0);
    let phase = Mutex::new(Phase::default());
    std::thread::scope(|scope| {
        for _ in 0..options.concurrency {
            scope.spawn(|| {
                while let Some(i) = Some(next.fetch_add(1, Ordering::Relaxed)).filter(|&i| i < requests) {
                    let start = Instant::now();
                    let outcome = chat(agent, url, i, options.max_tokens);
                    let ms = start.elapsed().as_secs_f64() * 1e3;
                    let mut phase = phase.lock().expect("no client panics holding the lock");
                    match outcome {
                        Ok(tokens) => {
                            phase.ok += 1;
                            phase.tokens += tokens;
                            phase.latencies.push(ms);
                        }
                        Err(status) => *phase.errors.entry(status).or_default() += 1,
                    }
                }
            });
        }
    });
    Ok(phase.into_inner().expect("every client has finished"))
}

/// One chat request; the completion tokens, or the HTTP status of a failure (0: none).
fn chat(agent: &ureq::Agent, url: &str, i: usize, max_tokens: i64) -> Result<u64, u16> {
    let mut body = json!({
        "model": "load-test",
        "messages": [{"role": "user", "content": INSTRUCTIONS[i % INSTRUCTIONS.len()]}],
        "max_tokens": max_tokens,
    });
    if i % 2 == 1 {
        body["temperature"] = json!(0.8);
        body["seed"] = json!(i);
    }
    let mut response = agent
        .post(format!("{url}/v1/chat/completions"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .map_err(|_| 0u16)?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().map_err(|_| status)?;
    let reply: Value = serde_json::from_str(&text).map_err(|_| status)?;
    let complete = status == 200 && reply["choices"][0]["message"]["content"].is_string();
    complete.then(|| reply["usage"]["completion_tokens"].as_u64().unwrap_or(0)).ok_or(status)
}

fn server_stats(agent: &ureq::Agent, url: &str) -> Result<StatsSnapshot> {
    let mut response =
        agent.get(format!("{url}/health")).call().with_context(|| format!("no server answers at {url}"))?;
    let health: Value = serde_json::from_str(&response.body_mut().read_to_string()?)?;
    serde_json::from_value(health["stats"].clone()).context("reading the server's counters")
}

/// This process's resident memory in MB (Linux).
pub fn resident_mb() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / 1e6)
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0} MB"));
        writeln!(f, "| requests | clients | max_tokens | ok | errors | requests/s | tokens/s | p50 | p99 | max | mean batch | memory after warm-up / end |")?;
        writeln!(f, "|---|---|---|---|---|---|---|---|---|---|---|---|")?;
        write!(
            f,
            "| {} | {} | {} | {} | {} | {:.2} | {:.1} | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} | {} / {} |",
            self.requests,
            self.concurrency,
            self.max_tokens,
            self.ok,
            self.errors.values().sum::<usize>(),
            self.requests_per_second,
            self.tokens_per_second,
            self.latency_ms_p50,
            self.latency_ms_p99,
            self.latency_ms_max,
            self.mean_batch,
            mb(self.rss_mb_after_warmup),
            mb(self.rss_mb_end),
        )
    }
}
