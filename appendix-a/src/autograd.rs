//! Sections A.3-A.4: a logistic regression forward pass on one example and the gradients of
//! its loss, computed with `autograd.grad` (explicit) and with `backward` (accumulated).

use std::fmt;

use serde::Serialize;
use tch::{Kind, Reduction, Tensor};

#[derive(Debug, Clone, Serialize)]
pub struct LogisticGradients {
    pub loss: f64,
    pub grad_w1: f64,
    pub grad_b: f64,
    pub backward_w1: f64,
    pub backward_b: f64,
}

/// `y = 1`, `x1 = 1.1`, `w1 = 2.2`, `b = 0`; `loss = bce(sigmoid(x1 * w1 + b), y)`.
pub fn run() -> LogisticGradients {
    let y = Tensor::from_slice(&[1.0f32]);
    let x1 = Tensor::from_slice(&[1.1f32]);
    let w1 = Tensor::from_slice(&[2.2f32]).set_requires_grad(true);
    let b = Tensor::from_slice(&[0.0f32]).set_requires_grad(true);
    let z = &x1 * &w1 + &b; // net input
    let a = z.sigmoid(); // activation
    let loss = a.binary_cross_entropy(&y, None::<Tensor>, Reduction::Mean);

    // torch.autograd.grad(loss, [w1, b], retain_graph=True)
    let grads = Tensor::run_backward(&[&loss], &[&w1, &b], true, false);
    // loss.backward(): gradients accumulate in .grad
    loss.backward();
    let value = |t: &Tensor| t.to_kind(Kind::Double).double_value(&[0]);
    LogisticGradients {
        loss: loss.double_value(&[]),
        grad_w1: value(&grads[0]),
        grad_b: value(&grads[1]),
        backward_w1: value(&w1.grad()),
        backward_b: value(&b.grad()),
    }
}

impl fmt::Display for LogisticGradients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Loss: {:.4}", self.loss)?;
        writeln!(f, "autograd.grad: dL/dw1 = {:.4}, dL/db = {:.4}", self.grad_w1, self.grad_b)?;
        write!(f, "backward():    w1.grad = {:.4}, b.grad = {:.4}", self.backward_w1, self.backward_b)
    }
}
