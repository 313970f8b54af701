//! The server's contract: every endpoint in OpenAI's shape, the text equal to `respond`'s,
//! streaming equal to the whole response, batching invisible, each bad request a 4xx with an
//! OpenAI error body, the queue bound, and disconnects stopping generation. One server with
//! a small random model (`configs/small.json`) serves most tests, in this process.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ch07_instruction::finetune::InstructionModel;
use ch07_instruction::records::InstructionRecord;
use ch07_instruction::respond::respond;
use ch07_instruction::serve::load_test::{self, ConversationOptions, LoadTestOptions};
use ch07_instruction::serve::{self, RunningServer, ServeOptions};
use ch07_instruction::template::{Alpaca, PromptTemplate};
use common::model::{small_model, start};
use serde_json::{json, Value};
use shared::app::cli::RunContext;
use shared::app::model_source::Init;
use shared::core::device::global_rng_lock;
use shared::generate::{generate_text_cached, Sampler, Sampling};
use shared::tokenizer::{ChatMessage, END_OF_TEXT_ID};
use tch::{Device, Tensor};

/// The server most tests share.
fn server() -> &'static str {
    static SERVER: OnceLock<(RunningServer, String)> = OnceLock::new();
    &SERVER
        .get_or_init(|| {
            let server = start(ServeOptions { model_id: "small".into(), ..ServeOptions::local(0) });
            let url = server.url();
            (server, url)
        })
        .1
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

/// POSTs `body`; the status and the JSON answer.
fn post(url: &str, path: &str, body: impl Into<Vec<u8>>) -> (u16, Value) {
    let mut response = agent().post(format!("{url}{path}")).send(body.into()).unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

fn get(url: &str, path: &str) -> (u16, String, String) {
    let mut response = agent().get(format!("{url}{path}")).call().unwrap();
    let content_type = response.headers().get("content-type").map_or("", |v| v.to_str().unwrap()).to_string();
    (response.status().as_u16(), content_type, response.body_mut().read_to_string().unwrap())
}

/// POSTs a streaming request; every event's data, in order.
fn stream(url: &str, path: &str, body: &Value) -> Vec<String> {
    let mut response = agent().post(format!("{url}{path}")).send(body.to_string()).unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers().get("content-type").unwrap().to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/event-stream"), "{content_type}");
    let reader = BufReader::new(response.body_mut().as_reader());
    reader.lines().map(Result::unwrap).filter_map(|line| line.strip_prefix("data: ").map(str::to_string)).collect()
}

/// The text of a streamed response (chat deltas or completion texts joined), and the chunks.
fn streamed_text(url: &str, path: &str, body: &Value) -> (String, Vec<Value>) {
    let events = stream(url, path, body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let text = chunks
        .iter()
        .filter_map(|chunk| {
            let choice = chunk["choices"].get(0)?;
            choice["delta"]["content"].as_str().or(choice["text"].as_str()).map(str::to_string)
        })
        .collect();
    (text, chunks)
}

fn chat_body(instruction: &str, max_tokens: i64) -> Value {
    json!({ "model": "small", "messages": [{ "role": "user", "content": instruction }], "max_tokens": max_tokens,
            "temperature": 0 })
}

fn content(reply: &Value) -> &str {
    reply["choices"][0]["message"]["content"].as_str().unwrap_or_else(|| panic!("no content in {reply}"))
}

#[test]
fn chat_replies_equal_respond_streamed_or_not() {
    let url = server();
    let model = {
        let _rng = global_rng_lock();
        small_model().unwrap()
    };
    let template = &Alpaca;
    for (instruction, input) in [("Name a planet.", ""), ("Rewrite the sentence.", "The cat sat on the mat.")] {
        let record = InstructionRecord::new(instruction, input, "");
        let expected = respond(&model.loaded.model, template, &record, 40, Device::Cpu).unwrap();
        let mut body = chat_body(instruction, 40);
        if !input.is_empty() {
            // The input goes in as a system message.
            body["messages"] =
                json!([{ "role": "system", "content": input }, { "role": "user", "content": instruction }]);
        }
        let (status, reply) = post(url, "/v1/chat/completions", body.to_string());
        assert_eq!(status, 200, "{reply}");
        assert_eq!(content(&reply), expected);
        assert_eq!(reply["object"], "chat.completion");
        assert_eq!(reply["model"], "small");
        assert_eq!(reply["choices"][0]["message"]["role"], "assistant");
        let usage = &reply["usage"];
        let prompt_tokens = shared::tokenizer::Gpt2Tokenizer::new().encode(&template.format_input(&record)).len();
        assert_eq!(usage["prompt_tokens"], prompt_tokens);
        let completion = usage["completion_tokens"].as_u64().unwrap();
        assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt_tokens as u64 + completion);
        let finish = if completion == 40 { "length" } else { "stop" };
        assert_eq!(reply["choices"][0]["finish_reason"], finish);

        body["stream"] = json!(true);
        let (text, chunks) = streamed_text(url, "/v1/chat/completions", &body);
        assert_eq!(text, expected);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], finish);
        assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    }
}

#[test]
fn completions_continue_the_prompt_as_generate_does() {
    let url = server();
    let model = {
        let _rng = global_rng_lock();
        small_model().unwrap()
    };
    let prompt = "Every effort moves you";
    let mut greedy = Sampler::new(&Sampling { eos_id: Some(END_OF_TEXT_ID as i64), ..Sampling::GREEDY }).unwrap();
    let generated = generate_text_cached(&model.loaded.model, prompt, 30, &mut greedy).unwrap();
    let expected = generated.text.strip_prefix(prompt).unwrap();
    let body = json!({ "model": "small", "prompt": prompt, "max_tokens": 30, "temperature": 0 });
    let (status, reply) = post(url, "/v1/completions", body.to_string());
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["object"], "text_completion");
    assert_eq!(reply["choices"][0]["text"], expected);
    assert_eq!(reply["usage"]["completion_tokens"], generated.ids.len() - generated.prompt_tokens);

    let mut body = body;
    body["stream"] = json!(true);
    body["stream_options"] = json!({ "include_usage": true });
    let (text, chunks) = streamed_text(url, "/v1/completions", &body);
    assert_eq!(text, expected);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], reply["usage"]);

    // A stop sequence from the middle of the text ends it just before.
    let stop: String = expected.chars().skip(expected.chars().count() / 2).take(3).collect();
    let cut = &expected[..expected.find(&stop).unwrap()];
    for streamed in [false, true] {
        let body = json!({ "prompt": prompt, "max_tokens": 30, "temperature": 0, "stop": [stop], "stream": streamed });
        let (text, finish) = if streamed {
            let (text, chunks) = streamed_text(url, "/v1/completions", &body);
            (text, chunks.last().unwrap()["choices"][0]["finish_reason"].clone())
        } else {
            let (_, reply) = post(url, "/v1/completions", body.to_string());
            (reply["choices"][0]["text"].as_str().unwrap().to_string(), reply["choices"][0]["finish_reason"].clone())
        };
        assert_eq!((text.as_str(), finish), (cut, json!("stop")), "streamed: {streamed}");
    }
}

#[test]
fn a_seed_repeats_a_sampled_reply() {
    let url = server();
    let body = |seed: u64| {
        let mut body = chat_body("Name a planet.", 16);
        body["temperature"] = json!(1.0);
        body["top_p"] = json!(0.9);
        body["top_k"] = json!(50);
        body["seed"] = json!(seed);
        body.to_string()
    };
    let replies: Vec<String> = [7, 7, 8]
        .into_iter()
        .map(|seed| content(&post(url, "/v1/chat/completions", body(seed)).1).to_string())
        .collect();
    assert_eq!(replies[0], replies[1]);
    assert_ne!(replies[0], replies[2]);
    // A temperature too small for the distribution to be computed decodes greedily.
    let greedy = content(&post(url, "/v1/chat/completions", chat_body("Name a planet.", 16).to_string()).1).to_string();
    let mut cold = chat_body("Name a planet.", 16);
    cold["temperature"] = json!(1e-300);
    assert_eq!(content(&post(url, "/v1/chat/completions", cold.to_string()).1), greedy);
}

/// The log-probabilities of a chat reply's tokens: `(bytes, logprob, [(bytes, logprob)])`.
type Logprobs = Vec<(Vec<u8>, f64, Vec<(Vec<u8>, f64)>)>;

fn bytes(value: &Value) -> Vec<u8> {
    value.as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect()
}

fn chat_logprobs(choice: &Value) -> Logprobs {
    choice["logprobs"]["content"]
        .as_array()
        .unwrap_or_else(|| panic!("no logprobs in {choice}"))
        .iter()
        .map(|entry| {
            let top = entry["top_logprobs"].as_array().unwrap();
            let top = top.iter().map(|t| (bytes(&t["bytes"]), t["logprob"].as_f64().unwrap())).collect();
            assert_eq!(entry["token"].as_str().unwrap(), String::from_utf8_lossy(&bytes(&entry["bytes"])));
            (bytes(&entry["bytes"]), entry["logprob"].as_f64().unwrap(), top)
        })
        .collect()
}

#[test]
fn logprobs_equal_a_direct_forward_pass() {
    let url = server();
    let model = {
        let _rng = global_rng_lock();
        small_model().unwrap()
    };
    let tokenizer = shared::tokenizer::Gpt2Tokenizer::new();
    let id_of: std::collections::HashMap<Vec<u8>, i64> =
        (0..50257u32).map(|id| (tokenizer.decode_bytes(&[id]).unwrap(), id as i64)).collect();
    let messages = json!([{ "role": "user", "content": "Name a planet." }]);
    let (status, template) = post(url, "/apply-template", json!({ "messages": messages }).to_string());
    assert_eq!(status, 200, "{template}");
    let prompt: Vec<i64> = template["tokens"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect();
    for sampled in [false, true] {
        let mut body = json!({ "messages": messages, "max_tokens": 12, "logprobs": true, "top_logprobs": 5 });
        body["temperature"] = json!(if sampled { 1.0 } else { 0.0 });
        if sampled {
            body["seed"] = json!(3);
            body["top_k"] = json!(40);
        }
        let (status, reply) = post(url, "/v1/chat/completions", body.to_string());
        assert_eq!(status, 200, "{reply}");
        let logprobs = chat_logprobs(&reply["choices"][0]);
        assert_eq!(logprobs.len() as u64, reply["usage"]["completion_tokens"].as_u64().unwrap());
        let generated: Vec<i64> = logprobs.iter().map(|(bytes, _, _)| id_of[bytes]).collect();
        let ids = Tensor::from_slice(&[prompt.clone(), generated.clone()].concat()).view([1, -1]);
        let expected = tch::no_grad(|| model.loaded.model.forward_t(&ids, false)).log_softmax(-1, tch::Kind::Float);
        for (k, (_, logprob, top)) in logprobs.iter().enumerate() {
            let row = expected.get(0).get(prompt.len() as i64 + k as i64 - 1);
            let want = row.double_value(&[generated[k]]);
            assert!((logprob - want).abs() < 1e-5, "token {k}: {logprob} served, {want} by a forward pass");
            let (values, top_ids) = row.topk(5, -1, true, true);
            assert_eq!(top.len(), 5);
            for (j, (bytes, logprob)) in top.iter().enumerate() {
                assert_eq!(id_of[bytes], top_ids.int64_value(&[j as i64]), "token {k}, alternative {j}");
                assert!((logprob - values.double_value(&[j as i64])).abs() < 1e-5);
            }
            if !sampled {
                assert_eq!(generated[k], top_ids.int64_value(&[0]), "greedy decoding takes the most likely token");
            }
        }
        // Streamed, the same tokens and values, spread over the chunks.
        body["stream"] = json!(true);
        let (_, chunks) = streamed_text(url, "/v1/chat/completions", &body);
        let streamed: Logprobs = chunks
            .iter()
            .filter(|c| c["choices"].get(0).is_some_and(|c| !c["logprobs"].is_null()))
            .flat_map(|c| chat_logprobs(&c["choices"][0]))
            .collect();
        // The same tokens and values (up to rounding: the streamed request may start from
        // the prompt cache the first one left).
        assert_eq!(streamed.len(), logprobs.len(), "sampled: {sampled}");
        for ((bytes, value, top), (want_bytes, want, want_top)) in streamed.iter().zip(&logprobs) {
            assert_eq!(bytes, want_bytes, "sampled: {sampled}");
            assert!((value - want).abs() < 1e-5, "sampled: {sampled}: {value} streamed, {want} not");
            for ((bytes, value), (want_bytes, want)) in top.iter().zip(want_top) {
                assert!(bytes == want_bytes && (value - want).abs() < 1e-5, "sampled: {sampled}");
            }
        }
    }
    // Without the flag there are none.
    let (_, reply) = post(url, "/v1/chat/completions", chat_body("Hi", 4).to_string());
    assert!(reply["choices"][0]["logprobs"].is_null());
}

#[test]
fn completion_logprobs_follow_the_text() {
    let url = server();
    let body = json!({ "prompt": "Every effort moves you", "max_tokens": 10, "temperature": 0, "logprobs": 3 });
    let (status, reply) = post(url, "/v1/completions", body.to_string());
    assert_eq!(status, 200, "{reply}");
    let choice = &reply["choices"][0];
    let logprobs = &choice["logprobs"];
    let tokens: Vec<&str> = logprobs["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tokens.concat(), choice["text"].as_str().unwrap());
    let offsets: Vec<u64> = logprobs["text_offset"].as_array().unwrap().iter().map(|o| o.as_u64().unwrap()).collect();
    let mut at = 0;
    for (token, offset) in tokens.iter().zip(&offsets) {
        assert_eq!(*offset, at);
        at += token.chars().count() as u64;
    }
    for (k, top) in logprobs["top_logprobs"].as_array().unwrap().iter().enumerate() {
        let top = top.as_object().unwrap();
        assert!(!top.is_empty() && top.len() <= 3);
        // Greedy: the chosen token is the most likely, with its log-probability.
        let best = top.values().map(|v| v.as_f64().unwrap()).fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(best, logprobs["token_logprobs"][k].as_f64().unwrap());
    }
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (text, chunks) = streamed_text(url, "/v1/completions", &streamed);
    assert_eq!(text, choice["text"].as_str().unwrap());
    let (mut streamed_tokens, mut streamed_offsets) = (Vec::new(), Vec::new());
    for chunk in chunks.iter().filter(|c| !c["choices"][0]["logprobs"].is_null()) {
        let part = &chunk["choices"][0]["logprobs"];
        streamed_tokens.extend(part["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()));
        streamed_offsets.extend(part["text_offset"].as_array().unwrap().iter().map(|o| o.as_u64().unwrap()));
    }
    assert_eq!((streamed_tokens, streamed_offsets), (tokens.iter().map(|t| t.to_string()).collect(), offsets));
}

#[test]
fn n_choices_with_a_seed_are_reproducible() {
    let url = server();
    let body = |n: i64, stream: bool| {
        json!({ "messages": [{ "role": "user", "content": "Name a planet." }], "max_tokens": 12, "n": n,
                "seed": 1, "temperature": 1.0, "stream": stream })
    };
    let texts = |reply: &Value| -> Vec<String> {
        let choices = reply["choices"].as_array().unwrap();
        choices.iter().enumerate().for_each(|(i, c)| assert_eq!(c["index"], i));
        choices.iter().map(|c| c["message"]["content"].as_str().unwrap().to_string()).collect()
    };
    let (status, first) = post(url, "/v1/chat/completions", body(4, false).to_string());
    assert_eq!(status, 200, "{first}");
    let first_texts = texts(&first);
    assert_eq!(first_texts.len(), 4);
    assert_eq!(texts(&post(url, "/v1/chat/completions", body(4, false).to_string()).1), first_texts);
    let distinct: std::collections::BTreeSet<&String> = first_texts.iter().collect();
    assert!(distinct.len() > 1, "four samples at temperature 1 were all {:?}", first_texts[0]);
    // The first choice is the reply of the same request with n = 1.
    assert_eq!(texts(&post(url, "/v1/chat/completions", body(1, false).to_string()).1)[0], first_texts[0]);
    let completion_tokens: u64 = first["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion_tokens >= 4, "the usage counts every choice's tokens");
    // Streamed, each chunk names its choice; the texts are the same.
    let events = stream(url, "/v1/chat/completions", &body(4, true));
    let mut streamed = vec![String::new(); 4];
    let mut finished = 0;
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).unwrap();
        let choice = &chunk["choices"][0];
        let index = choice["index"].as_u64().unwrap() as usize;
        streamed[index] += choice["delta"]["content"].as_str().unwrap_or_default();
        finished += usize::from(!choice["finish_reason"].is_null());
    }
    assert_eq!((streamed, finished), (first_texts, 4));
}

#[test]
fn tokenize_detokenize_and_the_template() {
    let url = server();
    let text = "Héllo wörld, <|endoftext|> 🦀";
    let tokenizer = shared::tokenizer::Gpt2Tokenizer::new();
    let (status, reply) = post(url, "/tokenize", json!({ "content": text }).to_string());
    assert_eq!(status, 200, "{reply}");
    let ids: Vec<u32> = reply["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
    assert_eq!(ids, tokenizer.encode(text));
    let (_, pieces) = post(url, "/tokenize", json!({ "content": text, "with_pieces": true }).to_string());
    let mut joined = Vec::new();
    for (token, id) in pieces["tokens"].as_array().unwrap().iter().zip(&ids) {
        assert_eq!(token["id"], *id);
        match &token["piece"] {
            Value::String(piece) => joined.extend(piece.as_bytes()),
            bytes => joined.extend(self::bytes(bytes)), // part of a character
        }
    }
    assert_eq!(joined, text.as_bytes());
    let (status, back) = post(url, "/detokenize", json!({ "tokens": ids }).to_string());
    assert_eq!((status, back["content"].as_str().unwrap()), (200, text));
    let messages = json!([{ "role": "system", "content": "The cat sat." }, { "role": "user", "content": "Rewrite." }]);
    let (status, template) = post(url, "/apply-template", json!({ "messages": messages }).to_string());
    assert_eq!(status, 200, "{template}");
    let expected = Alpaca.format_input(&InstructionRecord::new("Rewrite.", "The cat sat.", ""));
    assert_eq!(template["prompt"], expected);
    let expected_ids: Vec<u32> = tokenizer.encode(template["prompt"].as_str().unwrap());
    assert_eq!(template["tokens"], json!(expected_ids));
}

#[test]
fn a_next_turn_reuses_the_cached_prompt_and_replies_the_same() {
    let cached = start(ServeOptions::local(0));
    let uncached = start(ServeOptions { prompt_cache: 0, ..ServeOptions::local(0) });
    let turn = |url: &str, messages: &Value| {
        let body = json!({ "messages": messages, "max_tokens": 12, "temperature": 0 });
        let (status, reply) = post(url, "/v1/chat/completions", body.to_string());
        assert_eq!(status, 200, "{reply}");
        (content(&reply).to_string(), reply["usage"]["prompt_tokens"].as_u64().unwrap())
    };
    let mut messages = json!([{ "role": "user", "content": "Name a planet." }]);
    let (first, first_prompt) = turn(&cached.url(), &messages);
    assert_eq!(first, turn(&uncached.url(), &messages).0);
    messages.as_array_mut().unwrap().extend([
        json!({ "role": "assistant", "content": first }),
        json!({ "role": "user", "content": "Name another one." }),
    ]);
    let (second, _) = turn(&cached.url(), &messages);
    assert_eq!(second, turn(&uncached.url(), &messages).0, "the cached prefix changes nothing");
    let stats = health(&cached.url());
    assert_eq!((stats["prompt_cache_hits"].as_u64(), stats["prompt_cache_misses"].as_u64()), (Some(1), Some(1)));
    assert_eq!(stats["prompt_cache_hit_rate"], 0.5);
    let reused = stats["prompt_tokens_reused"].as_u64().unwrap();
    assert!(reused >= first_prompt, "the second turn reused {reused} tokens, the first prompt has {first_prompt}");
    assert_eq!(stats["prompt_cache_entries"], 1, "the second turn's cache replaced the first's");
    assert!(stats["prompt_cache_bytes"].as_u64().unwrap() > 0);
    let off = health(&uncached.url());
    assert_eq!((off["prompt_cache_hits"].as_u64(), off["prompt_cache_entries"].as_u64()), (Some(0), Some(0)));
    // A completion that continues an earlier one's text reuses it too, prompt and reply.
    let prompt = "Every effort moves you";
    let body = |prompt: &str| json!({ "prompt": prompt, "max_tokens": 8, "temperature": 0 }).to_string();
    let (_, reply) = post(&cached.url(), "/v1/completions", body(prompt));
    let longer = format!("{prompt}{} and", reply["choices"][0]["text"].as_str().unwrap());
    let (_, again) = post(&cached.url(), "/v1/completions", body(&longer));
    let (_, fresh) = post(&uncached.url(), "/v1/completions", body(&longer));
    assert_eq!(again["choices"][0]["text"], fresh["choices"][0]["text"]);
    let stats = health(&cached.url());
    assert_eq!(stats["prompt_cache_hits"], 2);
    cached.stop().unwrap();
    uncached.stop().unwrap();
}

#[test]
fn requests_decoded_together_get_their_own_replies() {
    let url = server();
    let instructions = ["Name a planet.", "What is 2 + 2?", "Write a haiku about the sea and the wind.", "Hi"];
    let alone: Vec<String> = instructions
        .iter()
        .map(|i| content(&post(url, "/v1/chat/completions", chat_body(i, 24).to_string()).1).to_string())
        .collect();
    let before = health(url);
    let together: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|n| {
                let body = chat_body(instructions[n % 4], 24).to_string();
                scope.spawn(move || content(&post(url, "/v1/chat/completions", body).1).to_string())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (n, reply) in together.iter().enumerate() {
        assert_eq!(reply, &alone[n % 4], "request {n}");
    }
    let after = health(url);
    let (batches, requests) = (after["batches"].as_u64().unwrap(), after["batched_requests"].as_u64().unwrap());
    let (batches, requests) =
        (batches - before["batches"].as_u64().unwrap(), requests - before["batched_requests"].as_u64().unwrap());
    assert!(requests >= 12 && batches < requests, "12 concurrent requests in {batches} batches");
}

fn health(url: &str) -> Value {
    let (status, _, body) = get(url, "/health");
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    health["stats"].clone()
}

#[test]
fn models_health_and_page() {
    let url = server();
    let (status, content_type, body) = get(url, "/v1/models");
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let models: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "small");
    assert_eq!(models["data"][0]["object"], "model");
    let (status, _, body) = get(url, "/v1/models/small");
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["id"].clone()), (200, json!("small")));
    let (status, _, body) = get(url, "/v1/models/gpt-4");
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()["error"]["code"].clone()),
        (404, json!("model_not_found"))
    );
    health(url);
    let (status, content_type, page) = get(url, "/");
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    for part in
        ["<textarea id=\"prompt\"", "id=\"temperature\"", "id=\"max-tokens\"", "tokens/s", "/v1/chat/completions"]
    {
        assert!(page.contains(part), "the page has no {part}");
    }
    // Nothing is fetched from elsewhere: the page works offline.
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http") && !page.contains("@import"));
}

#[test]
fn bad_requests_get_openai_errors() {
    let url = server();
    let chat = "/v1/chat/completions";
    let user = json!([{ "role": "user", "content": "Hi" }]);
    let long_prompt = "word ".repeat(300);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (chat, b"{not json".to_vec(), 400, "invalid JSON"),
        (chat, vec![0xff, 0xfe, 0x00], 400, "not UTF-8"),
        (chat, b"{}".to_vec(), 400, "messages"),
        (chat, json!({ "messages": [] }).to_string().into(), 400, "at least one message"),
        (chat, json!({ "messages": "Hi" }).to_string().into(), 400, "invalid type"),
        (chat, json!({ "messages": user, "max_tokens": "ten" }).to_string().into(), 400, "invalid type"),
        (chat, json!({ "messages": user, "temperature": "hot" }).to_string().into(), 400, "invalid type"),
        (chat, json!({ "messages": user, "temperature": 3 }).to_string().into(), 400, "temperature"),
        (chat, json!({ "messages": user, "top_p": 0 }).to_string().into(), 400, "top_p"),
        (chat, json!({ "messages": user, "top_k": 0 }).to_string().into(), 400, "top_k"),
        (chat, json!({ "messages": user, "max_tokens": 0 }).to_string().into(), 400, "max_tokens"),
        (chat, json!({ "messages": user, "n": 0 }).to_string().into(), 400, "n must be between 1 and 8"),
        (chat, json!({ "messages": user, "n": 9 }).to_string().into(), 400, "n must be between 1 and 8"),
        (
            chat,
            json!({ "messages": user, "logprobs": true, "top_logprobs": 21 }).to_string().into(),
            400,
            "top_logprobs",
        ),
        (chat, json!({ "messages": user, "top_logprobs": 2 }).to_string().into(), 400, "needs logprobs"),
        ("/v1/completions", json!({ "prompt": "a", "logprobs": 6 }).to_string().into(), 400, "between 0 and 5"),
        ("/detokenize", json!({ "tokens": [50257] }).to_string().into(), 400, "outside the vocabulary"),
        ("/tokenize", json!({ "text": "a" }).to_string().into(), 400, "content"),
        ("/apply-template", json!({ "messages": [] }).to_string().into(), 400, "at least one message"),
        (chat, json!({ "messages": user, "stop": ["a", "b", "c", "d", "e"] }).to_string().into(), 400, "stop"),
        (chat, json!({ "messages": user, "max_tokens": 1000 }).to_string().into(), 400, "context is 256 tokens"),
        // `prompt + max_tokens` overflowed i64 and failed the whole batch with a 500.
        (chat, json!({ "messages": user, "max_tokens": i64::MAX }).to_string().into(), 400, "context is 256 tokens"),
        (chat, json!({ "messages": user, "stop": "x".repeat(300) }).to_string().into(), 400, "at most 256 characters"),
        // A million spaces panicked the tokenizer (tiktoken's regex gives up on them).
        (
            "/v1/completions",
            json!({ "prompt": " ".repeat(1_000_000) + "x" }).to_string().into(),
            400,
            "context is 256 tokens",
        ),
        (
            chat,
            json!({ "messages": [{ "role": "user", "content": long_prompt }] }).to_string().into(),
            400,
            "context is 256",
        ),
        (chat, json!({ "messages": [{ "role": "tool", "content": "x" }] }).to_string().into(), 400, "role 'tool'"),
        (
            chat,
            json!({ "messages": [{ "role": "user", "content": "x" }, { "role": "assistant", "content": "y" }] })
                .to_string()
                .into(),
            400,
            "must be the user's",
        ),
        (
            chat,
            json!({ "messages": [{ "role": "user", "content": [{ "type": "image_url" }] }] }).to_string().into(),
            400,
            "image_url",
        ),
        (chat, json!({ "messages": [{ "role": "user" }] }).to_string().into(), 400, "text content"),
        (chat, vec![b' '; 2 << 20], 413, "length limit"),
        ("/v1/completions", json!({ "prompt": ["a", "b"] }).to_string().into(), 400, "one prompt"),
        ("/v1/completions", json!({ "prompt": [1, 2] }).to_string().into(), 400, "invalid JSON"),
        ("/v1/completions", json!({ "prompt": "a", "echo": true }).to_string().into(), 400, "echo"),
        ("/v1/embeddings", b"{}".to_vec(), 404, "no such endpoint"),
    ];
    for (path, body, status, needle) in cases {
        let (got, reply) = post(url, path, body);
        let error = &reply["error"];
        let message = error["message"].as_str().unwrap_or_default();
        assert_eq!(got, status, "{path}: {reply}");
        assert!(message.contains(needle), "{path}: '{needle}' not in {reply}");
        assert!(error["type"].is_string() && error.get("param").is_some() && error.get("code").is_some(), "{reply}");
    }
    let (status, _, body) = get(url, "/v1/chat/completions");
    assert_eq!(status, 405, "{body}");
    assert!(body.contains("\"error\""));
    // The server still answers.
    assert_eq!(post(url, chat, chat_body("Hi", 2).to_string()).0, 200);
}

#[test]
fn a_full_queue_answers_429_and_a_gone_client_stops_its_generation() {
    // One request decoded at a time, one waiting.
    let server = start(ServeOptions { max_batch: 1, max_queue: 1, model_id: "small".into(), ..ServeOptions::local(0) });
    let url = server.url();
    let long = json!({ "messages": [{ "role": "user", "content": "Hi" }], "max_tokens": 200, "stream": true,
                       "temperature": 0 });
    let running = agent().post(format!("{url}/v1/chat/completions")).send(long.to_string()).unwrap();
    let mut lines = BufReader::new(running.into_body().into_reader()).lines();
    lines.next().unwrap().unwrap(); // the role chunk
    wait_for(&url, |stats| stats["running"] == 1);
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| post(&url, "/v1/chat/completions", chat_body("Hi", 3).to_string()));
        wait_for(&url, |stats| stats["queued"] == 1);
        let (status, reply) = post(&url, "/v1/chat/completions", chat_body("Hi", 3).to_string());
        assert_eq!(status, 429, "{reply}");
        assert_eq!(reply["error"]["code"], "queue_full");
        // The client of the running request goes away: its generation stops, the next runs.
        drop(lines);
        wait_for(&url, |stats| stats["cancelled"] == 1);
        let (status, reply) = waiting.join().unwrap();
        assert_eq!(status, 200, "{reply}");
    });
    let stats = health(&url);
    assert_eq!((stats["completed"].as_u64(), stats["cancelled"].as_u64()), (Some(1), Some(1)));
    assert!(stats["tokens"].as_u64().unwrap() < 200, "the cancelled request ran to its end: {stats}");
    // A client that gives up on a whole (not streamed) response stops it too.
    let impatient: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_millis(50))).build().into();
    let body = json!({ "messages": [{ "role": "user", "content": "Hi" }], "max_tokens": 230 });
    assert!(impatient.post(format!("{url}/v1/chat/completions")).send(body.to_string()).is_err());
    wait_for(&url, |stats| stats["cancelled"] == 2);
    let tokens = health(&url)["tokens"].as_u64().unwrap() - stats["tokens"].as_u64().unwrap();
    assert!(tokens < 230, "the abandoned request ran to its end");
    server.stop().unwrap();
}

fn wait_for(url: &str, condition: impl Fn(&Value) -> bool) {
    let start = Instant::now();
    loop {
        let stats = health(url);
        if condition(&stats) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "timed out; the server's counters: {stats}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_load_test_gets_every_request_answered() {
    let server = start(ServeOptions::local(0));
    let report =
        load_test::run(&server.url(), &LoadTestOptions { requests: 24, concurrency: 6, max_tokens: 8 }).unwrap();
    assert_eq!((report.ok, report.errors.len()), (24, 0), "{report}");
    assert!(report.latency_ms_p50 <= report.latency_ms_p99 && report.requests_per_second > 0.0);
    assert!(report.mean_batch > 1.0, "{report}");
    let error =
        load_test::run("http://example.com:80", &LoadTestOptions { requests: 1, concurrency: 1, max_tokens: 1 })
            .unwrap_err();
    assert!(error.to_string().contains("only runs against this machine"));
    // Conversations: every turn answered, the later ones from the prompt cache.
    let options = ConversationOptions { conversations: 2, concurrency: 1, turns: 3, max_tokens: 8 };
    let report = load_test::run_conversations(&server.url(), &options, 4).unwrap();
    assert_eq!((report.ok, report.errors.len()), (6, 0), "{report}");
    assert!(report.hit_rate > 0.5 && report.prompt_tokens_reused > 0, "{report}");
    assert!(report.later_turns_ttft_ms_p50 > 0.0 && report.tokens_per_second > 0.0, "{report}");
    let error = load_test::run_conversations("http://example.com:80", &options, 4).unwrap_err();
    assert!(error.to_string().contains("only runs against this machine"));
    server.stop().unwrap();
}

#[test]
fn a_hugging_face_model_chats_in_its_own_template() {
    let weights = shared::workspace_root().join("shared/tests/fixtures/hf/llama").to_string_lossy().into_owned();
    let load = |weights: String| {
        move || {
            let loaded = Init::Gpt2(weights).load(&RunContext::for_tests(), Some(0.0))?;
            InstructionModel::new(loaded, None)
        }
    };
    let (server, model) = {
        let _rng = global_rng_lock();
        let server = serve::start(load(weights.clone()), ServeOptions::local(0)).unwrap();
        (server, load(weights)().unwrap())
    };
    let url = server.url();
    let template = model.prompt_template().unwrap();
    let tokenizer = model.loaded.model.cfg.tokenizer.build().unwrap();
    let chat = tokenizer.chat_template().unwrap().unwrap();
    let prompt_tokens =
        |messages: &[ChatMessage]| tokenizer.encode_fragment(&chat.render(messages, true).unwrap()).unwrap().len();

    // One user message: respond's answer, whole or streamed, from the template's prompt.
    let record = InstructionRecord::new("Name a colour.", "", "");
    let expected = respond(&model.loaded.model, &*template, &record, 12, Device::Cpu).unwrap();
    let body = json!({ "messages": [{ "role": "user", "content": "Name a colour." }], "max_tokens": 12 });
    let (status, reply) = post(&url, "/v1/chat/completions", body.to_string());
    assert_eq!(status, 200, "{reply}");
    assert_eq!(content(&reply), expected);
    assert_eq!(reply["usage"]["prompt_tokens"], prompt_tokens(&[ChatMessage::new("user", "Name a colour.")]));
    let stream_body = json!({ "stream": true, "messages": body["messages"], "max_tokens": 12 });
    assert_eq!(streamed_text(&url, "/v1/chat/completions", &stream_body).0, expected);

    // A whole conversation goes through the template as it is, system message and turns.
    let turns = [("system", "Answer briefly."), ("user", "Hi."), ("assistant", "Hello!"), ("user", "Name a colour.")];
    let messages: Vec<ChatMessage> = turns.iter().map(|(role, text)| ChatMessage::new(role, text)).collect();
    let body = json!({ "messages": messages, "max_tokens": 4 });
    let (status, reply) = post(&url, "/v1/chat/completions", body.to_string());
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["usage"]["prompt_tokens"], prompt_tokens(&messages));

    // A completion's prompt starts as a whole text does: with Llama's BOS.
    let (status, reply) = post(&url, "/v1/completions", json!({ "prompt": "The sky is", "max_tokens": 4 }).to_string());
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["usage"]["prompt_tokens"], tokenizer.encode("The sky is").unwrap().len());
    server.stop().unwrap();
}
