//! The flags every binary takes, and the run context they resolve to.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use tch::Device;

use crate::core::device::{self, DeviceChoice};
use crate::data::DataLocator;
use crate::generate::beam::BeamSearch;
use crate::generate::{Decoding, Sampler, Sampling};
use crate::model::GptModel;

/// The decoding flags beyond the book's temperature and top-k, for every command that
/// generates (chapter 5's `generate`, chapter 7's `respond`, chapter 21's `generate`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DecodingArgs {
    /// Nucleus sampling: keep the most likely tokens whose probabilities reach P
    #[arg(long, value_name = "P")]
    pub top_p: Option<f64>,
    /// CTRL repetition penalty: divide the positive logits of tokens already present by R and multiply the negative ones (1 changes nothing)
    #[arg(long, value_name = "R")]
    pub repetition_penalty: Option<f64>,
    /// Beam search with N beams instead of greedy decoding (not with the sampling flags)
    #[arg(long, value_name = "N")]
    pub beams: Option<i64>,
    /// With --beams: rank beams by log-probability / length^L (above 0 favours longer outputs)
    #[arg(long, value_name = "L", requires = "beams", allow_negative_numbers = true)]
    pub length_penalty: Option<f64>,
    /// Compute every linear layer with int8 weights (fbgemm's dynamic int8 kernels; CPU only): faster, slightly different logits
    #[arg(long)]
    pub int8: bool,
}

impl DecodingArgs {
    /// Whether any of these flags was given.
    pub fn is_set(&self) -> bool {
        self.top_p.is_some() || self.repetition_penalty.is_some() || self.beams.is_some()
    }

    /// The decoding these flags and the book's `sampling` ask for.
    pub fn decoding(&self, sampling: &Sampling) -> Result<Decoding> {
        sampling.validate()?;
        let Some(width) = self.beams else {
            return Ok(Decoding::Sample(Sampler::with_options(sampling, self.top_p, self.repetition_penalty)?));
        };
        anyhow::ensure!(
            sampling.temperature == 0.0 && sampling.top_k.is_none() && !self.is_sampling(),
            "--beams searches deterministically: leave out --temperature, --top-k, --top-p and --repetition-penalty"
        );
        let settings =
            BeamSearch { width, length_penalty: self.length_penalty.unwrap_or(1.0), eos_id: sampling.eos_id };
        settings.validate()?;
        Ok(Decoding::Beam(settings))
    }

    /// Switches `model` to int8 weights when `--int8` is given.
    pub fn prepare(&self, model: &mut GptModel) -> Result<()> {
        if self.int8 {
            model.use_int8_kernels()?;
        }
        Ok(())
    }

    fn is_sampling(&self) -> bool {
        self.top_p.is_some() || self.repetition_penalty.is_some()
    }
}

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
