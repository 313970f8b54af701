//! Data parallelism over c10d with Gloo, in real processes on this machine: two ranks end
//! with identical weights, equal to one process training on the global batch; a rank that
//! dies or never comes makes the others stop with an error within the timeout.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use appendix_a::ddp::{rank_weights, train_single_process, DdpOptions};
use appendix_a::mlp::NeuralNetwork;
use shared::core::device::global_rng_lock;
use shared::train::distributed::Backend;
use tch::nn::VarStore;
use tch::Device;

fn appendix_a(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_appendix-a"));
    command.args(["--device", "cpu"]).args(args);
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn weights(path: &std::path::Path) -> Vec<(String, tch::Tensor)> {
    let mut vs = VarStore::new(Device::Cpu);
    let _model = NeuralNetwork::new(&vs.root(), 2, 2);
    vs.load(path).unwrap();
    by_name(&vs)
}

fn by_name(vs: &VarStore) -> Vec<(String, tch::Tensor)> {
    let mut named: Vec<_> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

fn largest_difference(a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]) -> f64 {
    a.iter()
        .zip(b)
        .map(|((na, ta), (nb, tb))| {
            assert_eq!(na, nb);
            (ta - tb).abs().max().double_value(&[])
        })
        .fold(0.0, f64::max)
}

#[test]
fn two_processes_end_where_one_process_on_the_global_batch_ends() {
    for (batch_size, epochs) in [(2, 3), (1, 4)] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_str().unwrap();
        let (batch, epochs_flag) = (batch_size.to_string(), epochs.to_string());
        let output = appendix_a(&[
            "--out-dir",
            out,
            "ddp",
            "--nproc-per-node",
            "2",
            "--batch-size",
            &batch,
            "--epochs",
            &epochs_flag,
            "--save-every-rank",
        ])
        .output()
        .unwrap();
        let stdout = text(&output.stdout);
        assert!(output.status.success(), "{stdout}\n{}", text(&output.stderr));
        // 5 examples: 3 per rank after padding, so 1 step of 2 (or 3 of 1) per epoch.
        let steps = epochs * (3 / batch_size);
        assert_eq!(stdout.matches("[rank 0 of 2] Epoch").count(), steps, "{stdout}");
        assert!(!stdout.contains("[rank 1"), "only rank 0 logs: {stdout}");
        assert!(stdout.contains("[rank 0] Test accuracy"), "{stdout}");
        let ranks = [weights(&rank_weights(dir.path(), 0)), weights(&rank_weights(dir.path(), 1))];
        // The ranks started from different seeds: the broadcast and the all-reduce make them one.
        assert_eq!(largest_difference(&ranks[0], &ranks[1]), 0.0);
        let options = DdpOptions {
            backend: Backend::Gloo,
            epochs,
            batch_size,
            lr: 0.5,
            seed: 123,
            timeout: Duration::from_secs(10),
            out_dir: dir.path().into(),
            save_every_rank: false,
        };
        let single = {
            let _rng = global_rng_lock();
            let (vs, _model) = train_single_process(2, &options).unwrap();
            by_name(&vs)
        };
        // The mean of two means of equal batches is the global mean: equal up to float rounding.
        let difference = largest_difference(&ranks[0], &single);
        assert!(difference < 1e-6, "batch {batch_size}: {difference}");
        assert!(largest_difference(&ranks[0], &weights(&dir.path().join("ddp-model.safetensors"))) == 0.0);
    }
}

/// Starts one rank of a 2-process group by hand, as a second machine would.
fn rank(rank: usize, port: u16, extra: &[&str]) -> Command {
    let mut command = appendix_a(&[&["ddp", "--timeout-seconds", "4"], extra].concat());
    command
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn finish_within(child: std::process::Child, limit: Duration) -> Output {
    let start = Instant::now();
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_rank_that_dies_stops_the_other_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let port = free_port();
    let long = ["--epochs", "100000000"];
    let mut first = rank(0, port, &long).arg("--out-dir").arg(out).spawn().unwrap();
    let mut second = rank(1, port, &long).arg("--out-dir").arg(out).spawn().unwrap();
    // Once rank 0 logs, both are training; then rank 1 dies.
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    assert!(line.contains("Epoch"), "{line}");
    second.kill().unwrap();
    second.wait().unwrap();
    std::thread::spawn(move || lines.for_each(drop)); // keep rank 0's pipe drained
    let start = Instant::now();
    let output = finish_within(first, Duration::from_secs(60));
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("error: rank 0"), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
}

#[test]
fn a_rank_that_never_comes_is_a_timeout_not_a_hang() {
    let start = Instant::now();
    let output = finish_within(rank(0, free_port(), &[]).spawn().unwrap(), Duration::from_secs(60));
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("joining the process group as rank 0 of 2"), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn the_launcher_names_the_rank_that_failed() {
    // NCCL on this network of CPU tensors fails in every rank: without a GPU when the group
    // forms (the backend is compiled and linked, and c10d itself refuses), or, without the
    // backend, with the build's explanation.
    let output = appendix_a(&["ddp", "--backend", "nccl"]).output().unwrap();
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    let why = if !shared::train::distributed::NCCL_BUILT {
        "this build has no NCCL backend"
    } else if !tch::Cuda::is_available() {
        "ProcessGroupNCCL is only supported with GPUs, no GPUs found!"
    } else {
        "error"
    };
    assert!(stderr.contains(why), "{stderr}");
    assert!(stderr.contains("failed") && stderr.contains("the other ranks were stopped"), "{stderr}");
    let bad = appendix_a(&["ddp", "--nproc-per-node", "0"]).output().unwrap();
    assert!(text(&bad.stderr).contains("--nproc-per-node must be at least 1"));
}
