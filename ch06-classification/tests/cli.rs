//! The binary's commands and its errors for bad input.

use std::process::{Command, Output};

fn ch06(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ch06-classification"))
        .args(["--device", "cpu"])
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", std::env::temp_dir().join("ch06-cli-empty-hub-cache"))
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn fails_with(args: &[&str], needle: &str) {
    let output = ch06(args);
    let message = stderr(&output);
    assert!(!output.status.success(), "{args:?} succeeded");
    assert!(message.contains("error: ") && message.contains(needle), "{args:?}: {message}");
}

/// A small model's config (1 layer of width 32) with `context_length`, saved in `dir`.
fn small_config(dir: &std::path::Path, context_length: i64) -> String {
    let path = dir.join("small.json");
    shared::model::GptConfig {
        context_length,
        emb_dim: 32,
        n_heads: 4,
        n_layers: 1,
        ..shared::model::GptConfig::gpt2_small()
    }
    .save(&path)
    .unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn fine_tune_then_classify_and_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path(), 128);
    let out = dir.path().join("run");
    let (out, config) = (out.to_str().unwrap(), config.as_str());
    let output =
        ch06(&["--out-dir", out, "--init", "random", "--config", config, "--trainable", "all", "--epochs", "1"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("1045 training, 149 validation and 300 test messages"), "{stdout}");
    assert!(stdout.contains("Test accuracy: "), "{stdout}");
    let checkpoint = format!("{out}/classifier");
    let output = ch06(&["classify", "--checkpoint", &checkpoint, "Free entry! Win a prize", "See you at lunch"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 2);
    assert!(stdout.lines().all(|l| l.starts_with("spam (") || l.starts_with("not spam (")), "{stdout}");
    let output = ch06(&["eval", "--checkpoint", &checkpoint]);
    assert!(output.status.success(), "{}", stderr(&output));
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{out}/metrics.json")).unwrap()).unwrap();
    let test = metrics["accuracies"]["test"].as_f64().unwrap();
    assert!(String::from_utf8(output.stdout).unwrap().contains(&format!("Test accuracy: {:.2}%", test * 100.0)));
    fails_with(
        &["--out-dir", out, "--init", "random", "--config", config, "--max-length", "200"],
        "more than the model's context length of 128",
    );
    // Checked before anything is padded: this length once asked for 800 GB and aborted.
    fails_with(
        &["--out-dir", out, "--init", "random", "--config", config, "--max-length", "99999999999"],
        "a padded length of 99999999999 tokens is more than the model's context length of 128",
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    fails_with(&["--out-dir", out], "OpenAI's GPT-2 weights (gpt2-small) are needed for this --init");
    fails_with(&["--out-dir", out], "--init random");
    fails_with(&["--out-dir", out, "--init", "checkpoint"], "--init checkpoint needs --checkpoint FILE");
    fails_with(&["--out-dir", out, "--init", "random", "--config", "gpt2-huge"], "unknown model preset");
    fails_with(&["classify", "--checkpoint", "/no/such/classifier", "text"], "is missing");
    fails_with(&["exercise", "6.9"], "unknown exercise id '6.9'");
    let output = ch06(&["--init", "bogus"]);
    assert!(!output.status.success() && stderr(&output).contains("bogus"));
}

/// Exercises 6.1-6.3 start from the run's flags: on a small random model with 40 messages per
/// split they run in seconds, and each changes only its own setting.
#[test]
fn exercises_take_the_run_flags() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path(), 96);
    let config = config.as_str();
    let metrics = |out: &std::path::Path, run: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(run).join("metrics.json")).unwrap()).unwrap()
    };
    for (id, field, main, variant) in [
        ("6.1", "/loaders/max_length", serde_json::json!(87), serde_json::json!(96)),
        ("6.2", "/options/trainable", serde_json::json!("LastBlock"), serde_json::json!("All")),
        ("6.3", "/options/position", serde_json::json!("Last"), serde_json::json!("First")),
    ] {
        let out = dir.path().join(id);
        let flags = ["--init", "random", "--config", config, "--limit", "40", "--epochs", "1"];
        let output = ch06(&[&["--out-dir", out.to_str().unwrap()][..], &flags, &["exercise", id, "--json"]].concat());
        assert!(output.status.success(), "{id}: {}", stderr(&output));
        let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(result["main"]["test"].is_number() && result["changed"]["test"].is_number(), "{result}");
        let (main_run, variant_run) = (metrics(&out, "main"), metrics(&out, "variant"));
        assert_eq!((main_run.pointer(field), variant_run.pointer(field)), (Some(&main), Some(&variant)), "{id}");
        for run in [&main_run, &variant_run] {
            assert_eq!(run["options"]["limit"], 40);
            assert_eq!(run["options"]["init"]["Random"], config);
            assert_eq!(run["loaders"]["test_batches"], 5, "40 test messages in batches of 8");
            assert_eq!(run["accuracies"]["test"], result[if run == &main_run { "main" } else { "changed" }]["test"]);
        }
    }
}

/// Every command's flags and defaults, as `--help` prints them, equal the committed snapshot.
#[test]
fn help_is_unchanged() {
    shared::reference::assert_help_unchanged(env!("CARGO_BIN_EXE_ch06-classification"), env!("CARGO_MANIFEST_DIR"));
}
