//! Sections 4.2-4.5: layer normalisation, GELU, the feed-forward module and the transformer
//! block (listings 4.2-4.6).

use anyhow::Result;
use tch::{nn, Tensor};

use super::{Activation, GptConfig, Linear, NormPlacement};
use crate::attention::{CacheAccess, MultiHeadAttention};
use crate::core::init;

/// Listing 4.2: normalises the last dimension to mean 0 and (biased) variance 1, then
/// applies a learned `scale` (ones) and `shift` (zeros; absent without biases).
#[derive(Debug)]
pub struct LayerNorm {
    pub scale: Tensor,
    pub shift: Option<Tensor>,
    pub eps: f64,
    /// Computes with LibTorch's fused `layer_norm` instead of listing 4.2's steps (the same
    /// function, one pass; see [`crate::gpt::GptModel::use_fused_kernels`]).
    pub fused: bool,
}

impl LayerNorm {
    pub fn new(path: &nn::Path, emb_dim: i64) -> Self {
        Self::with_shift(path, emb_dim, true)
    }

    /// The norm with or without its `shift` (`GptConfig::bias`).
    pub fn with_shift(path: &nn::Path, emb_dim: i64, shift: bool) -> Self {
        Self {
            scale: path.ones("scale", &[emb_dim]),
            shift: shift.then(|| path.zeros("shift", &[emb_dim])),
            eps: 1e-5,
            fused: false,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        if self.fused {
            let width = self.scale.size();
            return x.layer_norm(&width, Some(&self.scale), self.shift.as_ref(), self.eps, false);
        }
        let mean = x.mean_dim(-1, true, x.kind()); // in the input's dtype, as PyTorch
        let var = x.var_dim(-1, false, true); // biased: divide by n, as the book (and GPT-2) do
        let norm = (x - mean) / (var + self.eps).sqrt();
        let scaled = &self.scale * norm;
        match &self.shift {
            Some(shift) => scaled + shift,
            None => scaled,
        }
    }
}

/// Listing 4.3: GELU with the tanh approximation GPT-2 was trained with.
pub fn gelu(x: &Tensor) -> Tensor {
    let cubic: Tensor = x.pow_tensor_scalar(3) * 0.044715;
    let inner: Tensor = (x + cubic) * (2.0 / std::f64::consts::PI).sqrt();
    x * (inner.tanh() + 1.0) * 0.5
}

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

/// Listing 4.6: attention and feed-forward, each wrapped in a shortcut connection, with
/// pre-norm (GPT-2, the book) or post-norm (GPT-1: normalise after each addition).
#[derive(Debug)]
pub struct TransformerBlock {
    pub att: MultiHeadAttention,
    pub ff: FeedForward,
    pub norm1: LayerNorm,
    pub norm2: LayerNorm,
    pub drop_shortcut: f64,
    pub norm_placement: NormPlacement,
}

impl TransformerBlock {
    /// Creates the parameters in the book's order: attention, feed-forward, norm1, norm2.
    pub fn new(path: &nn::Path, cfg: &GptConfig) -> Result<Self> {
        let att = MultiHeadAttention::with_options(
            path / "att",
            cfg.emb_dim,
            cfg.emb_dim,
            cfg.context_length,
            cfg.attn_dropout(),
            cfg.n_heads,
            cfg.qkv_bias,
            cfg.attention_options(),
        )?;
        Ok(Self {
            att,
            ff: FeedForward::with_options(&(path / "ff"), cfg.emb_dim, cfg.bias, cfg.activation),
            norm1: LayerNorm::with_shift(&(path / "norm1"), cfg.emb_dim, cfg.bias),
            norm2: LayerNorm::with_shift(&(path / "norm2"), cfg.emb_dim, cfg.bias),
            drop_shortcut: cfg.shortcut_dropout(),
            norm_placement: cfg.norm_placement,
        })
    }

    /// `x`: `(B, T, emb_dim)` at positions `0..T`; dropout only when `train`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (_, t, _) = x.size3().expect("a (batch, tokens, features) tensor");
        let positions = Tensor::arange(t, (tch::Kind::Int64, x.device()));
        self.forward_at(x, &positions, CacheAccess::None, train, false).0
    }

    /// The block for tokens at `positions`, reading and writing `cache` (see
    /// [`MultiHeadAttention::forward_at`]); also returns the attention weights when `weights`.
    pub fn forward_at(
        &self,
        x: &Tensor,
        positions: &Tensor,
        cache: CacheAccess,
        train: bool,
        weights: bool,
    ) -> (Tensor, Option<Tensor>) {
        let attend = |x: &Tensor| self.att.forward_at(x, positions, cache, train, weights);
        let shortcut = |y: Tensor| y.dropout(self.drop_shortcut, train);
        match self.norm_placement {
            NormPlacement::Pre => {
                // shortcut connection around attention
                let (attended, attention) = attend(&self.norm1.forward(x));
                let x = x + shortcut(attended);
                // shortcut connection around the feed-forward module
                (&x + shortcut(self.ff.forward(&self.norm2.forward(&x))), attention)
            }
            NormPlacement::Post => {
                let (attended, attention) = attend(x);
                let x = self.norm1.forward(&(x + shortcut(attended)));
                (self.norm2.forward(&(&x + shortcut(self.ff.forward(&x)))), attention)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn layer_norm_gives_mean_0_and_variance_1() {
        let vs = nn::VarStore::new(Device::Cpu);
        let norm = LayerNorm::new(&vs.root(), 5);
        let x = Tensor::from_slice(&[0.1f32, 2.0, -3.0, 4.5, 0.0, 1.0, 1.0, 1.0, 2.0, 7.0]).view([2, 5]);
        let out = norm.forward(&x);
        let mean = out.mean_dim(-1, false, Kind::Float);
        let var = out.var_dim(-1, false, false);
        assert!(mean.abs().max().double_value(&[]) < 1e-6);
        assert!((var - 1.0).abs().max().double_value(&[]) < 1e-4);
    }

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

    #[test]
    fn gelu_is_the_tanh_approximation() {
        let x = Tensor::from_slice(&[-3.0f32, -1.0, 0.0, 0.5, 2.0]);
        let ours = Vec::<f32>::try_from(gelu(&x)).unwrap();
        let reference = Vec::<f32>::try_from(x.gelu("tanh")).unwrap();
        for (a, b) in ours.iter().zip(&reference) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // It differs from the erf form, if only slightly.
        assert_ne!(reference, Vec::<f32>::try_from(x.gelu("none")).unwrap());
    }
}
