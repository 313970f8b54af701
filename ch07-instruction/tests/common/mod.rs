//! Helpers of the test binaries: a local test server that speaks Ollama's chat API (here),
//! for the client and CLI tests, and [`model`], the small model the server tests serve.
#![allow(dead_code)] // each test binary uses a part of it

pub mod model;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use serde_json::Value;

/// What the test server answers to one request.
pub enum Reply {
    /// A 200 reply streamed with chunked encoding, one chunk per piece of the message.
    Stream(Vec<&'static str>),
    /// A status and a body.
    Status(u16, &'static str),
    /// A 200 reply whose stream reports an error.
    StreamError(&'static str),
}

/// Serves `replies` in order, one per connection; sends each request's path and JSON body.
pub fn serve(replies: Vec<Reply>) -> (String, mpsc::Receiver<(String, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (requests, received) = mpsc::channel();
    std::thread::spawn(move || {
        for (stream, reply) in listener.incoming().zip(replies) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap();
                    }
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_string();
            let _ = requests.send((path, serde_json::from_slice(&body).unwrap_or(Value::Null)));
            let chunk = |text: &str| format!("{:x}\r\n{text}\r\n", text.len());
            let piece = |content: &str, done: bool| {
                serde_json::json!({"model": "llama3", "message": {"role": "assistant", "content": content}, "done": done})
                    .to_string()
                    + "\n"
            };
            let response = match reply {
                Reply::Stream(pieces) => {
                    let mut out = String::from(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                    );
                    for content in pieces {
                        out += &chunk(&piece(content, false));
                    }
                    out += &chunk(&piece("", true));
                    out + "0\r\n\r\n"
                }
                Reply::StreamError(message) => {
                    let line = serde_json::json!({ "error": message }).to_string() + "\n";
                    format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}0\r\n\r\n", chunk(&line))
                }
                Reply::Status(code, body) => format!(
                    "HTTP/1.1 {code} Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ),
            };
            stream.write_all(response.as_bytes()).unwrap();
        }
    });
    (url, received)
}
