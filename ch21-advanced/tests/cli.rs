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
    let output = ch21(&["list"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("21.8"));
}
