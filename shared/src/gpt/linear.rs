//! The one linear layer every projection of the GPT model uses (`nn.Linear`, sections 3.4-4.6):
//! a dense weight, optionally with a low-rank adapter added to its output (appendix E's
//! LoRA, implemented in [`crate::lora`] through the [`Adapter`] trait), or integer weights
//! with per-tensor or per-channel scales (post-training quantization, exercise 21.34).

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// A trainable update added to a layer's output (appendix E's LoRA is one). The model knows
/// adapters only through this trait, so `gpt` does not depend on the module that makes them.
pub trait Adapter: std::fmt::Debug + Send {
    /// The update for input `x` `(.., in)`: `(.., out)`.
    fn forward(&self, x: &Tensor) -> Tensor;
    /// The update as a weight `[out, in]`, to fold into the base weight.
    fn delta_weight(&self) -> Tensor;
}

/// How weights are quantized: symmetric int8 with one scale for the whole matrix or one per
/// output channel (row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantization {
    PerTensor,
    PerChannel,
}

/// An int8 weight `[out, in]` and its float scales (`[]` or `[out, 1]`): `weight ≈ values * scales`.
#[derive(Debug)]
pub struct QuantizedWeight {
    pub values: Tensor,
    pub scales: Tensor,
    pub scheme: Quantization,
}

impl QuantizedWeight {
    /// Rounds `weight / scale` to the nearest integer in -127..=127, with the scale chosen so
    /// that the largest magnitude (of the tensor or of each row) maps to 127. Each element is
    /// off by at most half a step (`scale / 2`) after [`QuantizedWeight::dequantize`].
    pub fn quantize(weight: &Tensor, scheme: Quantization) -> Self {
        let weight = weight.detach().to_kind(Kind::Float);
        let max_abs = match scheme {
            Quantization::PerTensor => weight.abs().max(),
            Quantization::PerChannel => weight.abs().amax(-1, true),
        };
        // An all-zero row keeps scale 1 rather than dividing by zero.
        let scales = max_abs.clamp_min(f64::MIN_POSITIVE) / 127.0;
        let values = (&weight / &scales).round().clamp(-127.0, 127.0).to_kind(Kind::Int8);
        Self { values, scales, scheme }
    }

    /// The float weight the integers stand for.
    pub fn dequantize(&self) -> Tensor {
        self.values.to_kind(self.scales.kind()) * &self.scales
    }

    /// Bytes held: one per weight plus four per scale.
    pub fn bytes(&self) -> i64 {
        self.values.numel() as i64 + 4 * self.scales.numel() as i64
    }
}

/// A layer's weight.
#[derive(Debug)]
pub enum LinearWeight {
    /// A float matrix `[out, in]` (a variable of the model's `VarStore`, or the token
    /// embedding's matrix when the output head is tied to it).
    Dense(Tensor),
    Quantized(QuantizedWeight),
}

/// `y = x W^T + b`, plus the adapter's update when there is one.
#[derive(Debug)]
pub struct Linear {
    pub weight: LinearWeight,
    pub bias: Option<Tensor>,
    /// Appendix E's LoRA adapter, once [`crate::lora::apply_lora`] adds one.
    pub lora: Option<Box<dyn Adapter>>,
}

impl From<nn::Linear> for Linear {
    fn from(linear: nn::Linear) -> Self {
        Self::dense(linear.ws, linear.bs)
    }
}

impl Linear {
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight: LinearWeight::Dense(weight), bias, lora: None }
    }

    /// The dense weight `[out, in]`; panics on a quantized layer (use
    /// [`Linear::effective_weight`] for either).
    pub fn ws(&self) -> &Tensor {
        match &self.weight {
            LinearWeight::Dense(weight) => weight,
            LinearWeight::Quantized(_) => panic!("the layer is quantized: it has no float weight"),
        }
    }

    /// The weight the layer computes with, without the adapter: dense, or dequantized.
    pub fn effective_weight(&self) -> Tensor {
        match &self.weight {
            LinearWeight::Dense(weight) => weight.shallow_clone(),
            LinearWeight::Quantized(q) => q.dequantize(),
        }
    }

    /// `(out, in)`.
    pub fn shape(&self) -> (i64, i64) {
        let weight = match &self.weight {
            LinearWeight::Dense(weight) => weight,
            LinearWeight::Quantized(q) => &q.values,
        };
        weight.size2().expect("a linear weight is 2-d")
    }

    /// Replaces the dense weight by its int8 form. The layer must have no adapter (merge it
    /// first), and the float weight it drops stays in the `VarStore` that made it.
    pub fn quantize(&mut self, scheme: Quantization) -> Result<()> {
        ensure!(self.lora.is_none(), "merge the LoRA adapter before quantizing");
        if let LinearWeight::Dense(weight) = &self.weight {
            self.weight = LinearWeight::Quantized(QuantizedWeight::quantize(weight, scheme));
        }
        Ok(())
    }

    /// Folds the adapter into the dense weight (`W += delta`) and drops it: the same outputs,
    /// one matrix product instead of three.
    pub fn merge(&mut self) {
        if let (Some(lora), LinearWeight::Dense(weight)) = (self.lora.take(), &self.weight) {
            tch::no_grad(|| {
                let _ = weight.shallow_clone().g_add_(&lora.delta_weight());
            });
        }
    }
}

impl nn::Module for Linear {
    fn forward(&self, x: &Tensor) -> Tensor {
        let out = match &self.weight {
            LinearWeight::Dense(weight) => x.linear(weight, self.bias.as_ref()),
            LinearWeight::Quantized(q) => x.linear(&q.dequantize().to_kind(x.kind()), self.bias.as_ref()),
        };
        match &self.lora {
            Some(lora) => out + lora.forward(x),
            None => out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn quantization_error_is_at_most_half_a_step() {
        let _rng = crate::device::global_rng_lock();
        tch::manual_seed(5);
        let weight =
            Tensor::randn([16, 24], (Kind::Float, Device::Cpu)) * Tensor::rand([16, 1], (Kind::Float, Device::Cpu));
        for scheme in [Quantization::PerTensor, Quantization::PerChannel] {
            let q = QuantizedWeight::quantize(&weight, scheme);
            assert_eq!(q.values.kind(), Kind::Int8);
            let error = (q.dequantize() - &weight).abs();
            // half a step, plus float32 rounding of the division and the product
            let half_step = q.scales.expand_as(&weight) * 0.5 * (1.0 + 1e-5);
            assert!(bool::try_from(error.le_tensor(&half_step).all()).unwrap(), "{scheme:?}");
            assert!(q.values.abs().max().int64_value(&[]) == 127, "the largest weight uses the whole range");
        }
        // Per-channel scales are never coarser than the per-tensor one.
        let per_tensor = QuantizedWeight::quantize(&weight, Quantization::PerTensor);
        let per_channel = QuantizedWeight::quantize(&weight, Quantization::PerChannel);
        assert_eq!(per_channel.scales.size(), [16, 1]);
        assert!(per_channel.scales.max().double_value(&[]) <= per_tensor.scales.double_value(&[]) * (1.0 + 1e-6));
        let zeros =
            QuantizedWeight::quantize(&Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)), Quantization::PerChannel);
        assert_eq!(zeros.dequantize().abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn a_quantized_layer_computes_with_the_dequantized_weight() {
        let weight = Tensor::from_slice(&[0.5f32, -1.0, 0.25, 2.0]).view([2, 2]);
        let bias = Tensor::from_slice(&[0.1f32, -0.1]);
        let mut layer = Linear::dense(weight.copy(), Some(bias.copy()));
        let x = Tensor::from_slice(&[1.0f32, 3.0]).view([1, 2]);
        let dense = x.apply(&layer);
        layer.quantize(Quantization::PerChannel).unwrap();
        let q = x.apply(&layer);
        assert!(q.allclose(&x.linear(&layer.effective_weight(), Some(&bias)), 1e-6, 1e-6, false));
        assert!(q.allclose(&dense, 1e-2, 1e-2, false));
        assert_eq!(layer.shape(), (2, 2));
    }
}
