//! Faults a real run survives: a training process killed with SIGKILL midway leaves its last
//! checkpoint intact, and resuming from it finishes exactly as an uninterrupted run; an
//! output folder that cannot be written is refused before training, with its path.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ch05_pretraining::exercises::ex5_4::same_tensors;
use serde_json::Value;
use shared::model::GptConfig;
use shared::train::Checkpoint;

const EPOCHS: usize = 4;

/// The run under test: a small model on the first 4,000 characters of The Verdict
/// (`text`), 7 batches of 4 x 32 tokens per epoch, so that an epoch takes a moment.
fn train_command(text: &Path, out_dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ch05-pretraining"));
    command
        .args(["--device", "cpu", "--data"])
        .arg(text)
        .args(["train", "--batch-size", "4", "--eval-freq", "3", "--eval-iter", "1"])
        .arg("--out-dir")
        .arg(out_dir)
        .args(extra);
    command
}

fn succeeded(output: Output) -> Output {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn metrics(out_dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out_dir.join("metrics.json")).unwrap()).unwrap()
}

fn saved_epoch(out_dir: &Path) -> Option<usize> {
    let meta = Checkpoint::at(&out_dir.join("checkpoint")).read_meta().ok()?;
    Some(meta.epoch)
}

/// A small model's config and the first 4,000 characters of The Verdict, in `dir`.
fn small_run(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let config = dir.join("small.json");
    GptConfig { context_length: 32, emb_dim: 32, n_heads: 4, n_layers: 2, ..GptConfig::gpt2_small() }
        .save(&config)
        .unwrap();
    let text = dir.join("verdict-start.txt");
    let verdict = std::fs::read_to_string(shared::data::bundled_dir().join("the-verdict.txt")).unwrap();
    std::fs::write(&text, verdict.chars().take(4000).collect::<String>()).unwrap();
    (config, text)
}

/// Where the killed run is when SIGKILL reaches it.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// Training the epoch after its second checkpoint.
    Training,
    /// Saving its second checkpoint, after the first of the renames that replace the files
    /// (the save pauses there for the test).
    InRenames,
}

#[test]
fn a_run_killed_midway_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let (config, text) = small_run(dir.path());
    let epochs = EPOCHS.to_string();
    let fresh = ["--epochs", &epochs, "--no-initial-losses", "--epoch-seed", "7", "--config"];
    let fresh = [&fresh[..], &[config.to_str().unwrap()]].concat();
    let whole = dir.path().join("whole");
    succeeded(train_command(&text, &whole, &fresh).output().unwrap());
    for kill in [Kill::Training, Kill::InRenames] {
        killed_and_resumed(dir.path(), &text, &fresh, &whole, kill);
    }
}

fn killed_and_resumed(dir: &Path, text: &Path, fresh: &[&str], whole: &Path, kill: Kill) {
    let killed = dir.join(format!("killed-{kill:?}"));
    let mut command = train_command(text, &killed, fresh);
    if let Kill::InRenames = kill {
        command.env(shared::train::PAUSE_IN_RENAMES_VAR, "2");
    }
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    let paused = killed.join("checkpoint.paused");
    let ready = || match kill {
        Kill::Training => saved_epoch(&killed).is_some_and(|epoch| epoch >= 2),
        Kill::InRenames => paused.exists(),
    };
    while !ready() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(start.elapsed() < Duration::from_secs(300), "no checkpoint after 5 minutes");
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Kill::Training = kill {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
    child.kill().unwrap(); // SIGKILL: no handler runs, nothing is flushed
    child.wait().unwrap();

    // What is on disk is one complete checkpoint: its metadata reads and its tensors load.
    // Killed inside the renames, the epoch-2 weights are in place next to the epoch-1
    // metadata and optimizer state until the reader finishes the save from its journal.
    let checkpoint = Checkpoint::at(&killed.join("checkpoint"));
    if let Kill::InRenames = kill {
        assert!(killed.join("checkpoint.commit").exists(), "{kill:?}: killed before the commit point");
    }
    let meta = checkpoint.read_meta().unwrap();
    assert!(!killed.join("checkpoint.commit").exists(), "{kill:?}: the save was not finished");
    match kill {
        Kill::Training => assert!((2..EPOCHS).contains(&meta.epoch), "killed after epoch {}", meta.epoch),
        Kill::InRenames => assert_eq!(meta.epoch, 2),
    }
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _model = shared::model::GptModel::new(&vs.root(), &meta.config).unwrap();
    checkpoint.load_model(&vs).unwrap();

    // Resuming for the remaining epochs gives the uninterrupted run's losses, samples,
    // weights and optimizer state.
    let resumed = dir.join(format!("resumed-{kill:?}"));
    let remaining = (EPOCHS - meta.epoch).to_string();
    let resume = checkpoint.model.to_string_lossy().into_owned();
    succeeded(train_command(text, &resumed, &["--epochs", &remaining, "--resume", &resume]).output().unwrap());
    let (whole_metrics, resumed_metrics) = (metrics(whole), metrics(&resumed));
    let after_kill: Vec<&Value> = whole_metrics["history"]["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["step"].as_i64().unwrap() > meta.global_step)
        .collect();
    let resumed_evaluations: Vec<&Value> =
        resumed_metrics["history"]["evaluations"].as_array().unwrap().iter().collect();
    assert!(!after_kill.is_empty());
    assert_eq!(
        resumed_evaluations, after_kill,
        "{kill:?}: the resumed run's losses differ from the uninterrupted run's"
    );
    let whole_samples = whole_metrics["history"]["samples"].as_array().unwrap();
    assert_eq!(resumed_metrics["history"]["samples"].as_array().unwrap()[..], whole_samples[meta.epoch..]);
    let (a, b) = (Checkpoint::at(&whole.join("checkpoint")), Checkpoint::at(&resumed.join("checkpoint")));
    assert!(same_tensors(&a.model, &b.model).unwrap(), "{kill:?}: final weights differ");
    assert!(same_tensors(&a.optimizer, &b.optimizer).unwrap(), "{kill:?}: final optimizer state differs");
    let leftovers: Vec<_> = std::fs::read_dir(&resumed)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".partial") || name.ends_with(".commit"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The checkpoint's three files, byte for byte.
fn checkpoint_bytes(out_dir: &Path) -> Vec<Vec<u8>> {
    let checkpoint = Checkpoint::at(&out_dir.join("checkpoint"));
    [checkpoint.model, checkpoint.optimizer, checkpoint.meta].iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// A run that diverges stops with an error at the first non-finite loss and keeps the last
/// finite checkpoint; a checkpoint whose counters cannot go on is refused before training,
/// and nothing claims a file was written.
#[test]
fn divergence_and_overflowing_counters_stop_with_the_last_checkpoint_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (config, text) = small_run(dir.path());
    let out = dir.path().join("run");
    let config = config.to_str().unwrap();
    succeeded(
        train_command(&text, &out, &["--epochs", "1", "--no-initial-losses", "--config", config]).output().unwrap(),
    );
    let saved = checkpoint_bytes(&out);
    let resume = out.join("checkpoint.safetensors").to_string_lossy().into_owned();
    let fails = |extra: &[&str], needle: &str| {
        let output = train_command(&text, &out, extra).output().unwrap();
        let message = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{extra:?}: {message}");
        assert!(message.starts_with("error: ") && message.contains(needle), "{extra:?}: {message}");
        assert!(!String::from_utf8_lossy(&output.stdout).contains("Wrote"), "{extra:?}");
        assert!(checkpoint_bytes(&out) == saved, "{extra:?}: the checkpoint changed");
    };
    fails(&["--epochs", "2", "--resume", &resume, "--lr", "1e10"], "training diverged");

    let meta_path = out.join("checkpoint.json");
    let meta: Value = serde_json::from_slice(&saved[2]).unwrap();
    let with = |field: &str, value: Value| {
        let mut edited = meta.clone();
        edited[field] = value;
        std::fs::write(&meta_path, serde_json::to_string(&edited).unwrap()).unwrap();
        let mut files = saved.clone();
        files[2] = std::fs::read(&meta_path).unwrap();
        files
    };
    for (field, value, needle) in [
        ("epoch", Value::from(u64::MAX), "the count overflows"),
        ("global_step", Value::from(i64::MAX), "the step count overflows"),
        ("tokens_seen", Value::from(i64::MAX), "the count of tokens seen overflows"),
        ("global_step", Value::from(-5), "a run starts at step -1"),
    ] {
        let edited = with(field, value);
        let output = train_command(&text, &out, &["--epochs", "1", "--resume", &resume]).output().unwrap();
        let message = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{field}: {message}");
        assert!(message.contains(needle), "{field}: {message}");
        assert!(!String::from_utf8_lossy(&output.stdout).contains("Wrote"), "{field}");
        assert!(checkpoint_bytes(&out) == edited, "{field}: the checkpoint changed");
    }
}

#[test]
fn an_output_folder_that_cannot_be_written_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    // A path below a regular file can never be created, whoever runs the test.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let out_dir = file.join("run");
    let output = Command::new(env!("CARGO_BIN_EXE_ch05-pretraining"))
        .args(["--device", "cpu", "--out-dir"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(message.starts_with("error: cannot create the output folder"), "{message}");
    assert!(message.contains(&out_dir.display().to_string()), "{message}");
    // Refused before the book's run starts: no loss was computed and nothing was printed.
    assert!(output.stdout.is_empty(), "{}", String::from_utf8_lossy(&output.stdout));
}
