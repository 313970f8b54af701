//! Faults a real run survives: a training process killed with SIGKILL midway leaves its last
//! checkpoint intact, and resuming from it finishes exactly as an uninterrupted run; an
//! output folder that cannot be written is refused before training, with its path.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ch05_pretraining::exercises::ex5_4::same_tensors;
use serde_json::Value;
use shared::gpt::GptConfig;
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

#[test]
fn a_run_killed_midway_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.json");
    GptConfig { context_length: 32, emb_dim: 32, n_heads: 4, n_layers: 2, ..GptConfig::gpt2_small() }
        .save(&config)
        .unwrap();
    let text = dir.path().join("verdict-start.txt");
    let verdict = std::fs::read_to_string(shared::data::bundled_dir().join("the-verdict.txt")).unwrap();
    std::fs::write(&text, verdict.chars().take(4000).collect::<String>()).unwrap();
    let epochs = EPOCHS.to_string();
    let fresh = ["--epochs", &epochs, "--no-initial-losses", "--epoch-seed", "7", "--config"];
    let fresh = [&fresh[..], &[config.to_str().unwrap()]].concat();

    let whole = dir.path().join("whole");
    succeeded(train_command(&text, &whole, &fresh).output().unwrap());

    // The same run, killed with SIGKILL while it trains the epoch after its second checkpoint.
    let killed = dir.path().join("killed");
    let mut child = train_command(&text, &killed, &fresh).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    while saved_epoch(&killed).is_none_or(|epoch| epoch < 2) {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(start.elapsed() < Duration::from_secs(300), "no checkpoint after 5 minutes");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
    child.kill().unwrap(); // SIGKILL: no handler runs, nothing is flushed
    child.wait().unwrap();

    // What is on disk is one complete checkpoint: its metadata reads and its tensors load.
    let checkpoint = Checkpoint::at(&killed.join("checkpoint"));
    let meta = checkpoint.read_meta().unwrap();
    assert!((2..EPOCHS).contains(&meta.epoch), "killed after epoch {}", meta.epoch);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _model = shared::gpt::GptModel::new(&vs.root(), &meta.config).unwrap();
    checkpoint.load_model(&vs).unwrap();

    // Resuming for the remaining epochs gives the uninterrupted run's losses, samples,
    // weights and optimizer state.
    let resumed = dir.path().join("resumed");
    let remaining = (EPOCHS - meta.epoch).to_string();
    let resume = checkpoint.model.to_string_lossy().into_owned();
    succeeded(train_command(&text, &resumed, &["--epochs", &remaining, "--resume", &resume]).output().unwrap());
    let (whole_metrics, resumed_metrics) = (metrics(&whole), metrics(&resumed));
    let after_kill: Vec<&Value> = whole_metrics["history"]["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["step"].as_i64().unwrap() > meta.global_step)
        .collect();
    let resumed_evaluations: Vec<&Value> =
        resumed_metrics["history"]["evaluations"].as_array().unwrap().iter().collect();
    assert!(!after_kill.is_empty());
    assert_eq!(resumed_evaluations, after_kill, "the resumed run's losses differ from the uninterrupted run's");
    let whole_samples = whole_metrics["history"]["samples"].as_array().unwrap();
    assert_eq!(resumed_metrics["history"]["samples"].as_array().unwrap()[..], whole_samples[meta.epoch..]);
    let (a, b) = (Checkpoint::at(&whole.join("checkpoint")), Checkpoint::at(&resumed.join("checkpoint")));
    assert!(same_tensors(&a.model, &b.model).unwrap(), "final weights differ");
    assert!(same_tensors(&a.optimizer, &b.optimizer).unwrap(), "final optimizer state differs");
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
