//! The binary's commands and its errors for bad input.

use std::process::{Command, Output};

fn ch05(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ch05-pretraining")).arg("--device").arg("cpu").args(args).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn fails_with(args: &[&str], needle: &str) {
    let output = ch05(args);
    let message = stderr(&output);
    assert!(!output.status.success(), "{args:?} succeeded");
    assert!(message.starts_with("error: ") && message.contains(needle), "{args:?}: {message}");
}

fn fixture(name: &str) -> String {
    shared::workspace_root().join("shared/tests/fixtures").join(name).to_string_lossy().into_owned()
}

#[test]
fn exercise_5_1_json_prints_the_counts_per_temperature() {
    let output = ch05(&["exercise", "5.1", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let runs = value["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0]["counts"][3]["word"], "forward");
    assert_eq!(runs[0]["counts"][3]["count"], 582);
    assert_eq!(runs[2]["pizza_count"], 32);
}

#[test]
fn generate_from_gpt2_weights_prints_text_and_ids() {
    let weights = fixture("gpt2-tiny-hf");
    let output =
        ch05(&["generate", "--weights", &weights, "--prompt", "Hello, I am", "--max-new-tokens", "3", "--ids"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.last().unwrap(), &"[15496,11,314,716,49764,49764,49764]");
    // top-k 1 with a temperature is still the greedy continuation.
    let output = ch05(&[
        "generate",
        "--weights",
        &weights,
        "--prompt",
        "Hello, I am",
        "--max-new-tokens",
        "3",
        "--ids",
        "--temperature",
        "2",
        "--top-k",
        "1",
        "--seed",
        "9",
    ]);
    assert!(String::from_utf8(output.stdout).unwrap().ends_with("[15496,11,314,716,49764,49764,49764]\n"));
    // An end-of-text id that is drawn stops the generation before it.
    let output = ch05(&[
        "generate",
        "--weights",
        &weights,
        "--prompt",
        "Hello, I am",
        "--max-new-tokens",
        "3",
        "--ids",
        "--eos-id",
        "49764",
    ]);
    assert!(String::from_utf8(output.stdout).unwrap().ends_with("[15496,11,314,716]\n"));
    // Beam search: one beam is the greedy continuation; four search further.
    let beams = |width: &str| -> String {
        let args = ["generate", "--weights", &weights, "--prompt", "Hello, I am", "--max-new-tokens", "3", "--ids"];
        let output = ch05(&[&args[..], &["--beams", width]].concat());
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8(output.stdout).unwrap()
    };
    assert!(beams("1").ends_with("[15496,11,314,716,49764,49764,49764]\n"));
    assert!(beams("4").contains("[15496,11,314,716,"));
    fails_with(&["generate", "--weights", &weights, "--beams", "2", "--temperature", "1"], "--beams searches");
}

#[test]
fn eval_prints_loss_and_perplexity() {
    let weights = fixture("gpt2-tiny-hf");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(std::path::Path::new(&weights).join("expected.json")).unwrap())
            .unwrap();
    let output = ch05(&["eval", "--weights", &weights, "--context-length", "32"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let train = expected["verdict_losses"]["train"].as_f64().unwrap();
    assert!(stdout.contains(&format!("Training loss:   {train:.4} (perplexity {:.1}", train.exp())), "{stdout}");
    // A file of one's own is evaluated whole.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("text.txt");
    std::fs::write(&file, "Every effort moves you. ".repeat(40)).unwrap();
    let output = ch05(&["--data", file.to_str().unwrap(), "eval", "--weights", &weights, "--context-length", "32"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8(output.stdout).unwrap().contains("Loss: "));
    fails_with(&["eval", "--weights", &weights, "--context-length", "64"], "more than the model's 32");
}

#[test]
fn book_state_dicts_load_with_checkpoint() {
    let pth = fixture("book-tiny.pth");
    // Width 32 matches no GPT-2 preset, so the number of heads cannot be inferred ...
    fails_with(&["generate", "--checkpoint", &pth], "pass --config");
    // ... and comes from --config, which must match the file.
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("book-tiny.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("book-tiny-config.json");
    std::fs::write(&config, reference["config"].to_string()).unwrap();
    let config = config.to_str().unwrap();
    // The PyTorch logits of the fixture's prompt give the next token.
    let last = reference["logits"].as_array().unwrap().last().unwrap().as_array().unwrap();
    let argmax = (0..last.len()).max_by(|&a, &b| last[a].as_f64().unwrap().total_cmp(&last[b].as_f64().unwrap()));
    let output = ch05(&[
        "generate",
        "--checkpoint",
        &pth,
        "--config",
        config,
        "--prompt",
        reference["text"].as_str().unwrap(),
        "--max-new-tokens",
        "1",
        "--ids",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut ids: Vec<i64> = serde_json::from_value(reference["ids"].clone()).unwrap();
    ids.push(argmax.unwrap() as i64);
    assert!(stdout.ends_with(&format!("{}\n", serde_json::to_string(&ids).unwrap())), "{stdout}");
    fails_with(&["generate", "--checkpoint", &pth, "--config", "gpt2-small"], "does not match --config");
}

#[test]
fn bad_input_is_a_clear_error() {
    let weights = fixture("gpt2-tiny-hf");
    let long_prompt = "word ".repeat(40);
    fails_with(&["generate", "--checkpoint", "/no/such/checkpoint.safetensors"], "does not exist");
    fails_with(
        &["generate", "--weights", &weights, "--prompt", &long_prompt],
        "more than the model's context length of 32",
    );
    fails_with(&["generate", "--config", "gpt2-huge"], "unknown model preset 'gpt2-huge'");
    fails_with(
        &["generate", "--config", "gpt2-small", "--temperature", "-1"],
        "temperature must be 0 (greedy) or positive",
    );
    fails_with(&["generate", "--config", "gpt2-small", "--top-k", "0"], "top-k must be at least 1");
    fails_with(&["exercise", "5.9"], "unknown exercise id '5.9'");
    fails_with(&["train", "--config", "gpt2-huge"], "unknown model preset");
    fails_with(&["train", "--lr", "-1", "--no-initial-losses"], "learning rate must be positive");
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, b"garbage").unwrap();
    fails_with(&["generate", "--checkpoint", corrupt.to_str().unwrap()], "not a valid safetensors file");
    let output = ch05(&["--bogus-flag"]);
    assert!(!output.status.success() && stderr(&output).contains("--bogus-flag"));
    // A huge --max-new-tokens is refused with the limit, not an allocation failure.
    fails_with(
        &["generate", "--weights", &weights, "--max-new-tokens", &i64::MAX.to_string()],
        "max_new_tokens must be between 0 and 2097152",
    );
    // A vocabulary smaller than GPT-2's cannot read The Verdict's token ids: training and
    // evaluation say so before the first forward pass.
    let small = dir.path().join("small-vocab.json");
    shared::model::GptConfig { vocab_size: 1000, context_length: 32, ..shared::model::GptConfig::tiny() }
        .save(&small)
        .unwrap();
    let small = small.to_str().unwrap();
    let out = dir.path().join("run");
    let out = out.to_str().unwrap();
    fails_with(&["--out-dir", out, "train", "--config", small], "outside the model's vocabulary of 1000 ids");
    fails_with(
        &["--out-dir", out, "train", "--config", small, "--no-initial-losses"],
        "outside the model's vocabulary of 1000 ids",
    );
    fails_with(&["eval", "--config", small, "--context-length", "32"], "outside the model's vocabulary of 1000 ids");
    // Sizes that cannot fit are refused with the number.
    let huge = dir.path().join("huge.json");
    std::fs::write(
        &huge,
        r#"{"vocab_size": 50257, "context_length": 4000000, "emb_dim": 32, "n_heads": 4, "n_layers": 2, "drop_rate": 0.1, "qkv_bias": false}"#,
    )
    .unwrap();
    fails_with(&["generate", "--config", huge.to_str().unwrap()], "context_length is 4000000, more than the largest");
    // --data names what it is when it is not a file (it used to "not exist").
    let folder = dir.path().to_str().unwrap();
    fails_with(&["--data", "/dev/zero", "--out-dir", out, "train", "--config", small], "/dev/zero is a device");
    fails_with(&["--data", folder, "eval", "--weights", &weights], "is a folder, not a regular file");
}

/// A 9.2 GB model under a 3 GB address-space limit (`ulimit -v`) is refused before
/// anything is allocated; it used to panic inside tch (and hang with RUST_BACKTRACE=1).
#[test]
fn a_model_beyond_the_address_space_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("big.json");
    let big = shared::model::GptConfig {
        context_length: 1024,
        emb_dim: 2560,
        n_heads: 20,
        n_layers: 26,
        ..shared::model::GptConfig::gpt2_small()
    };
    assert!(big.memory_bytes() > 8_000_000_000);
    big.save(&config).unwrap();
    let output = Command::new("sh")
        .args(["-c", "ulimit -v 3000000 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_ch05-pretraining"))
        .args(["--device", "cpu", "generate", "--max-new-tokens", "1", "--config"])
        .arg(&config)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    let needs = format!("error: this model needs {:.1} GB", big.memory_bytes() as f64 / 1e9);
    assert!(message.starts_with(&needs), "{message}");
    assert!(message.contains("(the bound: the address-space limit, ulimit -v)"), "{message}");
}

#[test]
fn exercise_5_5_offline_without_weights_is_the_clear_weights_error() {
    let cache = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ch05-pretraining"))
        .args(["--device", "cpu", "exercise", "5.5"])
        .env("HF_HUB_CACHE", cache.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let message = stderr(&output);
    assert!(!output.status.success());
    assert!(message.contains("openai-community/gpt2/config.json is not in the Hugging Face cache"), "{message}");
    assert!(message.contains("--weights"), "{message}");
}

#[test]
fn resuming_with_another_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let config = dir.path().join("tiny.json");
    let tiny = shared::model::GptConfig { context_length: 32, ..shared::model::GptConfig::tiny() };
    tiny.save(&config).unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec!["--out-dir", out, "train", "--epochs", "1", "--eval-freq", "50", "--no-initial-losses"];
        args.extend_from_slice(extra);
        ch05(&args)
    };
    let output = train(&["--config", config.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let checkpoint = dir.path().join("checkpoint.safetensors");
    assert!(
        checkpoint.is_file() && dir.path().join("losses.png").is_file() && dir.path().join("metrics.json").is_file()
    );
    let resume = checkpoint.to_str().unwrap();
    let output = train(&["--resume", resume, "--context-length", "16"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("was trained with the model config"), "{}", stderr(&output));
    let output = train(&["--resume", resume]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Resuming"));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("checkpoint.json")).unwrap()).unwrap();
    assert_eq!(meta["epoch"], 2);
    // The checkpoint generates, with its own config.
    let output = ch05(&["generate", "--checkpoint", resume, "--max-new-tokens", "2"]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn check_run_compares_metrics_with_the_pytorch_reference() {
    let reference: serde_json::Value = serde_json::from_str(ch05_pretraining::check_run::REFERENCE).unwrap();
    // A metrics.json with the reference's numbers, in the layout the run writes.
    let metrics = serde_json::json!({
        "config": reference["config"],
        "initial_train_loss": reference["initial_train_loss"],
        "initial_val_loss": reference["initial_val_loss"],
        "history": {"evaluations": reference["evaluations"], "samples": reference["samples"]},
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.json");
    std::fs::write(&path, metrics.to_string()).unwrap();
    let output = ch05(&["check-run", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("Losses: 38 of 38 within 1e-5") && stdout.contains("Samples: 10 of 10 identical"),
        "{stdout}"
    );
    // The default is metrics.json in the output folder; a loss that moved fails the check.
    let mut moved = metrics.clone();
    moved["history"]["evaluations"][17]["train_loss"] = serde_json::json!(0.5);
    std::fs::write(&path, moved.to_string()).unwrap();
    let output = ch05(&["--out-dir", dir.path().to_str().unwrap(), "check-run"]);
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(stdout.contains("37 of 38") && stdout.contains("training loss at step 85"), "{stdout}");
    assert!(stderr(&output).contains("differs from the PyTorch reference"));
    fails_with(&["check-run", "/no/such/metrics.json"], "cannot read /no/such/metrics.json");
    // Against another reference (a GPU run's, say) with a looser tolerance: the moved loss
    // is that reference's own, and everything else lies within 1e-3.
    let mut gpu = reference.clone();
    gpu["evaluations"][17]["train_loss"] = serde_json::json!(0.5);
    gpu["evaluations"][3]["val_loss"] = serde_json::json!(gpu["evaluations"][3]["val_loss"].as_f64().unwrap() + 5e-4);
    let gpu_path = dir.path().join("pytorch-cuda.json");
    std::fs::write(&gpu_path, gpu.to_string()).unwrap();
    let with = |tolerance: &str| {
        ch05(&[
            "check-run",
            path.to_str().unwrap(),
            "--reference",
            gpu_path.to_str().unwrap(),
            "--tolerance",
            tolerance,
        ])
    };
    assert!(with("1e-3").status.success(), "{}", stderr(&with("1e-3")));
    assert!(String::from_utf8_lossy(&with("1e-4").stdout).contains("37 of 38"));
    fails_with(&["check-run", "--reference", "/no/such/reference.json"], "reading /no/such/reference.json");
}

#[test]
fn generate_over_the_cache_with_top_p_and_a_repetition_penalty() {
    let weights = fixture("gpt2-tiny-hf");
    let run = |extra: &[&str]| {
        let mut args =
            vec!["generate", "--weights", &weights, "--prompt", "Hello, I am", "--max-new-tokens", "6", "--ids"];
        args.extend_from_slice(extra);
        let output = ch05(&args);
        assert!(output.status.success(), "{extra:?}: {}", stderr(&output));
        String::from_utf8(output.stdout).unwrap().lines().last().unwrap().to_string()
    };
    // Greedy decoding over the cache gives the book loop's tokens; so does a temperature
    // that underflows (logits / 1e-40 overflow: the limit of sampling is the argmax).
    assert_eq!(run(&["--cached"]), run(&[]));
    assert_eq!(run(&["--temperature", "1e-40"]), run(&[]));
    assert_eq!(run(&["--temperature", "1e-40", "--cached"]), run(&[]));
    // A repetition penalty breaks the greedy loop's repeats; sampling repeats under a seed.
    let penalised = run(&["--repetition-penalty", "10"]);
    assert_ne!(penalised, run(&[]));
    let sampled = ["--temperature", "1", "--top-p", "0.9", "--seed", "3"];
    assert_eq!(run(&sampled), run(&sampled));
    fails_with(&["generate", "--top-p", "1.5"], "top-p must be in (0, 1]");
    fails_with(&["generate", "--repetition-penalty", "0"], "repetition penalty must be positive");
}

/// Every command's flags and defaults, as `--help` prints them, equal the committed snapshot.
#[test]
fn help_is_unchanged() {
    shared::reference::assert_help_unchanged(env!("CARGO_BIN_EXE_ch05-pretraining"), env!("CARGO_MANIFEST_DIR"));
}

#[test]
fn generate_from_llama_qwen3_and_gemma3_weights_prints_transformers_greedy_ids() {
    for family in ["llama", "qwen3", "gemma3"] {
        let dir = fixture(&format!("hf/{family}"));
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/reference.json")).unwrap()).unwrap();
        let prompt = &reference["prompts"][0];
        let text = prompt["text"].as_str().unwrap();
        let output = ch05(&["generate", "--weights", &dir, "--prompt", text, "--max-new-tokens", "16", "--ids"]);
        assert!(output.status.success(), "{family}: {}", stderr(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let ids: Vec<i64> = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        let expected: Vec<i64> = prompt["ids"]
            .as_array()
            .unwrap()
            .iter()
            .chain(prompt["greedy"].as_array().unwrap())
            .map(|id| id.as_i64().unwrap())
            .collect();
        assert_eq!(ids, expected, "{family}: the prompt's ids, then 16 greedy ones");
    }
}
