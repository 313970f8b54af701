//! The binary's commands and errors.

use std::process::Command;

fn appendix_a(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_appendix-a")).args(args).output().expect("the binary runs")
}

#[test]
fn exercise_a1_json_shows_752() {
    let output = appendix_a(&["exercise", "A.1", "--json"]);
    assert!(output.status.success());
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["counted"], 752);
    assert_eq!(value["by_formula"], 752);
}

#[test]
fn walkthrough_writes_the_model_to_out_dir() {
    let dir = std::env::temp_dir().join(format!("appendix-a-cli-{}", std::process::id()));
    let output = appendix_a(&["--out-dir", dir.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Train Loss: 0.75"));
    assert!(dir.join("model.safetensors").is_file());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unknown_exercise_is_a_clear_error() {
    let output = appendix_a(&["exercise", "A.9"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "error: unknown exercise id 'A.9'; this chapter has: A.1, A.2, A.3, A.4"
    );
}

/// Every command's flags and defaults, as `--help` prints them, equal the committed snapshot.
#[test]
fn help_is_unchanged() {
    shared::reference::assert_help_unchanged(env!("CARGO_BIN_EXE_appendix-a"), env!("CARGO_MANIFEST_DIR"));
}
