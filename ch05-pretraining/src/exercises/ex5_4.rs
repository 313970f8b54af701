//! Exercise 5.4: continued pretraining. A checkpoint holds the model and AdamW's state, so
//! training can stop and resume: here 1 epoch + resume + 1 epoch is compared, bit for bit,
//! with 2 epochs in one run (both seed each epoch the same way, because the generator's
//! state itself cannot be saved through `tch`). When the main run's checkpoint exists, it
//! is also resumed for one more epoch, as the book's exercise asks.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::{Exercise, Report};
use shared::app::recipe::TrainFlags;
use shared::data::THE_VERDICT;
use shared::model::GptConfig;
use shared::train::{Checkpoint, Evaluation};
use tch::Tensor;

use crate::pretrain::{self, PretrainOptions};

pub const EXERCISE: Exercise = Exercise {
    id: "5.4",
    summary: "resume from a checkpoint (model + AdamW state): 1 epoch + resume + 1 epoch equals 2 epochs bit for bit",
    run: |context| Report::new(&run(context)?),
};

/// The model of the resume check: small enough to train four epochs in a minute.
pub fn check_config() -> GptConfig {
    GptConfig { context_length: 64, emb_dim: 64, n_heads: 4, n_layers: 2, ..GptConfig::gpt2_small() }
}

#[derive(Debug, Clone, Serialize)]
pub struct ResumeCheck {
    pub config: GptConfig,
    pub uninterrupted_steps: i64,
    pub resumed_steps: i64,
    pub weights_identical: bool,
    pub optimizer_identical: bool,
    pub final_evaluation: Option<Evaluation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex5_4 {
    pub check: ResumeCheck,
    /// One more epoch of the main run's checkpoint, when there is one.
    pub main_run_resumed: Option<Vec<Evaluation>>,
}

/// Trains `config` for 2 epochs in one run and for 1 + 1 epochs with a checkpoint in
/// between (outputs under `out_dir`), then compares the final checkpoints tensor by tensor.
pub fn resume_check(context: &RunContext, text: &str, config: &GptConfig, out_dir: &Path) -> Result<ResumeCheck> {
    let options = |epochs, resume: Option<&Path>| check_options(config, epochs, context.seed, resume);
    let in_dir = |name: &str| RunContext { out_dir: out_dir.join(name), ..context.clone() };
    let whole = pretrain::run(&in_dir("two-epochs"), text, &options(2, None))?;
    pretrain::run(&in_dir("first-epoch"), text, &options(1, None))?;
    let resumed = pretrain::run(&in_dir("resumed"), text, &options(1, Some(&out_dir.join("first-epoch"))))?;
    let (a, b) = (Checkpoint::at(&whole.checkpoint), Checkpoint::at(&resumed.checkpoint));
    Ok(ResumeCheck {
        config: config.clone(),
        uninterrupted_steps: whole.progress.global_step + 1,
        resumed_steps: resumed.progress.global_step + 1,
        weights_identical: same_tensors(&a.model, &b.model)?,
        optimizer_identical: same_tensors(&a.optimizer, &b.optimizer)?,
        final_evaluation: resumed.history.evaluations.last().cloned(),
    })
}

/// The check's quiet, short runs: `epochs` epochs of `config`, every epoch seeded with
/// `epoch_seed + epoch`, resuming the checkpoint in `resume` (a run's output folder) if given.
pub fn check_options(config: &GptConfig, epochs: usize, epoch_seed: u64, resume: Option<&Path>) -> PretrainOptions {
    PretrainOptions {
        config: Some(config.clone()),
        train: TrainFlags { epochs, batch_size: 4, eval_freq: 10, eval_iter: 2, ..TrainFlags::defaults() },
        start_context: String::new(),
        epoch_seed: Some(epoch_seed),
        resume: resume.map(|dir| dir.join("checkpoint")),
        initial_losses: false,
        verbose: false,
        ..PretrainOptions::default()
    }
}

/// Whether two safetensors files hold the same names with bit-identical values.
pub fn same_tensors(a: &Path, b: &Path) -> Result<bool> {
    let read = |path: &Path| -> Result<Vec<(String, Tensor)>> {
        let mut tensors = Tensor::read_safetensors(path).with_context(|| format!("reading {}", path.display()))?;
        tensors.sort_by(|x, y| x.0.cmp(&y.0));
        Ok(tensors)
    };
    let (a, b) = (read(a)?, read(b)?);
    Ok(a.len() == b.len() && a.iter().zip(&b).all(|((na, ta), (nb, tb))| na == nb && ta.equal(tb)))
}

fn run(context: &RunContext) -> Result<Ex5_4> {
    let text = context.data.read_to_string(&THE_VERDICT)?;
    let out_dir = context.out_dir.join("ex5.4");
    let check = resume_check(context, &text, &check_config(), &out_dir)?;
    let main_checkpoint = Checkpoint::at(&context.out_dir.join("checkpoint"));
    let main_run_resumed = if main_checkpoint.meta.is_file() && main_checkpoint.optimizer.is_file() {
        let options = PretrainOptions {
            train: TrainFlags { epochs: 1, ..TrainFlags::defaults() },
            resume: Some(main_checkpoint.model.clone()),
            initial_losses: false,
            ..PretrainOptions::default()
        };
        let resumed_context = RunContext { out_dir: out_dir.join("main-run-plus-one-epoch"), ..context.clone() };
        Some(pretrain::run(&resumed_context, &text, &options)?.history.evaluations)
    } else {
        None
    };
    Ok(Ex5_4 { check, main_run_resumed })
}

impl fmt::Display for Ex5_4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.check;
        writeln!(
            f,
            "Resume check ({} layers of width {}, context {}): {} steps in one run, {} after resuming",
            c.config.n_layers, c.config.emb_dim, c.config.context_length, c.uninterrupted_steps, c.resumed_steps
        )?;
        writeln!(f, "  weights identical to the uninterrupted run: {}", c.weights_identical)?;
        writeln!(f, "  AdamW moments and steps identical:         {}", c.optimizer_identical)?;
        if let Some(evaluation) = &c.final_evaluation {
            writeln!(f, "  last evaluation after resuming: {evaluation}")?;
        }
        match &self.main_run_resumed {
            Some(evaluations) => {
                writeln!(f, "The main run's checkpoint, one more epoch:")?;
                for evaluation in evaluations {
                    writeln!(f, "  {evaluation}")?;
                }
                Ok(())
            }
            None => write!(f, "(No main-run checkpoint yet: `cargo run --release -p ch05-pretraining` writes one.)"),
        }
    }
}
