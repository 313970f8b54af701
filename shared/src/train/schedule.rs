//! Appendix D: a learning rate that warms up linearly and then follows a cosine down to a
//! minimum, and gradient clipping by the global norm (`torch.nn.utils.clip_grad_norm_`).

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

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
}
