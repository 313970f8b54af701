//! `torch.optim.AdamW` (the optimizer of section 5.2), written out so that its state (the
//! moment estimates and step counts) can be saved with a checkpoint and restored (section
//! 5.4 and exercise 5.4); `tch`'s built-in optimizer keeps that state out of reach.
//!
//! The update is PyTorch's single-tensor implementation, the one it uses for CPU tensors,
//! operation for operation, so that training matches the book's runs bit for bit:
//! decoupled weight decay `p *= 1 - lr * wd`, `m.lerp_(g, 1 - beta1)`,
//! `v = v * beta2 + (1 - beta2) * g * g`, then `p += -lr / (1 - beta1^t) * m / (sqrt(v) /
//! sqrt(1 - beta2^t) + eps)`, with the scalars computed in double precision as Python does.

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Kind, Tensor};

/// AdamW's hyperparameters; the defaults are PyTorch's except for the book's learning rate
/// and weight decay (section 5.2: lr 0.0004, weight decay 0.1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { lr: 0.0004, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 }
    }
}

impl AdamWConfig {
    pub fn validate(&self) -> Result<()> {
        ensure!(self.lr > 0.0 && self.lr.is_finite(), "the learning rate must be positive, got {}", self.lr);
        ensure!(self.weight_decay >= 0.0, "the weight decay must not be negative, got {}", self.weight_decay);
        for beta in [self.beta1, self.beta2] {
            ensure!((0.0..1.0).contains(&beta), "AdamW's betas must be in [0, 1), got {beta}");
        }
        ensure!(self.eps > 0.0, "AdamW's eps must be positive");
        Ok(())
    }
}

/// One parameter's optimizer state, created at its first update as in PyTorch.
#[derive(Debug)]
struct ParamState {
    step: i64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// The state of `name` for its next update: created (zero moments) at the first, as in
/// PyTorch, and with the step count advanced.
fn next_step<'a>(states: &'a mut BTreeMap<String, ParamState>, name: &str, param: &Tensor) -> &'a mut ParamState {
    let state = states.entry(name.to_string()).or_insert_with(|| ParamState {
        step: 0,
        exp_avg: param.zeros_like(),
        exp_avg_sq: param.zeros_like(),
    });
    state.step += 1;
    state
}

/// AdamW over the trainable variables of a [`VarStore`], keyed by their names.
#[derive(Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    params: Vec<(String, Tensor)>,
    state: BTreeMap<String, ParamState>,
    /// Parameters that weight decay leaves alone (see [`AdamW::decay_matrices_only`]).
    no_decay: std::collections::BTreeSet<String>,
    /// Update with PyTorch's fused kernel and drop gradients between steps (fast mode,
    /// [`super::TrainMode`]): the same update up to float rounding, fewer passes over memory.
    pub fused: bool,
}

impl AdamW {
    /// Optimizes every variable of `vs` that requires a gradient (freeze parameters first).
    pub fn new(vs: &VarStore, config: AdamWConfig) -> Result<Self> {
        config.validate()?;
        let mut params: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, tensor)| tensor.requires_grad()).collect();
        // In the order the model created them, which is PyTorch's `model.parameters()` order:
        // the updates do not depend on it, but the global norm of clipping sums in it.
        let created: Vec<usize> = vs.trainable_variables().iter().map(|t| t.data_ptr() as usize).collect();
        let rank = |t: &Tensor| created.iter().position(|&p| p == t.data_ptr() as usize).unwrap_or(usize::MAX);
        params.sort_by(|a, b| rank(&a.1).cmp(&rank(&b.1)).then_with(|| a.0.cmp(&b.0)));
        Ok(Self { config, params, state: BTreeMap::new(), no_decay: Default::default(), fused: false })
    }

    /// Decays weight matrices and embeddings only, not biases and norm parameters (GPT-2's
    /// and nanoGPT's two parameter groups); the book's chapter 5 decays every parameter.
    pub fn decay_matrices_only(mut self) -> Self {
        self.no_decay = self.params.iter().filter(|(_, p)| p.dim() < 2).map(|(name, _)| name.clone()).collect();
        self
    }

    /// `optimizer.zero_grad()`: zeroes the gradients (the same next backward pass as
    /// PyTorch's `set_to_none=True`); the fused optimizer drops them instead, which saves
    /// two passes over every gradient.
    pub fn zero_grad(&mut self) {
        for (_, param) in &mut self.params {
            let mut grad = param.grad();
            if grad.defined() {
                if self.fused {
                    crate::core::native::drop_grad(param).expect("a parameter's gradient can be dropped");
                } else {
                    let _ = grad.detach_().zero_();
                }
            }
        }
    }

    /// One update of every parameter that has a gradient.
    pub fn step(&mut self) {
        if self.fused {
            return self.fused_step();
        }
        let AdamWConfig { lr, beta1, beta2, eps, weight_decay } = self.config;
        let _no_grad = tch::no_grad_guard();
        for (name, param) in &mut self.params {
            let grad = param.grad();
            if !grad.defined() {
                continue;
            }
            let state = next_step(&mut self.state, name, param);
            if weight_decay != 0.0 && !self.no_decay.contains(name.as_str()) {
                let _ = param.g_mul_scalar_(1.0 - lr * weight_decay);
            }
            let _ = state.exp_avg.lerp_(&grad, 1.0 - beta1);
            // addcmul_(g, g, value=1-beta2) computes value * g * g: the same product order.
            let _ = state.exp_avg_sq.g_mul_scalar_(beta2);
            let _ = state.exp_avg_sq.addcmul_(&(&grad * (1.0 - beta2)), &grad);
            let step = state.step as f64;
            let bias_correction1 = 1.0 - beta1.powf(step);
            let bias_correction2 = 1.0 - beta2.powf(step);
            let step_size = lr / bias_correction1;
            let mut denom = state.exp_avg_sq.sqrt() / bias_correction2.sqrt();
            let _ = denom.g_add_scalar_(eps);
            // addcdiv_(m, denom, value=-step_size) computes value * m / denom.
            let _ = param.addcdiv_(&(&state.exp_avg * -step_size), &denom);
        }
    }

    /// [`AdamW::step`] with PyTorch's `_fused_adamw_` kernel, one call per weight-decay group.
    fn fused_step(&mut self) {
        let AdamWConfig { lr, beta1, beta2, eps, weight_decay } = self.config;
        let _no_grad = tch::no_grad_guard();
        for decays in [true, false] {
            let mut tensors = crate::core::native::AdamWTensors::default();
            for (name, param) in &self.params {
                let grad = param.grad();
                if !grad.defined() || self.no_decay.contains(name.as_str()) == decays {
                    continue;
                }
                let state = next_step(&mut self.state, name, param);
                tensors.params.push(param.shallow_clone());
                tensors.grads.push(grad);
                tensors.exp_avgs.push(state.exp_avg.shallow_clone());
                tensors.exp_avg_sqs.push(state.exp_avg_sq.shallow_clone());
                // The kernel reads the step count from a float tensor on the parameter's device.
                tensors.steps.push(Tensor::from(state.step as f32).to_device(param.device()));
            }
            if tensors.params.is_empty() {
                continue;
            }
            let decay = if decays { weight_decay } else { 0.0 };
            crate::core::native::fused_adamw(&tensors, lr, beta1, beta2, decay, eps)
                .expect("the fused AdamW kernel takes the parameters, gradients and moments of one device and dtype");
        }
    }

    /// `torch.nn.utils.clip_grad_norm_`: scales every gradient by `max_norm / (norm + 1e-6)`
    /// when the norm of all gradients together exceeds `max_norm`; returns that norm. As
    /// PyTorch computes it, in float tensors: each gradient's norm, the norm of those norms,
    /// the coefficient `reciprocal(norm + 1e-6) * max_norm` clamped at 1, and every gradient
    /// multiplied by it (by 1 when it is clamped), so the updates are PyTorch's to the bit.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let _no_grad = tch::no_grad_guard();
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).filter(Tensor::defined).collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norm = |t: &Tensor| t.norm(); // ATen's 2-norm, linalg.vector_norm
        let norms: Vec<Tensor> = grads.iter().map(norm).collect();
        let total = norm(&Tensor::stack(&norms, 0));
        let coefficient = ((&total + 1e-6).reciprocal() * max_norm).clamp_max(1.0);
        for mut grad in grads {
            let _ = grad.g_mul_(&coefficient);
        }
        total.double_value(&[])
    }

    /// The number of updates applied so far (the largest per-parameter step count).
    /// The name of the first parameter holding NaN or an infinity, if any (a diverged run).
    pub fn first_non_finite_parameter(&self) -> Option<&str> {
        let _no_grad = tch::no_grad_guard();
        self.params
            .iter()
            .find(|(_, tensor)| tensor.isfinite().all().int64_value(&[]) == 0)
            .map(|(name, _)| name.as_str())
    }

    pub fn steps(&self) -> i64 {
        self.state.values().map(|s| s.step).max().unwrap_or(0)
    }

    /// The state as named tensors: `exp_avg.<param>`, `exp_avg_sq.<param>`, `step.<param>`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut tensors = Vec::with_capacity(3 * self.state.len());
        for (name, state) in &self.state {
            tensors.push((format!("exp_avg.{name}"), state.exp_avg.shallow_clone()));
            tensors.push((format!("exp_avg_sq.{name}"), state.exp_avg_sq.shallow_clone()));
            tensors.push((format!("step.{name}"), Tensor::from(state.step)));
        }
        tensors
    }

    /// Restores a state written by [`AdamW::state_tensors`]: every entry must name one of
    /// this optimizer's parameters and match its shape.
    pub fn load_state_tensors(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let mut parts: BTreeMap<String, [Option<Tensor>; 3]> = BTreeMap::new();
        for (key, tensor) in tensors {
            let (kind, name) = key.split_once('.').with_context(|| format!("unexpected optimizer entry '{key}'"))?;
            let slot = match kind {
                "exp_avg" => 0,
                "exp_avg_sq" => 1,
                "step" => 2,
                _ => anyhow::bail!("unexpected optimizer entry '{key}'"),
            };
            parts.entry(name.to_string()).or_default()[slot] = Some(tensor);
        }
        let mut state = BTreeMap::new();
        for (name, [exp_avg, exp_avg_sq, step]) in parts {
            let param = self.params.iter().find(|(n, _)| *n == name).map(|(_, p)| p).with_context(|| {
                format!("the optimizer state has an entry for '{name}', which is not a trainable parameter")
            })?;
            let (Some(exp_avg), Some(exp_avg_sq), Some(step)) = (exp_avg, exp_avg_sq, step) else {
                anyhow::bail!("the optimizer state of '{name}' is incomplete");
            };
            for moment in [&exp_avg, &exp_avg_sq] {
                ensure!(
                    moment.size() == param.size(),
                    "the optimizer state of '{name}' has shape {:?}, the parameter {:?}",
                    moment.size(),
                    param.size()
                );
            }
            ensure!(
                step.numel() == 1 && step.kind() != Kind::Bool,
                "the optimizer step count of '{name}' has the shape {:?}, expected one number",
                step.size()
            );
            let step = step.to_kind(Kind::Int64).view([-1]).int64_value(&[0]);
            ensure!(step >= 0, "the optimizer step count of '{name}' is negative ({step})");
            let place = |t: Tensor| t.to_device(param.device()).to_kind(param.kind());
            state.insert(name, ParamState { step, exp_avg: place(exp_avg), exp_avg_sq: place(exp_avg_sq) });
        }
        self.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn the_fused_step_matches_the_book_step() {
        let _rng = crate::core::device::global_rng_lock();
        let run = |fused: bool| {
            tch::manual_seed(7);
            let vs = VarStore::new(Device::Cpu);
            let w = vs.root().randn("w", &[4, 3], 0.0, 1.0);
            let b = vs.root().randn("b", &[3], 0.0, 1.0);
            let mut opt =
                AdamW::new(&vs, AdamWConfig { lr: 0.01, ..AdamWConfig::default() }).unwrap().decay_matrices_only();
            opt.fused = fused;
            let x = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
            for _ in 0..3 {
                opt.zero_grad();
                (x.matmul(&w) + &b).tanh().square().sum(Kind::Float).backward();
                opt.step();
            }
            (w.copy(), b.copy(), b.grad().defined())
        };
        let (book, fused) = (run(false), run(true));
        assert!(fused.0.allclose(&book.0, 1e-5, 1e-6, false), "{} vs {}", fused.0, book.0);
        assert!(fused.1.allclose(&book.1, 1e-5, 1e-6, false));
        let mut opt = AdamW::new(&VarStore::new(Device::Cpu), AdamWConfig::default()).unwrap();
        opt.fused = true;
        opt.step(); // nothing to update
    }

    #[test]
    fn decay_of_matrices_only_leaves_vectors_alone() {
        let vs = VarStore::new(Device::Cpu);
        let matrix = vs.root().ones("w", &[2, 2]);
        let vector = vs.root().ones("b", &[2]);
        // zero gradients: only the weight decay moves a parameter
        (matrix.sum(Kind::Float) * 0.0 + vector.sum(Kind::Float) * 0.0).backward();
        let mut opt = AdamW::new(&vs, AdamWConfig { lr: 0.1, ..AdamWConfig::default() }).unwrap().decay_matrices_only();
        opt.step();
        assert!((matrix.double_value(&[0, 0]) - (1.0 - 0.1 * 0.1)).abs() < 1e-7);
        assert_eq!(vector.double_value(&[0]), 1.0);
    }

    #[test]
    fn clipping_scales_all_gradients_to_the_largest_norm() {
        let vs = VarStore::new(Device::Cpu);
        let a = vs.root().zeros("a", &[2]);
        let b = vs.root().zeros("b", &[1]);
        let loss = (&a * Tensor::from_slice(&[3.0f32, 0.0])).sum(Kind::Float) + (&b * 4.0).sum(Kind::Float);
        loss.backward();
        let mut opt = AdamW::new(&vs, AdamWConfig::default()).unwrap();
        assert!((opt.clip_grad_norm(10.0) - 5.0).abs() < 1e-6, "the norm of [3, 0] and [4] together");
        assert_eq!(Vec::<f32>::try_from(a.grad()).unwrap(), [3.0, 0.0], "below the limit: unchanged");
        assert!((opt.clip_grad_norm(1.0) - 5.0).abs() < 1e-6);
        assert!((a.grad().double_value(&[0]) - 0.6).abs() < 1e-6 && (b.grad().double_value(&[0]) - 0.8).abs() < 1e-6);
    }

    /// PyTorch 2.13: `torch.optim.AdamW([p], lr=0.01, weight_decay=0.1)` on
    /// `p = [1.0, -2.0, 0.5]`, three steps with the gradients below, printed with
    /// `p.tolist()` (float32 values as doubles).
    #[test]
    fn matches_torch_adamw() {
        let vs = VarStore::new(Device::Cpu);
        let p = vs.root().var_copy("p", &Tensor::from_slice(&[1.0f32, -2.0, 0.5]));
        let mut opt = AdamW::new(&vs, AdamWConfig { lr: 0.01, ..AdamWConfig::default() }).unwrap();
        for grad in [[0.1f32, -0.2, 0.3], [0.5, 0.5, -1.0], [-0.05, 0.0, 2.0]] {
            opt.zero_grad();
            let loss = (&p * Tensor::from_slice(&grad)).sum(Kind::Float);
            loss.backward();
            opt.step();
        }
        let got = Vec::<f32>::try_from(&p).unwrap();
        let expected: [f32; 3] = [0.972_420_8, -1.991_862_2, 0.489_916_47]; // PyTorch's values, as f32
        assert_eq!(got, expected);
        assert_eq!(opt.steps(), 3);
    }

    #[test]
    fn a_state_with_a_step_that_is_not_one_number_is_refused() {
        let vs = VarStore::new(Device::Cpu);
        let _p = vs.root().var_copy("p", &Tensor::from_slice(&[1.0f32, -2.0, 0.5]));
        let mut opt = AdamW::new(&vs, AdamWConfig::default()).unwrap();
        let state = |step: Tensor| {
            vec![
                ("exp_avg.p".to_string(), Tensor::zeros([3], (Kind::Float, Device::Cpu))),
                ("exp_avg_sq.p".to_string(), Tensor::zeros([3], (Kind::Float, Device::Cpu))),
                ("step.p".to_string(), step),
            ]
        };
        let err = opt.load_state_tensors(state(Tensor::from_slice(&[1i64, 2]))).unwrap_err().to_string();
        assert!(err.contains("step count of 'p' has the shape [2], expected one number"), "{err}");
        let err = opt.load_state_tensors(state(Tensor::zeros([0], (Kind::Int64, Device::Cpu)))).unwrap_err();
        assert!(err.to_string().contains("expected one number"), "{err}");
        let err = opt.load_state_tensors(state(Tensor::from(-4i64))).unwrap_err().to_string();
        assert!(err.contains("is negative (-4)"), "{err}");
        opt.load_state_tensors(state(Tensor::from_slice(&[7i64]))).unwrap();
        assert_eq!(opt.steps(), 7);
    }
}
