//! Section 4.3, listing 4.3: GELU, in GPT-2's tanh approximation and exact; and SiLU
//! (`x * sigmoid(x)`), which the gated feed-forward of Llama and Qwen3 uses (SwiGLU).

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The feed-forward module's activation (`GptConfig::activation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    GeluTanh,
    Gelu,
    /// `x * sigmoid(x)` (SiLU, also called swish).
    Silu,
}

/// Listing 4.3: GELU with the tanh approximation GPT-2 was trained with.
pub fn gelu(x: &Tensor) -> Tensor {
    // The listing's operations in its order, `0.5 * x` first: the backward pass then adds
    // the three gradients that reach `x` in PyTorch's order, so training matches it bit for bit.
    let half_x = x * 0.5;
    let cubic: Tensor = x.pow_tensor_scalar(3) * 0.044715;
    let inner: Tensor = (x + cubic) * (2.0 / std::f64::consts::PI).sqrt();
    half_x * (inner.tanh() + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
