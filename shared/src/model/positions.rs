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

/// How a long-context model stretches RoPE's frequencies beyond the context it was first
/// trained at (`GptConfig::rope_scaling`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum RopeScaling {
    /// Every frequency divided by `factor` (position interpolation, Chen et al. 2023; Gemma 3's
    /// global layers).
    Linear { factor: f64 },
    /// Llama 3.1's scheme: frequencies whose wavelength exceeds `original_context_length /
    /// low_freq_factor` are divided by `factor`, those shorter than `original_context_length /
    /// high_freq_factor` kept, and those between blended smoothly.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_context_length: i64 },
}

impl RopeScaling {
    /// Why the scaling cannot be used, if it cannot.
    pub fn problem(&self) -> Option<String> {
        match *self {
            Self::Linear { factor } if !(factor.is_finite() && factor > 0.0) => {
                Some(format!("the factor must be a positive number, got {factor}"))
            }
            Self::Llama3 { factor, low_freq_factor, high_freq_factor, original_context_length } => {
                let positive = [factor, low_freq_factor, high_freq_factor].iter().all(|v| v.is_finite() && *v > 0.0);
                (!positive || high_freq_factor <= low_freq_factor || original_context_length <= 0).then(|| {
                    format!(
                        "llama3 scaling needs positive factors with high_freq_factor ({high_freq_factor}) above \
                         low_freq_factor ({low_freq_factor}) and a positive original_context_length \
                         ({original_context_length})"
                    )
                })
            }
            Self::Linear { .. } => None,
        }
    }

    /// The scaled frequencies for `inv_freq` (float64).
    fn apply(&self, inv_freq: &Tensor) -> Tensor {
        match *self {
            Self::Linear { factor } => inv_freq / factor,
            Self::Llama3 { factor, low_freq_factor, high_freq_factor, original_context_length } => {
                let original = original_context_length as f64;
                let wavelength = inv_freq.reciprocal() * (2.0 * std::f64::consts::PI);
                let low_freq_wavelength = original / low_freq_factor;
                let high_freq_wavelength = original / high_freq_factor;
                let long = wavelength.gt(low_freq_wavelength);
                let scaled = inv_freq.where_self(&long.logical_not(), &(inv_freq / factor));
                let smooth =
                    (wavelength.reciprocal() * original - low_freq_factor) / (high_freq_factor - low_freq_factor);
                let smoothed = (smooth.ones_like() - &smooth) * &scaled / factor + &smooth * &scaled;
                let medium = wavelength.ge(high_freq_wavelength).logical_and(&long.logical_not());
                smoothed.where_self(&medium, &scaled)
            }
        }
    }
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
        Self::scaled(head_dim, theta, None, device)
    }

    /// [`Rope::new`] with the frequencies stretched by `scaling`.
    pub fn scaled(head_dim: i64, theta: f64, scaling: Option<RopeScaling>, device: Device) -> Self {
        assert!(head_dim % 2 == 0, "RoPE needs an even head size");
        let exponents = Tensor::arange_start_step(0, head_dim, 2, (Kind::Double, device)) / head_dim as f64;
        let inv_freq = Tensor::from(theta).to_device(device).pow(&exponents).reciprocal();
        Self { inv_freq: scaling.map_or(inv_freq.shallow_clone(), |scaling| scaling.apply(&inv_freq)) }
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
    fn llama3_scaling_keeps_fast_frequencies_and_divides_slow_ones() {
        let scaling = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_context_length: 256,
        };
        let plain = Vec::<f64>::try_from(&Rope::new(8, 500_000.0, Device::Cpu).inv_freq).unwrap();
        let scaled = Vec::<f64>::try_from(&Rope::scaled(8, 500_000.0, Some(scaling), Device::Cpu).inv_freq).unwrap();
        // Wavelengths 6.3 (< 256 / 4: kept), 167 (between 64 and 256: blended), 4443 and
        // 118,000 (> 256: divided by 8).
        assert_eq!(scaled[0], plain[0]);
        let smooth = (256.0 * plain[1] / (2.0 * std::f64::consts::PI) - 1.0) / 3.0;
        let blended = (1.0 - smooth) * plain[1] / 8.0 + smooth * plain[1];
        assert!((scaled[1] - blended).abs() < 1e-15, "{} vs {blended}", scaled[1]);
        assert!((scaled[2] - plain[2] / 8.0).abs() < 1e-18 && (scaled[3] - plain[3] / 8.0).abs() < 1e-18);
        let linear = Rope::scaled(8, 10.0, Some(RopeScaling::Linear { factor: 4.0 }), Device::Cpu);
        assert!((linear.inv_freq.double_value(&[1]) - 10f64.powf(-0.25) / 4.0).abs() < 1e-15);
        assert!(RopeScaling::Linear { factor: 0.0 }.problem().is_some());
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
