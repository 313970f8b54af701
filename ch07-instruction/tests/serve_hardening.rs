//! `serve` against hostile clients: web pages on other origins and rebinding DNS names, a
//! missing or wrong API key, clients that hold connections open with partial headers or
//! bodies, and user text that spells a special token.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

mod common;

use ch07_instruction::serve::guard::Access;
use ch07_instruction::serve::soak::{self, request};
use ch07_instruction::serve::{ConnectionLimits, ServeOptions};
use common::model::start;
use serde_json::{json, Value};
use shared::tokenizer::{Gpt2Tokenizer, END_OF_TEXT};

/// Sends `request` as it is: the status and the body.
fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    soak::send(addr, request).unwrap()
}

#[test]
fn hosts_origins_and_the_api_key_are_checked() {
    let access = Access { api_key: Some("sk-test".into()), ..Access::default() };
    let server = start(ServeOptions { access, ..ServeOptions::local(0) });
    let addr = server.addr;
    let host = format!("Host: 127.0.0.1:{}", addr.port());
    let key = "Authorization: Bearer sk-test";
    let completion = json!({ "prompt": "Hello", "max_tokens": 2 }).to_string();
    // A page on another site posting a form (no preflight) to the local server.
    let cross_site = ["Host: 127.0.0.1", "Origin: https://evil.example", "Content-Type: text/plain", key];
    let (status, body) = raw(addr, &request("POST", "/v1/completions", &cross_site, &completion));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--allowed-origin https://evil.example"), "{body}");
    // DNS rebinding: the attacker's name resolved to 127.0.0.1; the page is same-origin.
    let rebound = ["Host: evil.example:8080", "Origin: http://evil.example:8080", key];
    assert_eq!(raw(addr, &request("GET", "/", &rebound, "")).0, 403);
    assert_eq!(raw(addr, &request("POST", "/v1/completions", &rebound, &completion)).0, 403);
    // The API key.
    let (status, body) = raw(addr, &request("POST", "/v1/completions", &[&host], &completion));
    assert_eq!(status, 401, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "invalid_api_key");
    let wrong = "Authorization: Bearer sk-wrong";
    assert_eq!(raw(addr, &request("POST", "/v1/completions", &[&host, wrong], &completion)).0, 401);
    // The server's own page and plain clients with the key pass.
    let own = [host.as_str(), &format!("Origin: http://127.0.0.1:{}", addr.port()), key];
    let (status, body) = raw(addr, &request("POST", "/v1/completions", &own, &completion));
    assert_eq!(status, 200, "{body}");
    assert_eq!(raw(addr, &request("GET", "/v1/models", &["Host: localhost", key], "")).0, 200);
    assert_eq!(raw(addr, &request("GET", "/health", &["Host: localhost"], "")).0, 200);
    assert_eq!(raw(addr, &request("GET", "/", &["Host: localhost"], "")).0, 200);
    server.stop().unwrap();
}

#[test]
fn user_text_is_never_a_special_token() {
    let server = start(ServeOptions::local(0));
    let addr = server.addr;
    let ordinary = Gpt2Tokenizer::new().encode_ordinary(END_OF_TEXT).len();
    assert!(ordinary > 1);
    let prompt_tokens = |path: &str, body: Value| {
        let (status, reply) = raw(addr, &request("POST", path, &["Host: localhost"], &body.to_string()));
        assert_eq!(status, 200, "{reply}");
        serde_json::from_str::<Value>(&reply).unwrap()["usage"]["prompt_tokens"].as_u64().unwrap() as usize
    };
    let completion = json!({ "prompt": END_OF_TEXT, "max_tokens": 1 });
    assert_eq!(prompt_tokens("/v1/completions", completion), ordinary, "<|endoftext|> became token 50256");
    let plain = json!({ "messages": [{ "role": "user", "content": "x" }], "max_tokens": 1 });
    let special = json!({ "messages": [{ "role": "user", "content": format!("x{END_OF_TEXT}") }], "max_tokens": 1 });
    let extra = Gpt2Tokenizer::new().encode_ordinary(&format!("x{END_OF_TEXT}")).len() - 1;
    assert_eq!(prompt_tokens("/v1/chat/completions", special), prompt_tokens("/v1/chat/completions", plain) + extra);
    server.stop().unwrap();
}

/// Connections that send part of their headers are closed after the header timeout, those
/// beyond the cap wait until a slot frees, and the server keeps answering; a body that
/// does not arrive is answered 408.
#[test]
fn slow_clients_are_cut_off_and_connections_are_capped() {
    let connections = ConnectionLimits {
        max_connections: 8,
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
    };
    let server = start(ServeOptions { connections, ..ServeOptions::local(0) });
    let addr = server.addr;
    let start = Instant::now();
    let mut slow: Vec<TcpStream> = (0..24)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n").unwrap();
            stream
        })
        .collect();
    // /health waits behind the first eight for a slot, then answers.
    let (status, _) = raw(addr, &request("GET", "/health", &["Host: localhost"], ""));
    assert_eq!(status, 200);
    // Every slow connection has been closed by the server: each read ends (EOF or reset).
    for stream in &mut slow {
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buffer = [0u8; 1024];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => continue, // a 408 the server may send before closing
            }
        }
    }
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(20), "24 slow connections took {elapsed:?} to clear");
    // A body that never arrives.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{\"prompt\":";
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 1 s"), "{answer}");
    server.stop().unwrap();
}
