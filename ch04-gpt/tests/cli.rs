//! The binary's commands and errors.

use std::process::{Command, Output};

fn ch04(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ch04-gpt")).args(args).output().expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn tiny_config(context_length: i64) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ch04-cli-{}-{context_length}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.json");
    let config = shared::model::GptConfig { context_length, ..shared::model::GptConfig::tiny() };
    config.save(&path).unwrap();
    path
}

#[test]
fn exercise_4_2_json_prints_the_four_presets() {
    let output = ch04(&["exercise", "4.2", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["models"][3]["total_parameters"], 1_637_792_000i64);
    assert_eq!(value["models"][3]["with_weight_tying"], 1_557_380_800i64);
    assert_eq!(value["models"][3]["size_mb"], 6247.68);
}

#[test]
fn generate_with_and_without_the_cache_agree() {
    let config = tiny_config(16);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--device",
            "cpu",
            "generate",
            "--config",
            config.to_str().unwrap(),
            "--max-new-tokens",
            "20",
            "--ids",
        ];
        args.extend_from_slice(extra);
        let output = ch04(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).lines().last().unwrap().to_string()
    };
    let (plain, cached) = (run(&[]), run(&["--kv-cache"]));
    assert_eq!(plain, cached);
    let ids: Vec<i64> = serde_json::from_str(&plain).unwrap();
    assert_eq!(ids.len(), 4 + 20);
}

#[test]
fn bad_input_is_a_clear_error() {
    let config = tiny_config(4);
    let long = ch04(&["generate", "--config", config.to_str().unwrap(), "--prompt", "one two three four five six"]);
    assert_eq!(long.status.code(), Some(1));
    assert!(stderr(&long).contains("more than the model's context length of 4"), "{}", stderr(&long));
    let empty = ch04(&["generate", "--config", config.to_str().unwrap(), "--prompt", ""]);
    assert!(stderr(&empty).contains("no tokens"), "{}", stderr(&empty));
    let preset = ch04(&["generate", "--config", "gpt5"]);
    assert!(stderr(&preset).contains("neither a preset nor a config file"), "{}", stderr(&preset));
    let unknown = ch04(&["exercise", "4.9"]);
    assert!(stderr(&unknown).contains("this chapter has: 4.1, 4.2, 4.3"));
}

#[test]
fn bench_generate_reports_both_decodings() {
    let config = tiny_config(16);
    let output =
        ch04(&["--device", "cpu", "bench-generate", "--config", config.to_str().unwrap(), "--max-new-tokens", "8"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("| float32 |") && text.contains("| bfloat16 |"), "{text}");
    assert_eq!(text.matches("| true |").count(), 2, "{text}");
}

/// Every command's flags and defaults, as `--help` prints them, equal the committed snapshot.
#[test]
fn help_is_unchanged() {
    shared::reference::assert_help_unchanged(env!("CARGO_BIN_EXE_ch04-gpt"), env!("CARGO_MANIFEST_DIR"));
}
