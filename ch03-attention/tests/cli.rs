//! The binary's commands and errors.

use std::process::{Command, Output};

fn ch03(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ch03-attention")).args(args).output().expect("the binary runs")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn exercise_3_1_json_shows_identical_outputs() {
    let value = json(&ch03(&["exercise", "3.1", "--json"]));
    assert_eq!(value["identical"], true);
    assert_eq!(value["v1_output_after"], value["v2_output"]);
}

#[test]
fn exercise_3_3_json_shows_the_parameter_count() {
    let value = json(&ch03(&["--device", "cpu", "exercise", "3.3", "--json"]));
    assert_eq!(value["total_parameters"], 2_360_064);
}

#[test]
fn walkthrough_and_bench_run() {
    let output = ch03(&[]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("context_vecs.shape: [2, 6, 2]"));
    let table = json(&ch03(&[
        "bench",
        "--batch",
        "1",
        "--tokens",
        "4",
        "--emb-dim",
        "8",
        "--heads",
        "2",
        "--repeats",
        "1",
        "--json",
    ]));
    assert_eq!(table["rows"].as_array().unwrap().len(), 10);
}

#[test]
fn bad_input_is_a_clear_error() {
    let output = ch03(&["exercise", "3.9"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("unknown exercise id '3.9'; this chapter has: 3.1, 3.2, 3.3")
    );
    let output = ch03(&["bench", "--emb-dim", "10", "--heads", "3"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("divisible"));
}

#[test]
fn bench_with_impossible_sizes_is_a_clear_error() {
    for (flags, needle) in [
        (&["--heads", "0"][..], "emb-dim and heads must be positive"),
        (&["--emb-dim", "0"][..], "emb-dim and heads must be positive"),
        (&["--heads", "5"][..], "emb_dim must be divisible by heads"),
        (&["--tokens", "4000000000"][..], "do not fit in the memory this process can allocate"),
    ] {
        let output = ch03(&[&["--device", "cpu", "bench"][..], flags].concat());
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && message.starts_with("error: ") && message.contains(needle),
            "{flags:?}: {message}"
        );
    }
}

/// Every command's flags and defaults, as `--help` prints them, equal the committed snapshot.
#[test]
fn help_is_unchanged() {
    shared::reference::assert_help_unchanged(env!("CARGO_BIN_EXE_ch03-attention"), env!("CARGO_MANIFEST_DIR"));
}
