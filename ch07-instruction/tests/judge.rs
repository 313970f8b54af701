//! The Ollama client against a local test server on 127.0.0.1 that speaks the same API:
//! `POST /api/chat`, replies streamed as JSON lines in chunks, and errors.

mod common;

use std::net::TcpListener;

use ch07_instruction::judge::{parse_score, score_responses, scoring_prompt, OllamaClient};
use ch07_instruction::preference_data::{make_preference_data, rewrite_prompt, Politeness};
use ch07_instruction::records::InstructionRecord;
use ch07_instruction::template::Alpaca;
use common::{serve, Reply};

fn answered(output: &str, response: &str) -> InstructionRecord {
    InstructionRecord {
        model_response: Some(response.to_string()),
        ..InstructionRecord::new("Name a planet.", "", output)
    }
}

#[test]
fn scores_are_streamed_joined_and_parsed_and_bad_ones_reported() {
    let (url, requests) = serve(vec![
        Reply::Stream(vec!["8", "5"]),
        Reply::Stream(vec!["Score: ", "good"]),
        Reply::Stream(vec![" 40\n"]),
    ]);
    let records = [answered("Mars.", "Mars."), answered("Venus.", "A planet."), answered("Earth.", "Earth, maybe.")];
    let client = OllamaClient::new(&url, "llama3");
    let mut seen = 0;
    let report = score_responses(&client, &Alpaca, &records, |_| seen += 1).unwrap();
    assert_eq!(seen, 3);
    let scores: Vec<Option<i64>> = report.scores.iter().map(|s| s.score).collect();
    assert_eq!(scores, [Some(85), None, Some(40)]);
    assert_eq!(report.average, Some(62.5));
    assert_eq!(report.scores[1].reply, "Score: good");
    let text = report.to_string();
    assert!(text.contains("Number of scores: 2 of 3"), "{text}");
    assert!(text.contains("Could not convert the score of record 1: \"Score: good\""), "{text}");
    assert!(text.contains("Average score: 62.50"), "{text}");

    // The requests: the book's prompt and options, on /api/chat.
    let (path, body) = requests.recv().unwrap();
    assert_eq!(path, "/api/chat");
    assert_eq!(body["model"], "llama3");
    assert_eq!(body["messages"][0]["role"], "user");
    assert_eq!(body["messages"][0]["content"], scoring_prompt(&Alpaca, &records[0]));
    assert_eq!(body["options"], serde_json::json!({"seed": 123, "temperature": 0, "num_ctx": 2048}));
    let prompt = scoring_prompt(&Alpaca, &records[0]);
    assert!(prompt.starts_with("Given the input `Below is an instruction"), "{prompt}");
    assert!(prompt.ends_with("and correct output `Mars.`, score the model response `Mars.` on a scale from 0 to 100, where 100 is the best score. Respond with the integer number only."), "{prompt}");
}

#[test]
fn server_errors_are_clear() {
    let (url, _requests) = serve(vec![
        Reply::Status(500, r#"{"error":"the runner crashed"}"#),
        Reply::Status(404, r#"{"error":"model \"llama3\" not found, try pulling it first"}"#),
        Reply::StreamError("out of memory"),
    ]);
    let client = OllamaClient::new(&url, "llama3");
    let err = client.chat("hi").unwrap_err().to_string();
    assert!(err.contains("500") && err.contains("the runner crashed"), "{err}");
    let err = client.chat("hi").unwrap_err().to_string();
    assert!(err.contains("404") && err.contains("ollama pull llama3"), "{err}");
    let err = client.chat("hi").unwrap_err().to_string();
    assert!(err.contains("reported an error: out of memory"), "{err}");
}

#[test]
fn no_server_says_how_to_start_one() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = OllamaClient::new(&format!("http://127.0.0.1:{port}"), "llama3");
    let err = client.chat("hi").unwrap_err().to_string();
    for needle in ["no Ollama server answers", "ollama serve", "ollama pull llama3", "--host"] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
}

#[test]
fn records_without_a_response_are_refused() {
    let client = OllamaClient::new("http://127.0.0.1:9", "llama3");
    let records = [answered("Mars.", "Mars."), InstructionRecord::new("a", "", "b")];
    let err = score_responses(&client, &Alpaca, &records, |_| {}).unwrap_err().to_string();
    assert!(err.contains("record 1 has no model_response"), "{err}");
}

#[test]
fn scores_are_read_as_python_int_reads_them() {
    assert_eq!(parse_score("85"), Some(85));
    assert_eq!(parse_score(" 85\n"), Some(85));
    assert_eq!(parse_score("+7"), Some(7));
    assert_eq!(parse_score("-3"), Some(-3));
    for bad in ["85.0", "Score: 85", "", "eighty", "8 5", "+"] {
        assert_eq!(parse_score(bad), None, "{bad:?}");
    }
}

#[test]
fn preference_data_is_made_from_polite_and_impolite_rewrites() {
    let records: Vec<InstructionRecord> =
        (0..6).map(|i| InstructionRecord::new(&format!("Name planet {i}."), "", &format!("Planet {i}."))).collect();
    let (url, requests) = serve((0..6).map(|i| Reply::Stream(REWRITES[i].to_vec())).collect());
    let client = OllamaClient::new(&url, "llama3");
    let mut seen = 0;
    let pairs = make_preference_data(&client, &Alpaca, &records, 123, |_| seen += 1).unwrap();
    assert_eq!((pairs.len(), seen), (6, 6));
    let mut directions = Vec::new();
    for (i, (pair, record)) in pairs.iter().zip(&records).enumerate() {
        let (_, body) = requests.recv().unwrap();
        let prompt = body["messages"][0]["content"].as_str().unwrap().to_string();
        let polite = prompt.contains("to be more polite.");
        assert!(polite || prompt.contains("to be more impolite."), "{prompt}");
        assert_eq!(
            prompt,
            rewrite_prompt(&Alpaca, record, if polite { Politeness::Polite } else { Politeness::Impolite })
        );
        // The rewrite is chosen when it is the politer one, rejected otherwise.
        let rewrite = format!("Rewrite {i}.");
        let expected = if polite { (rewrite, record.output.clone()) } else { (record.output.clone(), rewrite) };
        assert_eq!((pair.chosen.clone(), pair.rejected.clone()), expected);
        assert_eq!(pair.record.instruction, record.instruction);
        directions.push(polite);
    }
    // A seeded coin: both directions occur, and the same seed gives the same ones.
    assert!(directions.contains(&true) && directions.contains(&false), "{directions:?}");
    let (url, requests) = serve((0..6).map(|i| Reply::Stream(REWRITES[i].to_vec())).collect());
    make_preference_data(&OllamaClient::new(&url, "llama3"), &Alpaca, &records, 123, |_| {}).unwrap();
    let again: Vec<bool> = (0..6)
        .map(|_| requests.recv().unwrap().1["messages"][0]["content"].as_str().unwrap().contains("more polite."))
        .collect();
    assert_eq!(again, directions);
    // A server that fails is an error with its message.
    let (url, _requests) = serve(vec![Reply::Status(500, r#"{"error":"the runner crashed"}"#)]);
    let err = make_preference_data(&OllamaClient::new(&url, "llama3"), &Alpaca, &records, 1, |_| {}).unwrap_err();
    assert!(err.to_string().contains("the runner crashed"), "{err}");
}

const REWRITES: [[&str; 2]; 6] = [
    ["Rewrite", " 0."],
    ["Rewrite", " 1."],
    ["Rewrite", " 2."],
    ["Rewrite", " 3."],
    ["Rewrite", " 4."],
    ["Rewrite", " 5."],
];
