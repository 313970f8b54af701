//! The binary's errors for bad input.

use std::process::{Command, Output};

fn ch21(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ch21-advanced")).arg("--device").arg("cpu").args(args).output().unwrap()
}

fn fails_with(args: &[&str], needle: &str) {
    let output = ch21(args);
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} succeeded");
    assert!(message.contains(needle), "{args:?}: {message}");
}

#[test]
fn bad_input_is_a_clear_error() {
    fails_with(&["exercise", "21.99"], "unknown exercise id '21.99'");
    fails_with(&["generate", "--checkpoint", "/nonexistent/minigpt"], "does not exist");
    fails_with(&["train", "--iters", "30", "--eval-interval", "20"], "multiple of --eval-interval");
    fails_with(&["train", "--tokenizer", "bytes"], "invalid value 'bytes'");
    fails_with(&["train", "--data", "/nonexistent.txt"], "/nonexistent.txt");
    fails_with(&["compare", "nope"], "[possible values: rope, window, gqa, sinks, prefix, mtp]");
    fails_with(&["compare", "gqa", "--steps", "1"], "--steps must be at least 2");
    fails_with(&["train", "--sink-tokens", "2"], "sink_tokens needs a sliding_window");
    fails_with(&["train", "--pos-encoding", "alibi"], "possible values: learned, rope, sinusoidal, none");
    fails_with(&["--checkpoint", "/nonexistent/large", "exercise", "21.19"], "loading the model of --checkpoint");
    fails_with(&["--weights", "/nonexistent/gpt2", "exercise", "21.34"], "loading the model of --weights");
    fails_with(&["train", "--distill-weight", "0.3"], "--teacher");
    fails_with(
        &[
            "train",
            "--teacher",
            "/nonexistent/teacher",
            "--iters",
            "10",
            "--eval-interval",
            "10",
            "--warmup-steps",
            "1",
        ],
        "loading the teacher",
    );
    fails_with(
        &["generate", "--checkpoint", "/x", "--beams", "2", "--top-p", "0.9"],
        "--beams searches deterministically",
    );
    fails_with(
        &["generate", "--checkpoint", "/x", "--temperature", "0", "--beams", "0"],
        "beam width must be between 1",
    );
    fails_with(&["generate", "--checkpoint", "/x", "--length-penalty", "2"], "--beams");
    let output = ch21(&["list"]);
    let list = String::from_utf8_lossy(&output.stdout);
    assert!(list.contains("21.8") && list.contains("21.35"), "{list}");
}

#[test]
fn compare_prints_a_table_and_writes_the_curves() {
    let dir = tempfile::tempdir().unwrap();
    let output = ch21(&["--out-dir", dir.path().to_str().unwrap(), "compare", "gqa", "--steps", "2", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let table: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let bytes: Vec<i64> = rows.iter().map(|r| r["kv_cache_bytes_per_token"].as_i64().unwrap()).collect();
    assert_eq!(bytes, [4096, 2048, 1024, 512], "4 layers x 2 x KV heads x 16 x 4 bytes");
    assert!(dir.path().join("compare-gqa.png").is_file());
}

#[test]
fn the_analysis_exercises_run_on_weights_and_reject_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let weights = shared::workspace_root().join("shared/tests/fixtures/gpt2-tiny-hf");
    let weights = weights.to_str().unwrap();
    let output = ch21(&["--out-dir", out, "--weights", weights, "exercise", "21.23"]);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(printed.starts_with("Model: GPT-2 weights"), "the output names the model: {printed}");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n\n").unwrap();
    let empty = empty.to_str().unwrap();
    fails_with(&["--weights", weights, "--data", empty, "exercise", "21.21"], "has 0 documents");
    fails_with(&["--weights", weights, "--data", empty, "exercise", "21.23"], "the paragraph is empty");
    fails_with(&["--weights", weights, "--data", empty, "exercise", "21.24"], "at least two tokens");
    fails_with(&["--out-dir", out, "pretrain", "--steps", "0"], "must be positive");
}

/// Every command's flags and defaults, as `--help` prints them, equal the committed snapshot.
#[test]
fn help_is_unchanged() {
    shared::reference::assert_help_unchanged(env!("CARGO_BIN_EXE_ch21-advanced"), env!("CARGO_MANIFEST_DIR"));
}
