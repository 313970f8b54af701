//! Section 5.1.2-5.1.3: the cross-entropy loss of next-token prediction, perplexity, and the
//! average loss over the batches of a loader (`calc_loss_batch`, `calc_loss_loader`).

use anyhow::{bail, Result};
use tch::{Device, Kind, Reduction, Tensor};

use crate::data::dataset::{Batch, BatchSource};
use crate::model::GptModel;

/// Targets with this value are left out of the loss (PyTorch's default `ignore_index`;
/// chapter 7 marks padding with it).
pub const IGNORE_INDEX: i64 = -100;

/// Mean cross-entropy of `logits` `(B, T, V)` against `targets` `(B, T)`, both flattened
/// over batch and time as the book does; targets equal to [`IGNORE_INDEX`] do not count.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Tensor {
    logits.flatten(0, 1).cross_entropy_loss::<Tensor>(&targets.flatten(0, -1), None, Reduction::Mean, IGNORE_INDEX, 0.0)
}

/// `exp(loss)`: the effective number of tokens the model hesitates between.
pub fn perplexity(loss: f64) -> f64 {
    loss.exp()
}

/// The loss of one batch moved to `device`; dropout only when `train`.
pub fn calc_loss_batch(model: &GptModel, batch: &Batch, device: Device, train: bool) -> Tensor {
    let logits = model.forward_t(&batch.inputs.to_device(device), train);
    cross_entropy(&logits, &batch.targets.to_device(device))
}

/// The loss a training step minimises (the training loop's parameter).
pub trait TrainingLoss {
    /// The loss of one batch moved to `device`; dropout only when `train`.
    fn loss(&self, model: &GptModel, batch: &Batch, device: Device, train: bool) -> Tensor;
}

/// Section 5.1's next-token cross-entropy ([`calc_loss_batch`]): the book's loss.
#[derive(Debug, Clone, Copy, Default)]
pub struct NextTokenLoss;

impl TrainingLoss for NextTokenLoss {
    fn loss(&self, model: &GptModel, batch: &Batch, device: Device, train: bool) -> Tensor {
        calc_loss_batch(model, batch, device, train)
    }
}

/// Multi-token prediction (Gloeckle et al. 2024): the mean over the model's heads of the
/// cross-entropy of head `k` against the token `k + 1` places ahead. With one head it is
/// [`NextTokenLoss`] exactly.
#[derive(Debug, Clone, Copy, Default)]
pub struct MultiTokenLoss;

impl TrainingLoss for MultiTokenLoss {
    fn loss(&self, model: &GptModel, batch: &Batch, device: Device, train: bool) -> Tensor {
        let hidden = model.hidden_states(&batch.inputs.to_device(device), train);
        let targets = batch.targets.to_device(device); // targets[t] is the token after inputs[t]
        let tokens = targets.size()[1];
        let losses: Vec<Tensor> = model
            .all_head_logits(&hidden)
            .iter()
            .enumerate()
            .take(tokens as usize)
            .map(|(k, logits)| {
                let k = k as i64; // head k at position t predicts targets[t + k]
                cross_entropy(&logits.narrow(1, 0, tokens - k), &targets.narrow(1, k, tokens - k))
            })
            .collect();
        Tensor::stack(&losses, 0).mean(None::<Kind>)
    }
}

/// Knowledge distillation (Hinton et al. 2015; chapter 21, exercise 21.35): the student's
/// loss is `(1 - weight) * cross-entropy + weight * T^2 * KL(teacher_T || student_T)`, where
/// `_T` are the distributions softened by temperature `T` and the KL divergence is averaged
/// over the predicted positions (those whose target is not [`IGNORE_INDEX`]). The `T^2` keeps
/// the soft term's gradients the size of the hard term's as `T` grows. The teacher runs in
/// evaluation mode without gradients; both models must share the vocabulary.
pub struct DistillationLoss<'t> {
    pub teacher: &'t GptModel,
    pub temperature: f64,
    /// The share of the distillation term (the paper's lambda; 0 is plain cross-entropy).
    pub weight: f64,
}

impl DistillationLoss<'_> {
    pub fn validate(&self, student: &GptModel) -> Result<()> {
        anyhow::ensure!(self.temperature > 0.0 && self.temperature.is_finite(), "the temperature must be positive");
        anyhow::ensure!((0.0..=1.0).contains(&self.weight), "the distillation weight must be in [0, 1]");
        self.teacher.check_same_tokenizer(student, "the teacher and the student")?;
        anyhow::ensure!(student.cfg.n_future_heads == 1, "distillation trains the next-token head alone");
        Ok(())
    }

    /// `KL(teacher_T || student_T)` per position, averaged over the positions `mask` keeps.
    pub fn soft_loss(&self, student_logits: &Tensor, teacher_logits: &Tensor, mask: &Tensor) -> Tensor {
        let t = self.temperature;
        let student = (student_logits / t).log_softmax(-1, Kind::Float);
        let teacher = (teacher_logits / t).log_softmax(-1, Kind::Float);
        let per_position = (teacher.exp() * (&teacher - student)).sum_dim_intlist(-1, false, Kind::Float);
        let mask = mask.to_kind(Kind::Float);
        (per_position * &mask).sum(Kind::Float) / mask.sum(Kind::Float).clamp_min(1.0)
    }
}

impl TrainingLoss for DistillationLoss<'_> {
    fn loss(&self, model: &GptModel, batch: &Batch, device: Device, train: bool) -> Tensor {
        let inputs = batch.inputs.to_device(device);
        let targets = batch.targets.to_device(device);
        let logits = model.forward_t(&inputs, train);
        let hard = cross_entropy(&logits, &targets);
        let teacher_logits = tch::no_grad(|| self.teacher.forward_t(&inputs, false));
        let soft = self.soft_loss(&logits, &teacher_logits, &targets.ne(IGNORE_INDEX));
        hard * (1.0 - self.weight) + soft * (self.weight * self.temperature * self.temperature)
    }
}

impl<F: Fn(&GptModel, &Batch, Device, bool) -> Tensor> TrainingLoss for F {
    fn loss(&self, model: &GptModel, batch: &Batch, device: Device, train: bool) -> Tensor {
        self(model, batch, device, train)
    }
}

/// Checks, before any forward pass, that every token id the loaders can yield is inside the
/// model's vocabulary (a config with `vocab_size` below GPT-2's 50,257 cannot read GPT-2
/// tokens); `loaders` are named for the message.
pub fn check_token_ids(model: &GptModel, loaders: &[(&str, &dyn BatchSource)]) -> Result<()> {
    let vocab_size = model.cfg.vocab_size;
    for (name, loader) in loaders {
        if let Some(max) = loader.max_token_id().filter(|&max| max >= vocab_size) {
            bail!(
                "the {name} data holds token id {max}, outside the model's vocabulary of {vocab_size} ids \
                 (GPT-2's tokenizer needs vocab_size 50257)"
            );
        }
    }
    Ok(())
}

/// The mean loss over the first `num_batches` batches of `loader` (all when `None`), in
/// evaluation mode and without gradients; NaN for an empty loader. As the book's version it
/// starts a pass over the loader (which draws from the generator when the loader shuffles)
/// and sums the per-batch losses in double precision.
pub fn calc_loss_loader(model: &GptModel, loader: &dyn BatchSource, num_batches: Option<usize>, device: Device) -> f64 {
    let _no_grad = tch::no_grad_guard();
    mean_over_batches(loader, num_batches, |batch| {
        calc_loss_batch(model, batch, device, false).to_kind(Kind::Float).double_value(&[])
    })
}

/// The mean of `value` over the first `num_batches` batches of `loader` (all when `None`),
/// the loop of the book's `calc_loss_loader`s; NaN when the loader has no batch.
pub fn mean_over_batches(
    loader: &dyn BatchSource,
    num_batches: Option<usize>,
    mut value: impl FnMut(&Batch) -> f64,
) -> f64 {
    let available = loader.batch_count();
    if available == 0 {
        return f64::NAN;
    }
    let num_batches = num_batches.map_or(available, |n| n.min(available));
    let total: f64 = loader.batches().take(num_batches).map(|batch| value(&batch)).sum();
    total / num_batches as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_is_the_mean_negative_log_probability_of_the_targets() {
        let logits = Tensor::from_slice(&[2.0f32, 0.5, -1.0, 0.0, 1.0, 3.0]).view([1, 2, 3]);
        let targets = Tensor::from_slice(&[0i64, 2]).view([1, 2]);
        let log_probs = logits.log_softmax(-1, Kind::Float);
        let expected = -(log_probs.double_value(&[0, 0, 0]) + log_probs.double_value(&[0, 1, 2])) / 2.0;
        let loss = cross_entropy(&logits, &targets).double_value(&[]);
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
        // An ignored target drops out of the mean.
        let masked = Tensor::from_slice(&[0i64, IGNORE_INDEX]).view([1, 2]);
        let loss = cross_entropy(&logits, &masked).double_value(&[]);
        assert!((loss + log_probs.double_value(&[0, 0, 0])).abs() < 1e-6);
        assert!((perplexity(2.0f64.ln()) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn distillation_matches_its_definition() {
        use crate::model::GptConfig;
        let _rng = crate::core::device::global_rng_lock();
        crate::core::device::seed_everything(2);
        let cfg = GptConfig { vocab_size: 10, drop_rate: 0.0, ..GptConfig::tiny() };
        let (teacher_vs, student_vs) = (tch::nn::VarStore::new(Device::Cpu), tch::nn::VarStore::new(Device::Cpu));
        let teacher = GptModel::new(&teacher_vs.root(), &cfg).unwrap();
        let student = GptModel::new(&student_vs.root(), &cfg).unwrap();
        let batch = Batch {
            inputs: Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6]).view([2, 3]),
            targets: Tensor::from_slice(&[2i64, 3, 4, 5, 6, IGNORE_INDEX]).view([2, 3]),
        };
        let device = Device::Cpu;
        // A student equal to its teacher has nothing left to learn from it.
        let own = DistillationLoss { teacher: &student, temperature: 2.0, weight: 1.0 };
        assert!(own.loss(&student, &batch, device, false).double_value(&[]).abs() < 1e-6);
        // The soft term by hand: T^2 * mean over the 5 predicted positions of KL(p_T || q_T).
        let distill = DistillationLoss { teacher: &teacher, temperature: 4.0, weight: 1.0 };
        distill.validate(&student).unwrap();
        let (s, t) = (student.forward_t(&batch.inputs, false), teacher.forward_t(&batch.inputs, false));
        let (q, p) = ((&s / 4.0).softmax(-1, Kind::Double), (&t / 4.0).softmax(-1, Kind::Double));
        let mut kl = 0.0;
        for (b, i) in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)] {
            for v in 0..10 {
                let (p, q) = (p.double_value(&[b, i, v]), q.double_value(&[b, i, v]));
                kl += p * (p / q).ln() / 5.0;
            }
        }
        let loss = distill.loss(&student, &batch, device, false).double_value(&[]);
        assert!((loss - 16.0 * kl).abs() < 1e-5 * loss.abs().max(1e-3), "{loss} vs {}", 16.0 * kl);
        // Weight 0 is plain cross-entropy: the same loss and the same gradients.
        let plain = DistillationLoss { weight: 0.0, ..distill };
        let gradients = |loss: Tensor| -> Vec<Tensor> {
            for mut v in student_vs.trainable_variables() {
                v.zero_grad();
            }
            loss.backward();
            student_vs.trainable_variables().iter().map(|v| v.grad().copy()).collect()
        };
        let a = gradients(plain.loss(&student, &batch, device, true));
        let b = gradients(NextTokenLoss.loss(&student, &batch, device, true));
        assert!(a.iter().zip(&b).all(|(a, b)| a.equal(b)));
        let mismatched = GptModel::new(&tch::nn::VarStore::new(Device::Cpu).root(), &GptConfig::tiny()).unwrap();
        assert!(DistillationLoss { teacher: &mismatched, ..distill }.validate(&student).is_err());
    }
}
