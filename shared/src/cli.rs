//! The flags every binary takes, and the run context they resolve to.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use tch::Device;

use crate::data::DataLocator;
use crate::device::{self, DeviceChoice};

/// `--device`, `--seed`, `--out-dir` and `--data`, flattened into each binary's arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Where tensors live: auto (CUDA when available, else CPU), cpu, cuda or cuda:N
    #[arg(long, global = true, default_value = "auto", value_name = "DEVICE")]
    pub device: DeviceChoice,

    /// Seed for LibTorch's generator, as torch.manual_seed (the book uses 123)
    #[arg(long, global = true, default_value_t = 123)]
    pub seed: u64,

    /// Folder for output files [default: runs/<crate>/ in the workspace]
    #[arg(long, global = true, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,

    /// Read the chapter's data from this file instead of its data set (chapters that read one; no checksum check)
    #[arg(long, global = true, value_name = "FILE")]
    pub data: Option<PathBuf>,
}

impl CommonArgs {
    /// Checks the device and builds the context a run or an exercise works in.
    pub fn context(&self, crate_name: &str) -> Result<RunContext> {
        Ok(RunContext {
            device: self.device.resolve()?,
            seed: self.seed,
            out_dir: self.out_dir.clone().unwrap_or_else(|| crate::workspace_root().join("runs").join(crate_name)),
            data: DataLocator::from_env(self.data.clone()),
        })
    }
}

/// What a chapter's main run or exercise needs from the command line.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub device: Device,
    pub seed: u64,
    pub out_dir: PathBuf,
    pub data: DataLocator,
}

impl RunContext {
    /// The CPU, seed 123, the standard data locations: what tests use.
    pub fn for_tests() -> Self {
        Self {
            device: Device::Cpu,
            seed: 123,
            out_dir: std::env::temp_dir().join("llms-from-scratch-tests"),
            data: DataLocator::from_env(None),
        }
    }

    /// Creates the output folder and checks that files can be written into it, so that a
    /// bad `--out-dir` fails before any training, with the folder named.
    pub fn create_out_dir(&self) -> Result<()> {
        let dir = &self.out_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the output folder {} (--out-dir)", dir.display()))?;
        tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("cannot write into the output folder {} (--out-dir)", dir.display()))?;
        Ok(())
    }

    /// Seeds the global generator with this run's seed.
    pub fn seed_everything(&self) {
        device::seed_everything(self.seed);
    }
}

/// Runs a binary's body and turns an error into one clear message on stderr (the whole
/// context chain on one line, no backtrace) and exit code 1.
pub fn run_main(body: impl FnOnce() -> Result<()>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
