//! The binary's commands, flags and error handling.

use std::process::{Command, Output};

fn ch02(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ch02-tokenization")).args(args).output().expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn exercise_2_1_as_json() {
    let output = ch02(&["exercise", "2.1", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["ids"], serde_json::json!([33901, 86, 343, 86, 220, 959]));
    assert_eq!(json["decoded"], "Akwirw ier");
}

#[test]
fn exercise_2_2_as_json() {
    let output = ch02(&["exercise", "2.2", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["loaders"][0]["inputs"], serde_json::json!([[40, 367], [2885, 1464], [1807, 3619], [402, 271]]));
    assert_eq!(json["loaders"][1]["inputs"][3], serde_json::json!([402, 271, 10899, 2138, 257, 7026, 15632, 438]));
}

#[test]
fn list_shows_every_exercise() {
    let output = ch02(&["list"]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(text.starts_with("2.1 "), "{text}");
    assert!(text.contains("\n2.2 "), "{text}");
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_code() {
    let unknown = ch02(&["exercise", "7.7"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(stderr(&unknown).trim(), "error: unknown exercise id '7.7'; this chapter has: 2.1, 2.2");

    let missing = ch02(&["--data", "/definitely/not/here.txt"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("/definitely/not/here.txt does not exist"), "{}", stderr(&missing));

    let device = ch02(&["--device", "tpu", "list"]);
    assert!(!device.status.success());
    assert!(stderr(&device).contains("expected auto, cpu, cuda or cuda:N"));

    let vocab = ch02(&["bpe-train", "--vocab-size", "10"]);
    assert_eq!(vocab.status.code(), Some(1));
    assert!(stderr(&vocab).contains("at least 257"), "{}", stderr(&vocab));
    assert!(!stderr(&vocab).contains("panicked"));
}

#[test]
fn data_flag_runs_the_walkthrough_on_another_text() {
    let dir = tempfile_dir();
    let file = dir.join("story.txt");
    let text =
        "It was a dark and stormy night; the rain fell in torrents -- except at occasional intervals. ".repeat(20);
    std::fs::write(&file, &text).unwrap();
    let output = ch02(&["--data", file.to_str().unwrap(), "--device", "cpu"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains(&format!("Total number of characters: {}", text.chars().count())));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn too_short_a_text_is_an_error_not_a_panic() {
    let dir = tempfile_dir();
    let file = dir.join("short.txt");
    std::fs::write(&file, "Only a few words.").unwrap();
    let output = ch02(&["--data", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("at least 60 GPT-2 tokens"), "{}", stderr(&output));
}

fn tempfile_dir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ch02-cli-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every command's flags and defaults, as `--help` prints them, equal the committed snapshot.
#[test]
fn help_is_unchanged() {
    shared::reference::assert_help_unchanged(env!("CARGO_BIN_EXE_ch02-tokenization"), env!("CARGO_MANIFEST_DIR"));
}
