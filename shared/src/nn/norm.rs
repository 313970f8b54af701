//! The normalisation a model uses: the book's layer norm (listing 4.2) or root-mean-square
//! normalisation (RMSNorm, Zhang and Sennrich 2019), which Llama, Qwen3 and Gemma use: no mean
//! subtracted and no shift, only a learned scale. Gemma stores its scale as an offset from 1
//! (`x * (1 + weight)`, weights initialised to 0).

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use super::LayerNorm;

/// Which norm a model uses (`GptConfig::norm`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// Listing 4.2: mean 0 and variance 1, then scale and shift (GPT-2).
    #[default]
    LayerNorm,
    /// `x / rms(x) * scale` (Llama, Qwen3).
    RmsNorm,
    /// `x / rms(x) * (1 + scale)` (Gemma).
    RmsNormPlusOne,
}

/// RMSNorm over the last dimension, computed in float32 whatever the input's dtype (as
/// Hugging Face's Llama and Gemma do).
#[derive(Debug)]
pub struct RmsNorm {
    pub scale: Tensor,
    pub eps: f64,
    /// Gemma's form: the scale applied is `1 + scale`.
    pub plus_one: bool,
}

impl RmsNorm {
    /// The scale is named `scale`, like the layer norm's: ones, or zeros in Gemma's form.
    pub fn new(path: &nn::Path, dim: i64, eps: f64, plus_one: bool) -> Self {
        let scale = if plus_one { path.zeros("scale", &[dim]) } else { path.ones("scale", &[dim]) };
        Self { scale, eps, plus_one }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let x32 = x.to_kind(Kind::Float);
        let normed = &x32 * (x32.square().mean_dim(-1, true, Kind::Float) + self.eps).rsqrt();
        if self.plus_one {
            // Gemma multiplies in float32, then casts.
            (normed * (self.scale.to_kind(Kind::Float) + 1.0)).to_kind(x.kind())
        } else {
            // Llama casts, then multiplies.
            &self.scale * normed.to_kind(x.kind())
        }
    }
}

/// A model's norm layer.
#[derive(Debug)]
pub enum Norm {
    Layer(LayerNorm),
    Rms(RmsNorm),
}

impl Norm {
    /// A norm of `kind` over `dim` features; a layer norm has a shift when `shift`. `eps`:
    /// `None` is 1e-5 (GPT-2's).
    pub fn new(path: &nn::Path, dim: i64, kind: NormKind, eps: Option<f64>, shift: bool) -> Self {
        let eps = eps.unwrap_or(1e-5);
        match kind {
            NormKind::LayerNorm => Self::Layer(LayerNorm { eps, ..LayerNorm::with_shift(path, dim, shift) }),
            NormKind::RmsNorm => Self::Rms(RmsNorm::new(path, dim, eps, false)),
            NormKind::RmsNormPlusOne => Self::Rms(RmsNorm::new(path, dim, eps, true)),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Self::Layer(norm) => norm.forward(x),
            Self::Rms(norm) => norm.forward(x),
        }
    }

    /// Computes a layer norm with LibTorch's fused kernel (RMSNorm has a single form).
    pub fn use_fused_kernel(&mut self) {
        if let Self::Layer(norm) = self {
            norm.fused = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn rms_norm_divides_by_the_root_mean_square() {
        let vs = nn::VarStore::new(Device::Cpu);
        let x = Tensor::from_slice(&[3.0f32, 4.0]).view([1, 2]);
        // rms = sqrt((9 + 16) / 2) = 3.5355
        let plain = Norm::new(&(vs.root() / "a"), 2, NormKind::RmsNorm, Some(0.0), false);
        let out = Vec::<f32>::try_from(plain.forward(&x).view([-1])).unwrap();
        assert!((out[0] - 3.0 / 3.535_534).abs() < 1e-6 && (out[1] - 4.0 / 3.535_534).abs() < 1e-6, "{out:?}");
        // Gemma's zeros mean a scale of 1: the same output; a scale of 1 there doubles it.
        let gemma = Norm::new(&(vs.root() / "b"), 2, NormKind::RmsNormPlusOne, Some(0.0), false);
        assert!(gemma.forward(&x).allclose(&plain.forward(&x), 1e-6, 1e-6, false));
        if let Norm::Rms(norm) = &gemma {
            let _ = tch::no_grad(|| norm.scale.shallow_clone().fill_(1.0));
        }
        assert!(gemma.forward(&x).allclose(&(plain.forward(&x) * 2.0), 1e-6, 1e-6, false));
        assert_eq!(vs.variables().len(), 2, "no shift");
    }
}
