//! How the model knows where a token sits: the book's learned position embeddings (section
//! 2.8), the fixed sinusoidal table of "Attention Is All You Need", rotary position
//! embeddings (RoPE, Su et al. 2021, in the "rotate half" layout of GPT-NeoX and Llama), or
//! nothing at all (the causal mask alone, "NoPE").

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// The position scheme of a model (`GptConfig::pos_encoding`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PosEncoding {
    /// A trained `(context_length, emb_dim)` table added to the token embeddings: GPT-2.
    #[default]
    Learned,
    /// Queries and keys rotated by their absolute position in every attention layer.
    Rope,
    /// A fixed table of sines and cosines added to the token embeddings.
    Sinusoidal,
    /// No position information besides the causal mask.
    None,
}

impl PosEncoding {
    /// Whether positions come from a table as long as the context (learned or sinusoidal):
    /// such a model cannot read past its context, and its keys carry their absolute positions.
    pub fn uses_table(self) -> bool {
        matches!(self, Self::Learned | Self::Sinusoidal)
    }
}

/// The `(positions, dim)` sinusoidal table: `sin(p / 10000^(2i/dim))` in even columns,
/// `cos` of the same angle in odd ones.
pub fn sinusoidal_table(positions: i64, dim: i64, device: Device) -> Tensor {
    let position = Tensor::arange(positions, (Kind::Double, device)).unsqueeze(1);
    let i = Tensor::arange_start_step(0, dim, 2, (Kind::Double, device));
    let angles = position * (i * (-(10_000f64).ln() / dim as f64)).exp().unsqueeze(0); // (P, ceil(dim/2))
    let table = Tensor::zeros([positions, dim], (Kind::Double, device));
    table.slice(1, 0, dim, 2).copy_(&angles.sin());
    table.slice(1, 1, dim, 2).copy_(&angles.cos().narrow(1, 0, dim / 2));
    table.to_kind(Kind::Float)
}

/// Rotary position embeddings for heads of `head_dim` (even) features: feature pairs
/// `(j, j + head_dim/2)` turn by the angle `p * theta^(-2j/head_dim)` at position `p`. Dot
/// products of rotated queries and keys then depend only on the distance between positions.
#[derive(Debug)]
pub struct Rope {
    /// `(head_dim / 2,)` rotation frequencies, float64.
    inv_freq: Tensor,
}

impl Rope {
    pub fn new(head_dim: i64, theta: f64, device: Device) -> Self {
        assert!(head_dim % 2 == 0, "RoPE needs an even head size");
        let exponents = Tensor::arange_start_step(0, head_dim, 2, (Kind::Double, device)) / head_dim as f64;
        Self { inv_freq: Tensor::from(theta).to_device(device).pow(&exponents).reciprocal() }
    }

    /// Rotates `x` `(B, heads, T, head_dim)` whose `T` rows sit at `positions` `(T,)` (int64).
    pub fn rotate(&self, x: &Tensor, positions: &Tensor) -> Tensor {
        let angles = positions.to_kind(Kind::Double).unsqueeze(1) * self.inv_freq.unsqueeze(0); // (T, hd/2)
        let angles = Tensor::cat(&[&angles, &angles], 1);
        let (cos, sin) = (angles.cos().to_kind(x.kind()), angles.sin().to_kind(x.kind()));
        let half = x.size()[3] / 2;
        let rotated_half = Tensor::cat(&[-x.narrow(3, half, half), x.narrow(3, 0, half)], 3);
        x * cos + rotated_half * sin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinusoidal_table_has_sines_and_cosines() {
        let table = sinusoidal_table(4, 6, Device::Cpu);
        assert_eq!(table.size(), [4, 6]);
        // position 0: sin 0 = 0, cos 0 = 1
        assert_eq!(Vec::<f32>::try_from(table.get(0)).unwrap(), [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
        // column 0 is sin(p), column 3 is cos(p / 10000^(2/6))
        assert!((table.double_value(&[3, 0]) - 3f64.sin()).abs() < 1e-6);
        assert!((table.double_value(&[2, 3]) - (2.0 / 10_000f64.powf(2.0 / 6.0)).cos()).abs() < 1e-6);
    }

    #[test]
    fn rope_preserves_norms_and_sees_only_distances() {
        let _rng = crate::core::device::global_rng_lock();
        tch::manual_seed(3);
        let rope = Rope::new(8, 10_000.0, Device::Cpu);
        let q = Tensor::randn([1, 2, 5, 8], (Kind::Float, Device::Cpu));
        let k = Tensor::randn([1, 2, 5, 8], (Kind::Float, Device::Cpu));
        let at = |offset: i64| Tensor::arange_start(offset, offset + 5, (Kind::Int64, Device::Cpu));
        let rotated = rope.rotate(&q, &at(0));
        let norms = |x: &Tensor| x.norm_scalaropt_dim(2, [-1], false);
        assert!(norms(&rotated).allclose(&norms(&q), 1e-5, 1e-5, false));
        assert!(rope.rotate(&q, &Tensor::zeros([5], (Kind::Int64, Device::Cpu))).equal(&q), "position 0 is no turn");
        // Scores after shifting every position by 100 are the same.
        let scores = |offset| rope.rotate(&q, &at(offset)).matmul(&rope.rotate(&k, &at(offset)).transpose(2, 3));
        assert!(scores(0).allclose(&scores(100), 1e-4, 1e-4, false));
        assert!(!scores(0).allclose(&q.matmul(&k.transpose(2, 3)), 1e-2, 1e-2, false));
    }
}
