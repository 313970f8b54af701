//! The binary's commands and its errors for bad input.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{serve, Reply};

fn ch07_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ch07-instruction"));
    command
        .args(["--device", "cpu"])
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", std::env::temp_dir().join("ch07-cli-empty-hub-cache"));
    command
}

fn ch07(args: &[&str]) -> Output {
    ch07_command(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn fails_with(args: &[&str], needle: &str) {
    let output = ch07(args);
    let message = text(&output.stderr);
    assert!(!output.status.success(), "{args:?} succeeded");
    assert!(message.contains("error") && message.contains(needle), "{args:?}: {message}");
}

fn small_config(dir: &std::path::Path) -> String {
    let config = dir.join("small.json");
    let small = shared::model::GptConfig {
        context_length: 128,
        emb_dim: 32,
        n_heads: 4,
        n_layers: 1,
        drop_rate: 0.0,
        ..shared::model::GptConfig::gpt2_small()
    };
    small.save(&config).unwrap();
    config.to_str().unwrap().to_string()
}

#[test]
fn fine_tune_then_respond_chat_answer_and_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    let out = dir.path().join("run");
    let out = out.to_str().unwrap();
    let run = ch07(&[
        "--init",
        "random",
        "--config",
        &config,
        "--limit",
        "40",
        "--epochs",
        "1",
        "--max-new-tokens",
        "5",
        "--template",
        "phi3",
        "--out-dir",
        out,
    ]);
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{}{}", stdout, text(&run.stderr));
    for needle in
        ["training 34, test 4, validation 2", "Phi-3 template", "Training loss:", "Ep 1 (Step 000000)", "<|user|>"]
    {
        assert!(stdout.contains(needle), "{needle} missing from:\n{stdout}");
    }
    let checkpoint = format!("{out}/sft");

    // `respond` uses the template recorded with the checkpoint.
    let respond =
        ch07(&["respond", "--checkpoint", &checkpoint, "--instruction", "Name a planet.", "--max-new-tokens", "3"]);
    assert!(respond.status.success(), "{}", text(&respond.stderr));
    assert!(!text(&respond.stdout).contains("<|assistant|>"));
    // The decoding flags: one beam answers as greedy decoding does; sampling is seeded.
    let args = ["respond", "--checkpoint", &checkpoint, "--instruction", "Name a planet.", "--max-new-tokens", "3"];
    let with = |extra: &[&str]| ch07(&[&args[..], extra].concat());
    assert_eq!(text(&with(&["--beams", "1"]).stdout), text(&respond.stdout));
    let sampled = with(&["--temperature", "1.5", "--top-p", "0.9", "--repetition-penalty", "1.2", "--seed", "4"]);
    assert!(sampled.status.success(), "{}", text(&sampled.stderr));
    assert_eq!(
        text(&with(&["--temperature", "1.5", "--top-p", "0.9", "--repetition-penalty", "1.2", "--seed", "4"]).stdout),
        text(&sampled.stdout)
    );
    fails_with(&[&args[..], &["--beams", "2", "--top-k", "5"]].concat(), "--beams searches deterministically");
    // A prompt longer than the context of 128 tokens.
    let long = "word ".repeat(200);
    fails_with(&["respond", "--checkpoint", &checkpoint, "--instruction", &long], "context length of 128");
    fails_with(&["respond", "--checkpoint", &format!("{out}/absent"), "--instruction", "x"], "does not exist");

    // `chat`: instruction and input lines until end of input.
    let mut chat = ch07_command(&["chat", "--checkpoint", &checkpoint, "--max-new-tokens", "3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    chat.stdin.take().unwrap().write_all(b"Name a planet.\n\nTranslate to French.\nGood morning\n").unwrap();
    let chat = chat.wait_with_output().unwrap();
    assert!(chat.status.success(), "{}", text(&chat.stderr));
    assert_eq!(text(&chat.stdout).matches("\n\n").count(), 2, "two answers: {:?}", text(&chat.stdout));
    assert_eq!(text(&chat.stderr).matches("instruction> ").count(), 3);

    // `responses` on a file, then `evaluate` with a judge that fails midway: the first
    // score is kept.
    let records = format!("{out}/validation.json");
    let answers = dir.path().join("answers");
    let answers = answers.to_str().unwrap();
    let output = ch07(&[
        "responses",
        "--checkpoint",
        &checkpoint,
        "--records",
        &records,
        "--max-new-tokens",
        "3",
        "--out-dir",
        answers,
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let responses = format!("{answers}/instruction-data-with-response.json");
    let (url, _requests) = serve(vec![Reply::Stream(vec!["7", "0"]), Reply::Status(500, r#"{"error":"gone"}"#)]);
    let output = ch07(&["evaluate", "--responses", &responses, "--host", &url, "--out-dir", answers]);
    let message = text(&output.stderr);
    assert!(!output.status.success());
    assert!(message.contains("scoring stopped after 1 of 2 records") && message.contains("gone"), "{message}");
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{answers}/scores.json")).unwrap()).unwrap();
    assert_eq!(scores["scores"][0]["score"], 70);

    let (url, _requests) = serve(vec![Reply::Stream(vec!["70"]), Reply::Stream(vec!["90"])]);
    let output = ch07(&["evaluate", "--responses", &responses, "--host", &url, "--out-dir", answers]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("Number of scores: 2 of 2\nAverage score: 80.00"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    // The default starts from GPT-2 medium, which is not available offline.
    fails_with(&["--out-dir", out], "OpenAI's GPT-2 weights (gpt2-medium) are needed");
    fails_with(&["--out-dir", out], "--init random");
    fails_with(&["--data", "/nonexistent/records.json", "--out-dir", out], "does not exist");
    let malformed = dir.path().join("bad.json");
    std::fs::write(
        &malformed,
        r#"[{"instruction": "a", "input": "", "output": "b"}, {"instruction": "a", "input": 1, "output": "b"}]"#,
    )
    .unwrap();
    fails_with(&["--data", malformed.to_str().unwrap(), "--out-dir", out], "record 1: the field 'input' is a number");
    let config = small_config(dir.path());
    fails_with(
        &["--init", "random", "--config", &config, "--limit", "40", "--allowed-max-length", "4096", "--out-dir", out],
        "--allowed-max-length must be between 1 and the model's context of 128",
    );
    fails_with(
        &["--init", "random", "--config", &config, "--limit", "5", "--out-dir", out],
        "too few for batches of 8",
    );
    fails_with(&["--init", "checkpoint", "--out-dir", out], "--init checkpoint needs --checkpoint FILE");
    fails_with(&["--lora-rank", "8"], "--lora");
    fails_with(&["exercise", "9.9"], "unknown exercise id '9.9'; this chapter has: 7.1, 7.2, 7.3, 7.4");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let records = dir.path().join("answered.json");
    std::fs::write(&records, r#"[{"instruction": "a", "input": "", "output": "b", "model_response": "c"}]"#).unwrap();
    fails_with(
        &[
            "evaluate",
            "--responses",
            records.to_str().unwrap(),
            "--host",
            &format!("http://127.0.0.1:{port}"),
            "--out-dir",
            out,
        ],
        "ollama serve",
    );
}

#[test]
fn serve_and_respond_take_any_model_and_refuse_bad_settings() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/small.json");
    let random = ["--init", "random", "--config", config];
    // `respond` (and so `serve`) work without a fine-tuned checkpoint.
    let output =
        ch07(&[&["respond", "--instruction", "Name a planet.", "--max-new-tokens", "4"], &random[..]].concat());
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!text(&output.stdout).trim().is_empty());
    let serve = |extra: &[&'static str]| [&["serve", "--port", "0"], &random[..], extra].concat();
    fails_with(&serve(&["--max-batch", "0"]), "at least one request");
    fails_with(&serve(&["--beams", "2"]), "--beams and --repetition-penalty are respond's flags");
    fails_with(&serve(&["--temperature", "3"]), "temperatures up to 2");
    fails_with(&serve(&["--api-key", " "]), "--api-key cannot be empty");
    fails_with(&serve(&["--header-timeout", "0"]), "--header-timeout must be between 0 and 86400 seconds");
    fails_with(&serve(&["--body-timeout", "NaN"]), "--body-timeout must be between");
    fails_with(&serve(&["--max-connections", "0"]), "at least one connection");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    fails_with(&[&["serve", "--port", &port], &random[..]].concat(), "listening on 127.0.0.1");
    fails_with(&["serve", "--port", "0", "--init", "random", "--config", "/nonexistent.json"], "nonexistent.json");
    fails_with(&[&["load-test", "--concurrency", "0"], &random[..]].concat(), "at least one request and one client");
    // `--model NAME=SOURCE`.
    let small = format!("base=random:{config}");
    let models = |extra: &[&'static str]| [&["serve", "--port", "0", "--model", small.as_str()], extra].concat();
    fails_with(&models(&["--model", "tuned"]), "--model takes NAME=SOURCE");
    fails_with(&models(&["--model", "=gpt2-small"]), "--model takes NAME=SOURCE");
    fails_with(&models(&["--model", "tuned=other+lora-adapters.safetensors"]), "no --model is named 'other'");
    fails_with(&models(&["--model", "base=random:gpt2-small"]), "two models are named 'base'");
    fails_with(&models(&["--model", "tuned=base+/nonexistent.safetensors"]), "/nonexistent.json");
    fails_with(&models(&["--checkpoint", "sft.safetensors"]), "give every model that way");
}

#[test]
fn list_names_every_exercise() {
    let output = ch07(&["list"]);
    assert!(output.status.success());
    let listing = text(&output.stdout);
    for id in ["7.1", "7.2", "7.3", "7.4"] {
        assert!(listing.contains(id), "{listing}");
    }
    // Listing needs no run flags: ones that could not start a run do not stop it.
    let output = ch07(&["--init", "checkpoint", "list"]);
    assert!(output.status.success() && text(&output.stdout) == listing, "{}", text(&output.stderr));
}

#[test]
fn the_readme_lists_every_exercise() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let missing = shared::app::exercise::missing_readme_rows(ch07_instruction::exercises::ALL, &readme);
    assert!(missing.is_empty(), "README rows missing: {missing:#?}");
}

/// Every command's flags and defaults, as `--help` prints them, equal the committed snapshot.
#[test]
fn help_is_unchanged() {
    shared::reference::assert_help_unchanged(env!("CARGO_BIN_EXE_ch07-instruction"), env!("CARGO_MANIFEST_DIR"));
}

#[test]
fn respond_answers_with_the_model_s_own_tokenizer() {
    for family in ["llama", "qwen3", "gemma3"] {
        let weights = shared::workspace_root().join("shared/tests/fixtures/hf").join(family);
        let weights = weights.to_string_lossy();
        let args = ["--init", "gpt2", "--weights", &weights, "respond", "--instruction", "Name a colour."];
        let output = ch07(&[&args[..], &["--max-new-tokens", "6"]].concat());
        assert!(output.status.success(), "{family}: {}", text(&output.stderr));
        // Only the response: neither the prompt nor the BOS the tokenizer adds.
        let response = text(&output.stdout);
        assert!(!response.contains("Name a colour") && !response.contains("<bos>"), "{family}: {response:?}");
        assert!(!response.contains("begin_of_text") && !response.trim().is_empty(), "{family}: {response:?}");
    }
}
