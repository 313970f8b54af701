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

use super::worker::{hit_rate, StatsSnapshot};

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
    let agent = local_agent(url)?;
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
    let percentile = |q: f64| percentile(&latencies, q);
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

/// A client for a server at `url` on this machine (the load tests refuse any other).
fn local_agent(url: &str) -> Result<ureq::Agent> {
    let host = url.strip_prefix("http://").and_then(|rest| rest.rsplit_once(':')).map(|(host, _)| host);
    ensure!(
        matches!(host, Some("127.0.0.1" | "localhost" | "[::1]")),
        "the load test only runs against this machine (http://127.0.0.1:PORT), not {url}"
    );
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into())
}

#[derive(Debug, Default)]
struct Phase {
    ok: usize,
    errors: BTreeMap<u16, usize>,
    tokens: u64,
    latencies: Vec<f64>,
}

/// The value below which a share `q` of `sorted` lies (NaN for none).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted.get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN)
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
    // No `model`: the server's default one.
    let mut body = json!({
        "messages": [{"role": "user", "content": INSTRUCTIONS[i % INSTRUCTIONS.len()]}],
        "max_tokens": max_tokens,
    });
    if i % 2 == 1 {
        body["temperature"] = json!(0.8);
        body["seed"] = json!(i);
    }
    let mut response = post_chat(agent, url, &body)?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().map_err(|_| status)?;
    let reply: Value = serde_json::from_str(&text).map_err(|_| status)?;
    let complete = status == 200 && reply["choices"][0]["message"]["content"].is_string();
    complete.then(|| reply["usage"]["completion_tokens"].as_u64().unwrap_or(0)).ok_or(status)
}

/// The multi-turn load: `conversations` chats of `turns` turns each, `concurrency` at a
/// time; every turn is a streamed greedy request carrying the whole conversation so far (the
/// chat page's "Send earlier turns"), so each prompt extends the previous turn's prompt and
/// reply, which prompt caching reuses.
#[derive(Debug, Clone)]
pub struct ConversationOptions {
    pub conversations: usize,
    pub concurrency: usize,
    pub turns: usize,
    pub max_tokens: i64,
}

/// What [`run_conversations`] measured against one server.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationReport {
    /// Finished requests whose caches the server keeps (0: prompt caching off).
    pub prompt_cache: usize,
    pub conversations: usize,
    pub turns: usize,
    pub concurrency: usize,
    /// Turns answered completely, and failed ones by HTTP status (0: no answer).
    pub ok: usize,
    pub errors: BTreeMap<u16, usize>,
    pub seconds: f64,
    pub completion_tokens: u64,
    pub tokens_per_second: f64,
    /// Time to the first piece of text of the first turns, and of the later ones (which
    /// extend a cached prompt), median.
    pub first_turn_ttft_ms_p50: f64,
    pub later_turns_ttft_ms_p50: f64,
    /// The server's prompt cache during the load: hits / (hits + misses), and prompt tokens
    /// reused.
    pub hit_rate: f64,
    pub prompt_tokens_reused: u64,
}

/// Runs the multi-turn load against `url`, whose server keeps `prompt_cache` caches.
pub fn run_conversations(url: &str, options: &ConversationOptions, prompt_cache: usize) -> Result<ConversationReport> {
    ensure!(options.conversations > 0 && options.concurrency > 0 && options.turns > 0, "the load needs a turn");
    let agent = local_agent(url)?;
    // One request per client first, so that neither server is timed while it warms up.
    for _ in 0..options.concurrency {
        let warmup = [json!({ "role": "user", "content": INSTRUCTIONS[0] })];
        streamed_chat(&agent, url, &warmup, options.max_tokens)
            .map_err(|status| anyhow::anyhow!("the warm-up request failed with status {status}"))?;
    }
    let before = server_stats(&agent, url)?;
    let next = AtomicUsize::new(0);
    // Every turn's outcome, with the later turns' times to the first token as `latencies`;
    // the first turns' times apart.
    let results = Mutex::new((Phase::default(), Vec::new()));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..options.concurrency {
            scope.spawn(|| {
                while let Some(i) = Some(next.fetch_add(1, Ordering::Relaxed)).filter(|&i| i < options.conversations) {
                    let mut messages = Vec::new();
                    for turn in 0..options.turns {
                        let instruction = INSTRUCTIONS[(i + turn) % INSTRUCTIONS.len()];
                        messages.push(json!({ "role": "user", "content": instruction }));
                        let outcome = streamed_chat(&agent, url, &messages, options.max_tokens);
                        let mut guard = results.lock().expect("no client panics holding the lock");
                        let (results, first_turns) = &mut *guard;
                        match outcome {
                            Ok((text, ttft_ms, tokens)) => {
                                if turn == 0 {
                                    first_turns.push(ttft_ms);
                                } else {
                                    results.latencies.push(ttft_ms);
                                }
                                results.tokens += tokens;
                                results.ok += 1;
                                messages.push(json!({ "role": "assistant", "content": text }));
                            }
                            Err(status) => {
                                *results.errors.entry(status).or_default() += 1;
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    let after = server_stats(&agent, url)?;
    let (Phase { ok, errors, tokens, latencies: mut later }, mut first) =
        results.into_inner().expect("every client has finished");
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        percentile(values, 0.5)
    };
    Ok(ConversationReport {
        prompt_cache,
        conversations: options.conversations,
        turns: options.turns,
        concurrency: options.concurrency,
        ok,
        errors,
        seconds,
        completion_tokens: tokens,
        tokens_per_second: tokens as f64 / seconds,
        first_turn_ttft_ms_p50: median(&mut first),
        later_turns_ttft_ms_p50: median(&mut later),
        hit_rate: hit_rate(
            after.prompt_cache_hits - before.prompt_cache_hits,
            after.prompt_cache_misses - before.prompt_cache_misses,
        ),
        prompt_tokens_reused: after.prompt_tokens_reused - before.prompt_tokens_reused,
    })
}

/// One streamed greedy chat request: the reply, the milliseconds to its first piece of text
/// (to the end when it has none) and its completion tokens; or the HTTP status of a failure.
fn streamed_chat(
    agent: &ureq::Agent,
    url: &str,
    messages: &[Value],
    max_tokens: i64,
) -> Result<(String, f64, u64), u16> {
    use std::io::BufRead;
    let body = json!({ "messages": messages, "max_tokens": max_tokens, "temperature": 0,
                       "stream": true, "stream_options": { "include_usage": true } });
    let start = Instant::now();
    let mut response = post_chat(agent, url, &body)?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(status);
    }
    let (mut text, mut first, mut tokens, mut done) = (String::new(), None, 0, false);
    for line in std::io::BufReader::new(response.body_mut().as_reader()).lines() {
        let line = line.map_err(|_| status)?;
        let Some(data) = line.strip_prefix("data: ") else { continue };
        if data == "[DONE]" {
            done = true;
            break;
        }
        let chunk: Value = serde_json::from_str(data).map_err(|_| status)?;
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str().filter(|p| !p.is_empty()) {
            first.get_or_insert_with(|| start.elapsed().as_secs_f64() * 1e3);
            text.push_str(piece);
        }
        tokens = chunk["usage"]["completion_tokens"].as_u64().unwrap_or(tokens);
    }
    let ttft = first.unwrap_or_else(|| start.elapsed().as_secs_f64() * 1e3);
    done.then_some((text, ttft, tokens)).ok_or(status)
}

impl std::fmt::Display for ConversationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cache = if self.prompt_cache == 0 { "off".to_string() } else { format!("{} entries", self.prompt_cache) };
        write!(
            f,
            "| {cache} | {} x {} | {} | {} | {} | {:.1} | {:.0} ms | {:.0} ms | {:.0} % | {} |",
            self.conversations,
            self.turns,
            self.concurrency,
            self.ok,
            self.errors.values().sum::<usize>(),
            self.tokens_per_second,
            self.first_turn_ttft_ms_p50,
            self.later_turns_ttft_ms_p50,
            100.0 * self.hit_rate,
            self.prompt_tokens_reused,
        )
    }
}

/// The header of a table of [`ConversationReport`] rows.
pub const CONVERSATION_HEADER: &str = "| prompt cache | conversations x turns | clients | ok | errors | tokens/s | time to first token, first turns | later turns | hit rate | prompt tokens reused |\n|---|---|---|---|---|---|---|---|---|---|";

/// POSTs a chat request; a request that got no answer is status 0.
fn post_chat(agent: &ureq::Agent, url: &str, body: &Value) -> Result<ureq::http::Response<ureq::Body>, u16> {
    agent
        .post(format!("{url}/v1/chat/completions"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .map_err(|_| 0u16)
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
