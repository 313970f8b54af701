//! Section 7.8: scoring responses with a larger LLM as the judge, through a local Ollama
//! server's chat API (`POST /api/chat`, answered as a stream of JSON lines). Each response is
//! scored 0-100 with the book's prompt; the request carries the book's options (seed 123,
//! temperature 0, a 2,048-token context) so that scores repeat.

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::records::InstructionRecord;
use crate::template::PromptTemplate;

/// Ollama's address when it runs on this machine.
pub const DEFAULT_HOST: &str = "http://localhost:11434";
/// The judge the book uses (Llama 3 8B Instruct).
pub const DEFAULT_MODEL: &str = "llama3";

/// A client for one model on one Ollama server.
pub struct OllamaClient {
    host: String,
    model: String,
    agent: ureq::Agent,
}

impl OllamaClient {
    pub fn new(host: &str, model: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            // A large judge on a CPU can take minutes for a long reply.
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        Self { host: host.trim_end_matches('/').to_string(), model: model.to_string(), agent }
    }

    /// The book's `query_model`: one user message, the reply's streamed pieces joined.
    pub fn chat(&self, prompt: &str) -> Result<String> {
        let url = format!("{}/api/chat", self.host);
        let request = json!({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "options": {"seed": 123, "temperature": 0, "num_ctx": 2048},
        });
        let mut response =
            match self.agent.post(&url).header("Content-Type", "application/json").send(request.to_string()) {
                Ok(response) => response,
                Err(err) => bail!(
                    "no Ollama server answers at {} ({err}). Install Ollama (https://ollama.com), start it with \
                     `ollama serve`, fetch the judge with `ollama pull {}`, or point --host at a running server",
                    self.host,
                    self.model
                ),
            };
        let status = response.status();
        let mut body = response.body_mut().as_reader();
        if !status.is_success() {
            let mut text = String::new();
            let _ = body.read_to_string(&mut text);
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or(text);
            let hint = if status.as_u16() == 404 {
                format!(" (is the model pulled? `ollama pull {}`)", self.model)
            } else {
                String::new()
            };
            bail!("the Ollama server at {} answered {status}: {}{hint}", self.host, message.trim());
        }
        read_stream(BufReader::new(body))
    }
}

/// Joins the `message.content` pieces of a streamed chat reply (one JSON object per line,
/// the last with `"done": true`); an `error` line is an error.
fn read_stream(reader: impl BufRead) -> Result<String> {
    let mut reply = String::new();
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let piece: Value = serde_json::from_str(&line)
            .map_err(|err| anyhow::anyhow!("the Ollama server sent a line that is not JSON ({err}): {line}"))?;
        if let Some(error) = piece.get("error").and_then(Value::as_str) {
            bail!("the Ollama server reported an error: {error}");
        }
        if let Some(content) = piece.pointer("/message/content").and_then(Value::as_str) {
            reply += content;
        }
        if piece.get("done").and_then(Value::as_bool) == Some(true) {
            break;
        }
    }
    Ok(reply)
}

/// The book's judging prompt for a record that has a `model_response`.
pub fn scoring_prompt(template: &dyn PromptTemplate, record: &InstructionRecord) -> String {
    format!(
        "Given the input `{}` and correct output `{}`, score the model response `{}` on a scale from 0 to 100, \
         where 100 is the best score. Respond with the integer number only.",
        template.format_input(record),
        record.output,
        record.model_response.as_deref().unwrap_or_default()
    )
}

/// A reply as the book reads it, with Python's `int(reply)`: an integer, optionally signed,
/// with surrounding whitespace; anything else is no score.
pub fn parse_score(reply: &str) -> Option<i64> {
    let text = reply.trim();
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// One record's score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub index: usize,
    /// `None` when the reply was not an integer.
    pub score: Option<i64>,
    pub reply: String,
}

/// The judge's verdict on a responses file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeReport {
    pub model: String,
    pub records: usize,
    pub scores: Vec<Score>,
    /// The mean of the parsed scores (`None` when none parsed).
    pub average: Option<f64>,
}

impl JudgeReport {
    pub fn new(model: &str, records: usize, scores: Vec<Score>) -> Self {
        let parsed: Vec<i64> = scores.iter().filter_map(|s| s.score).collect();
        let average = (!parsed.is_empty()).then(|| parsed.iter().sum::<i64>() as f64 / parsed.len() as f64);
        Self { model: model.to_string(), records, scores, average }
    }

    pub fn unparsable(&self) -> impl Iterator<Item = &Score> {
        self.scores.iter().filter(|s| s.score.is_none())
    }
}

impl std::fmt::Display for JudgeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parsed = self.scores.iter().filter(|s| s.score.is_some()).count();
        writeln!(f, "Number of scores: {parsed} of {}", self.records)?;
        for score in self.unparsable() {
            writeln!(f, "Could not convert the score of record {}: {:?}", score.index, score.reply)?;
        }
        match self.average {
            Some(average) => write!(f, "Average score: {average:.2} (judge: {})", self.model),
            None => write!(f, "Average score: none, no reply was a number (judge: {})", self.model),
        }
    }
}

/// Scores every record's `model_response`; `on_score` sees each score as it arrives (for a
/// progress bar, or to keep partial results when the server fails midway).
pub fn score_responses(
    client: &OllamaClient,
    template: &dyn PromptTemplate,
    records: &[InstructionRecord],
    mut on_score: impl FnMut(&Score),
) -> Result<JudgeReport> {
    if let Some(index) = records.iter().position(|r| r.model_response.is_none()) {
        bail!("record {index} has no model_response: score a file written by the chapter's run or `responses`");
    }
    let mut scores = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let reply = client.chat(&scoring_prompt(template, record))?;
        let score = Score { index, score: parse_score(&reply), reply };
        on_score(&score);
        scores.push(score);
    }
    Ok(JudgeReport::new(&client.model, records.len(), scores))
}
