//! Section 4.3, listing 4.4: the feed-forward module.

use tch::{nn, Tensor};

use super::{gelu, Activation, Linear};
use crate::core::init;

/// Listing 4.4: expand to 4 x `emb_dim`, GELU, project back (`layers.0`, `layers.2`).
#[derive(Debug)]
pub struct FeedForward {
    pub expand: Linear,
    pub project: Linear,
    pub activation: Activation,
    /// Computes the tanh GELU with LibTorch's fused kernel instead of listing 4.3's steps.
    pub fused: bool,
}

impl FeedForward {
    pub fn new(path: &nn::Path, emb_dim: i64) -> Self {
        Self::with_options(path, emb_dim, true, Activation::GeluTanh)
    }

    /// The module with or without biases, and with either GELU.
    pub fn with_options(path: &nn::Path, emb_dim: i64, bias: bool, activation: Activation) -> Self {
        let layers = path / "layers";
        Self {
            expand: init::linear(&layers / 0, emb_dim, 4 * emb_dim, bias).into(),
            project: init::linear(&layers / 2, 4 * emb_dim, emb_dim, bias).into(),
            activation,
            fused: false,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let hidden = x.apply(&self.expand);
        let activated = match self.activation {
            Activation::GeluTanh if self.fused => hidden.gelu("tanh"),
            Activation::GeluTanh => gelu(&hidden),
            Activation::Gelu => hidden.gelu("none"),
        };
        activated.apply(&self.project)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::LayerNorm;
    use tch::{Device, Kind};

    #[test]
    fn the_exact_gelu_is_x_times_the_normal_cdf_and_biases_can_go() {
        let vs = nn::VarStore::new(Device::Cpu);
        let ff = FeedForward::with_options(&vs.root(), 2, false, Activation::Gelu);
        assert!(ff.expand.bias.is_none() && ff.project.bias.is_none());
        // Identity-like weights: the output is the activation of the input.
        let eye = Tensor::eye(8, (Kind::Float, Device::Cpu));
        tch::no_grad(|| {
            ff.expand.ws().shallow_clone().copy_(&eye.narrow(1, 0, 2));
            ff.project.ws().shallow_clone().copy_(&eye.narrow(0, 0, 2));
        });
        let out = ff.forward(&Tensor::from_slice(&[1.0f32, -0.5]).view([1, 2]));
        // Phi(1) = 0.841345, Phi(-0.5) = 0.308538 (normal tables).
        assert!((out.double_value(&[0, 0]) - 0.841_345).abs() < 1e-5);
        assert!((out.double_value(&[0, 1]) + 0.5 * 0.308_538).abs() < 1e-5);
        let norm = LayerNorm::with_shift(&(vs.root() / "n"), 3, false);
        assert!(norm.shift.is_none());
    }
}
