//! Appendix D: a learning rate that warms up linearly and then follows a cosine down to a
//! minimum, and gradient clipping by the global norm (`torch.nn.utils.clip_grad_norm_`).

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

use super::AdamW;

/// Appendix D's schedule: from `initial_lr` up to `peak_lr` over `warmup_steps` steps, then
/// half a cosine down to `min_lr` at `total_steps`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WarmupCosine {
    pub initial_lr: f64,
    pub peak_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: i64,
    pub total_steps: i64,
}

impl WarmupCosine {
    pub fn validate(&self) -> Result<()> {
        for (name, lr) in [("initial_lr", self.initial_lr), ("peak_lr", self.peak_lr), ("min_lr", self.min_lr)] {
            ensure!(lr.is_finite() && lr >= 0.0, "{name} must be a finite learning rate, got {lr}");
        }
        ensure!(self.peak_lr > 0.0, "peak_lr must be positive");
        ensure!(
            0 <= self.warmup_steps && self.warmup_steps < self.total_steps,
            "the warmup ({} steps) must be shorter than the run ({} steps)",
            self.warmup_steps,
            self.total_steps
        );
        Ok(())
    }

    /// The learning rate of step `step` (0-based, the book's `global_step`).
    pub fn lr(&self, step: i64) -> f64 {
        if step < self.warmup_steps {
            let increment = (self.peak_lr - self.initial_lr) / self.warmup_steps as f64;
            self.initial_lr + step as f64 * increment
        } else {
            let progress = ((step - self.warmup_steps) as f64 / (self.total_steps - self.warmup_steps) as f64).min(1.0);
            self.min_lr + (self.peak_lr - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

/// What appendix D adds to a training step, as a loop applies it: the learning rate by
/// step, and clipping of the gradients' global norm from the end of the warmup on (from the
/// first step without a schedule). The default is the book's chapters: neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StepSchedule {
    pub lr: Option<WarmupCosine>,
    pub max_grad_norm: Option<f64>,
}

impl StepSchedule {
    pub fn validate(&self) -> Result<()> {
        if let Some(lr) = &self.lr {
            lr.validate()?;
        }
        if let Some(max_norm) = self.max_grad_norm {
            ensure!(max_norm > 0.0, "the largest gradient norm must be positive, got {max_norm}");
        }
        Ok(())
    }

    /// Sets `optimizer`'s learning rate for `step` (0-based) when there is a schedule.
    pub fn set_lr(&self, optimizer: &mut AdamW, step: i64) {
        if let Some(lr) = &self.lr {
            optimizer.config.lr = lr.lr(step);
        }
    }

    /// After `backward`: clips the gradients when `step` is past the warmup. The appendix's
    /// notebook clips from the first step after the warmup (`global_step >= warmup_steps`;
    /// the printed book's `>` skipped that step).
    pub fn clip(&self, optimizer: &mut AdamW, step: i64) {
        let warmed_up = self.lr.is_none_or(|lr| step >= lr.warmup_steps);
        if let (Some(max_norm), true) = (self.max_grad_norm, warmed_up) {
            optimizer.clip_grad_norm(max_norm);
        }
    }
}

/// How the learning rate goes after the warmup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrDecay {
    /// It stays at the peak (the chapters' fixed learning rate).
    #[default]
    Constant,
    /// Half a cosine down to the minimum at the last step.
    Cosine,
}

/// Appendix D's settings as a run's flags give them; the peak is the optimizer's learning
/// rate and the length the run's, known when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AppendixD {
    pub warmup_steps: i64,
    pub decay: LrDecay,
    /// Where the warmup starts.
    pub initial_lr: f64,
    /// Where the cosine ends.
    pub min_lr: f64,
    pub clip_grad_norm: Option<f64>,
}

impl AppendixD {
    /// The schedule of a run of `total_steps` steps peaking at `peak_lr`: none without a
    /// warmup or a decay (the chapters' fixed learning rate).
    pub fn for_run(&self, peak_lr: f64, total_steps: i64) -> Result<StepSchedule> {
        let lr = (self.warmup_steps > 0 || self.decay == LrDecay::Cosine).then(|| WarmupCosine {
            initial_lr: self.initial_lr,
            peak_lr,
            min_lr: if self.decay == LrDecay::Cosine { self.min_lr } else { peak_lr },
            warmup_steps: self.warmup_steps,
            total_steps,
        });
        let schedule = StepSchedule { lr, max_grad_norm: self.clip_grad_norm };
        schedule.validate()?;
        Ok(schedule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_the_minimum() {
        let schedule =
            WarmupCosine { initial_lr: 1e-5, peak_lr: 1e-3, min_lr: 1e-4, warmup_steps: 10, total_steps: 110 };
        schedule.validate().unwrap();
        assert_eq!(schedule.lr(0), 1e-5);
        assert!((schedule.lr(5) - (1e-5 + 5.0 * 9.9e-5)).abs() < 1e-15);
        assert!((schedule.lr(10) - 1e-3).abs() < 1e-15, "the peak right after the warmup");
        assert!((schedule.lr(60) - 5.5e-4).abs() < 1e-12, "half-way: the mean of peak and minimum");
        assert!((schedule.lr(110) - 1e-4).abs() < 1e-15);
        let lrs: Vec<f64> = (10..=110).map(|s| schedule.lr(s)).collect();
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]), "monotone after the warmup");
        assert!(WarmupCosine { warmup_steps: 110, ..schedule }.validate().is_err());
    }

    #[test]
    fn flags_become_a_schedule_for_the_run() {
        let flags = AppendixD {
            warmup_steps: 0,
            decay: LrDecay::Constant,
            initial_lr: 1e-5,
            min_lr: 1e-5,
            clip_grad_norm: None,
        };
        assert_eq!(flags.for_run(4e-4, 90).unwrap(), StepSchedule::default(), "the chapters' loop");
        let warm = AppendixD { warmup_steps: 27, ..flags }.for_run(1e-3, 135).unwrap().lr.unwrap();
        assert_eq!((warm.lr(0), warm.lr(27), warm.lr(134)), (1e-5, 1e-3, 1e-3), "warmup, then constant");
        let cosine = AppendixD { decay: LrDecay::Cosine, ..flags }.for_run(1e-3, 135).unwrap().lr.unwrap();
        assert_eq!((cosine.lr(0), cosine.lr(135)), (1e-3, 1e-5));
        assert!(AppendixD { warmup_steps: 200, ..flags }.for_run(1e-3, 135).is_err());
        assert!(AppendixD { clip_grad_norm: Some(0.0), ..flags }.for_run(1e-3, 135).is_err());
    }
}
