//! `check-run`: compares a pretraining run's `metrics.json` with the book's PyTorch code run
//! on the same data with the same seed (`reference/pytorch-main-run.json`, written by
//! `scripts/reference/ch05_pretraining.py --full`): the initial losses, every logged loss,
//! the tokens seen and every epoch's sample, with the largest difference. Appendix D's run
//! is compared the same way with `reference/pytorch-appendix-d.json`
//! (`scripts/reference/appendix_d.py --full`), every step's learning rate included.

use std::fmt;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use shared::model::GptConfig;
use shared::train::Evaluation;

/// The PyTorch reference of the main run, committed with the crate.
pub const REFERENCE: &str = include_str!("../reference/pytorch-main-run.json");
/// The PyTorch reference of appendix D's run.
pub const APPENDIX_D_REFERENCE: &str = include_str!("../reference/pytorch-appendix-d.json");

/// The reference's fields that a run is compared on.
#[derive(Debug, Clone, Deserialize)]
pub struct Reference {
    pub config: GptConfig,
    /// The untrained model's losses (the chapter's run computes them; the appendix's not).
    pub initial_train_loss: Option<f64>,
    pub initial_val_loss: Option<f64>,
    pub evaluations: Vec<Evaluation>,
    pub samples: Vec<String>,
    /// Every step's learning rate, where a schedule set it (appendix D).
    #[serde(default)]
    pub learning_rates: Vec<f64>,
    pub torch: String,
    pub machine: String,
}

impl Reference {
    pub fn book() -> Self {
        serde_json::from_str(REFERENCE).expect("the committed reference parses")
    }

    pub fn appendix_d() -> Self {
        serde_json::from_str(APPENDIX_D_REFERENCE).expect("the committed reference parses")
    }

    /// A reference written by `scripts/reference/ch05_pretraining.py --full` (say with
    /// `--device cuda`, on the GPU a run of ours is checked on).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a reference written by ch05_pretraining.py --full", path.display()))
    }
}

/// The parts of a run's `metrics.json` that are compared.
#[derive(Debug, Clone, Deserialize)]
struct RunMetrics {
    config: GptConfig,
    initial_train_loss: Option<f64>,
    initial_val_loss: Option<f64>,
    history: RunHistory,
}

#[derive(Debug, Clone, Deserialize)]
struct RunHistory {
    evaluations: Vec<Evaluation>,
    samples: Vec<String>,
    #[serde(default)]
    learning_rates: Vec<f64>,
}

/// One compared loss, where the two sides differ most.
#[derive(Debug, Clone, Serialize)]
pub struct LossDifference {
    pub what: String,
    pub ours: f64,
    pub pytorch: f64,
    pub difference: f64,
}

/// What `check-run` found.
#[derive(Debug, Clone, Serialize)]
pub struct RunCheck {
    pub losses_compared: usize,
    pub largest: LossDifference,
    pub losses_within_tolerance: usize,
    pub tolerance: f64,
    pub samples_compared: usize,
    pub samples_identical: usize,
    /// The first sample that differs: (epoch, ours, PyTorch's).
    pub first_different_sample: Option<(usize, String, String)>,
    pub reference_torch: String,
    pub reference_machine: String,
}

impl RunCheck {
    /// Every loss within the tolerance and every sample identical.
    pub fn passed(&self) -> bool {
        self.losses_within_tolerance == self.losses_compared && self.samples_identical == self.samples_compared
    }
}

/// Reads `metrics` (a `metrics.json` written by the run) and compares it with `reference`.
pub fn check_file(metrics: &Path, reference: &Reference, tolerance: f64) -> Result<RunCheck> {
    let text = std::fs::read_to_string(metrics).with_context(|| {
        format!(
            "cannot read {} (the main run, `cargo run --release -p ch05-pretraining`, writes it)",
            metrics.display()
        )
    })?;
    let run: RunMetrics = serde_json::from_str(&text)
        .with_context(|| format!("{} is not the metrics.json of a pretraining run", metrics.display()))?;
    check(&run, reference, tolerance).with_context(|| format!("in {}", metrics.display()))
}

fn check(run: &RunMetrics, reference: &Reference, tolerance: f64) -> Result<RunCheck> {
    ensure!(
        run.config == reference.config,
        "the run's model config {} is not the reference's {}: the reference is for that run only",
        serde_json::to_string(&run.config)?,
        serde_json::to_string(&reference.config)?
    );
    let (ours, theirs) = (&run.history.evaluations, &reference.evaluations);
    ensure!(
        ours.len() == theirs.len(),
        "the run logged {} evaluations, the reference {}: was it the whole run?",
        ours.len(),
        theirs.len()
    );
    let mut pairs = Vec::new();
    for (name, ours, pytorch) in [
        ("initial training loss", run.initial_train_loss, reference.initial_train_loss),
        ("initial validation loss", run.initial_val_loss, reference.initial_val_loss),
    ] {
        if let Some(pytorch) = pytorch {
            let ours = ours.with_context(|| format!("the run has no {name} (was it run with --no-initial-losses?)"))?;
            pairs.push((name.to_string(), ours, pytorch));
        }
    }
    if !reference.learning_rates.is_empty() {
        let (ours, theirs) = (&run.history.learning_rates, &reference.learning_rates);
        ensure!(ours.len() == theirs.len(), "the run took {} steps, the reference {}", ours.len(), theirs.len());
        for (step, (ours, pytorch)) in ours.iter().zip(theirs).enumerate() {
            pairs.push((format!("learning rate at step {step}"), *ours, *pytorch));
        }
    }
    for (a, b) in ours.iter().zip(theirs) {
        ensure!(
            (a.epoch, a.step, a.tokens_seen) == (b.epoch, b.step, b.tokens_seen),
            "evaluation at step {} (epoch {}, {} tokens) does not line up with the reference's step {} (epoch {}, {} tokens)",
            a.step,
            a.epoch,
            a.tokens_seen,
            b.step,
            b.epoch,
            b.tokens_seen
        );
        pairs.push((format!("training loss at step {}", a.step), a.train_loss, b.train_loss));
        pairs.push((format!("validation loss at step {}", a.step), a.val_loss, b.val_loss));
    }
    let differences: Vec<LossDifference> = pairs
        .into_iter()
        .map(|(what, ours, pytorch)| LossDifference { what, ours, pytorch, difference: (ours - pytorch).abs() })
        .collect();
    let largest = differences
        .iter()
        .max_by(|a, b| a.difference.total_cmp(&b.difference))
        .cloned()
        .context("the reference has no losses to compare")?;
    ensure!(
        run.history.samples.len() == reference.samples.len(),
        "the run printed {} samples, the reference {}",
        run.history.samples.len(),
        reference.samples.len()
    );
    let samples = run.history.samples.iter().zip(&reference.samples);
    let first_different_sample =
        samples.clone().enumerate().find(|(_, (a, b))| a != b).map(|(i, (a, b))| (i + 1, a.clone(), b.clone()));
    Ok(RunCheck {
        losses_compared: differences.len(),
        losses_within_tolerance: differences.iter().filter(|d| d.difference <= tolerance).count(),
        largest,
        tolerance,
        samples_compared: reference.samples.len(),
        samples_identical: samples.filter(|(a, b)| a == b).count(),
        first_different_sample,
        reference_torch: reference.torch.clone(),
        reference_machine: reference.machine.clone(),
    })
}

impl fmt::Display for RunCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Reference: the book's PyTorch code, torch {} on {}",
            self.reference_torch, self.reference_machine
        )?;
        write!(
            f,
            "Losses: {} of {} within {:e} of PyTorch's; ",
            self.losses_within_tolerance, self.losses_compared, self.tolerance
        )?;
        if self.largest.difference == 0.0 {
            writeln!(f, "all equal to PyTorch's, bit for bit")?;
        } else {
            writeln!(
                f,
                "largest difference {:.3e} ({}: {} here, {} in PyTorch)",
                self.largest.difference, self.largest.what, self.largest.ours, self.largest.pytorch
            )?;
        }
        write!(f, "Samples: {} of {} identical", self.samples_identical, self.samples_compared)?;
        if let Some((epoch, ours, theirs)) = &self.first_different_sample {
            write!(f, "\n  first difference, epoch {epoch}:\n    here:    {ours}\n    PyTorch: {theirs}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference turned into a run's metrics, as if our run had printed it.
    fn run_like_the_reference() -> RunMetrics {
        let reference = Reference::book();
        RunMetrics {
            config: reference.config.clone(),
            initial_train_loss: reference.initial_train_loss,
            initial_val_loss: reference.initial_val_loss,
            history: RunHistory {
                evaluations: reference.evaluations.clone(),
                samples: reference.samples.clone(),
                learning_rates: reference.learning_rates.clone(),
            },
        }
    }

    #[test]
    fn the_reference_is_the_books_run() {
        let reference = Reference::book();
        assert_eq!(reference.config, crate::pretrain::book_config());
        assert_eq!((reference.evaluations.len(), reference.samples.len()), (18, 10));
        assert_eq!(
            (reference.initial_train_loss, reference.initial_val_loss),
            (Some(10.98758347829183), Some(10.98110580444336))
        );
    }

    #[test]
    fn the_appendix_reference_is_its_run() {
        let reference = Reference::appendix_d();
        assert_eq!(reference.config, crate::appendix_d::AppendixDOptions::default().config);
        assert_eq!(
            (reference.evaluations.len(), reference.samples.len(), reference.learning_rates.len()),
            (27, 15, 135)
        );
        assert_eq!((reference.initial_train_loss, reference.initial_val_loss), (None, None));
        // 27 warmup steps from 1e-5 to the peak of 0.001, then the cosine down to 1e-5.
        let rates = &reference.learning_rates;
        assert_eq!((rates[0], rates[27]), (1e-5, 0.001));
        assert!((rates[134] - 1e-5).abs() < 1e-6);
        // A run like it passes, with its learning rates compared.
        let run = RunMetrics {
            config: reference.config.clone(),
            initial_train_loss: None,
            initial_val_loss: None,
            history: RunHistory {
                evaluations: reference.evaluations.clone(),
                samples: reference.samples.clone(),
                learning_rates: reference.learning_rates.clone(),
            },
        };
        let check = super::check(&run, &reference, 1e-5).unwrap();
        assert!(check.passed());
        assert_eq!(check.losses_compared, 27 * 2 + 135);
    }

    #[test]
    fn an_identical_run_passes_and_a_different_one_is_named() {
        let reference = Reference::book();
        let check = super::check(&run_like_the_reference(), &reference, 1e-5).unwrap();
        assert!(check.passed());
        assert_eq!((check.losses_compared, check.largest.difference, check.samples_identical), (38, 0.0, 10));
        assert!(check.to_string().contains("38 of 38 within 1e-5 of PyTorch's; all equal to PyTorch's, bit for bit"));

        let mut run = run_like_the_reference();
        run.history.evaluations[7].val_loss += 3e-4;
        run.history.samples[4].push('!');
        let check = super::check(&run, &reference, 1e-5).unwrap();
        assert!(!check.passed());
        assert_eq!(check.losses_within_tolerance, 37);
        assert_eq!(check.largest.what, format!("validation loss at step {}", reference.evaluations[7].step));
        assert!((check.largest.difference - 3e-4).abs() < 1e-9);
        assert_eq!(check.first_different_sample.as_ref().map(|s| s.0), Some(5));
        let text = check.to_string();
        assert!(text.contains("37 of 38 within") && text.contains("Samples: 9 of 10 identical"), "{text}");

        let mut short = run_like_the_reference();
        short.history.evaluations.pop();
        let err = super::check(&short, &reference, 1e-5).unwrap_err().to_string();
        assert!(err.contains("logged 17 evaluations, the reference 18"), "{err}");
        let small = RunMetrics { config: GptConfig::tiny(), ..run_like_the_reference() };
        assert!(super::check(&small, &reference, 1e-5).unwrap_err().to_string().contains("not the reference's"));
    }
}
