//! Section 4.3, listing 4.4: the feed-forward module; and the gated form of Llama, Qwen3
//! and Gemma (Shazeer 2020, "GLU Variants Improve Transformer"): the activated output of a
//! gate projection multiplies a second projection before the projection back (SwiGLU with
//! SiLU, GeGLU with GELU).

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::{gelu, Activation, Linear};
use crate::core::init;

/// The feed-forward module's form (`GptConfig::feed_forward`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedForwardKind {
    /// Listing 4.4: expand, activate, project (GPT-2).
    #[default]
    Mlp,
    /// `project(activation(gate(x)) * expand(x))`: SwiGLU (Llama, Qwen3), GeGLU (Gemma).
    Gated,
}

/// Listing 4.4: expand to 4 x `emb_dim`, GELU, project back (`layers.0`, `layers.2`). The
/// gated form names its layers as the book's companion Llama code does: `fc1` (the gate),
/// `fc2` (the expansion it multiplies) and `fc3` (the projection back).
#[derive(Debug)]
pub struct FeedForward {
    pub expand: Linear,
    pub project: Linear,
    /// The gated form's gate.
    pub gate: Option<Linear>,
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
        Self::of_kind(path, FeedForwardKind::Mlp, emb_dim, 4 * emb_dim, bias, activation)
    }

    /// A module of `kind` with `hidden_dim` inner features.
    pub fn of_kind(
        path: &nn::Path,
        kind: FeedForwardKind,
        emb_dim: i64,
        hidden_dim: i64,
        bias: bool,
        activation: Activation,
    ) -> Self {
        let layer = |name: &str, d_in, d_out| -> Linear { init::linear(path / name, d_in, d_out, bias).into() };
        match kind {
            FeedForwardKind::Mlp => Self {
                expand: init::linear(path / "layers" / 0, emb_dim, hidden_dim, bias).into(),
                project: init::linear(path / "layers" / 2, hidden_dim, emb_dim, bias).into(),
                gate: None,
                activation,
                fused: false,
            },
            FeedForwardKind::Gated => {
                let gate = layer("fc1", emb_dim, hidden_dim);
                let expand = layer("fc2", emb_dim, hidden_dim);
                Self { expand, project: layer("fc3", hidden_dim, emb_dim), gate: Some(gate), activation, fused: false }
            }
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let activated = match &self.gate {
            None => self.activate(&x.apply(&self.expand)),
            Some(gate) => self.activate(&x.apply(gate)) * x.apply(&self.expand),
        };
        activated.apply(&self.project)
    }

    fn activate(&self, hidden: &Tensor) -> Tensor {
        match self.activation {
            Activation::GeluTanh if self.fused || self.gate.is_some() => hidden.gelu("tanh"),
            Activation::GeluTanh => gelu(hidden),
            Activation::Gelu => hidden.gelu("none"),
            Activation::Silu => hidden.silu(),
        }
    }

    /// The linear layers with their parameter names under the module: `layers.0` and
    /// `layers.2`, or the gated form's `fc1`, `fc2`, `fc3`.
    pub fn linear_layers_mut(&mut self) -> Vec<(&'static str, &mut Linear)> {
        match &mut self.gate {
            None => vec![("layers.0", &mut self.expand), ("layers.2", &mut self.project)],
            Some(gate) => vec![("fc1", gate), ("fc2", &mut self.expand), ("fc3", &mut self.project)],
        }
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
