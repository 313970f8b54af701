//! Section 4.2, listing 4.2: layer normalisation.

use tch::{nn, Tensor};

/// Listing 4.2: normalises the last dimension to mean 0 and (biased) variance 1, then
/// applies a learned `scale` (ones) and `shift` (zeros; absent without biases).
#[derive(Debug)]
pub struct LayerNorm {
    pub scale: Tensor,
    pub shift: Option<Tensor>,
    pub eps: f64,
    /// Computes with LibTorch's fused `layer_norm` instead of listing 4.2's steps (the same
    /// function, one pass; see [`crate::model::GptModel::use_fused_kernels`]).
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
}
