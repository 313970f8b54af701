//! The one linear layer every projection of the GPT model uses (`nn.Linear`, sections 3.4-4.6):
//! a dense weight, optionally with a low-rank adapter added to its output (appendix E's
//! LoRA, implemented in [`crate::model::lora`] through the [`Adapter`] trait), or integer weights
//! of 2-8 bits with per-tensor or per-channel scales (post-training quantization, exercise 21.34).

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use crate::core::native::{self, PackedInt8Linear};

/// A trainable update added to a layer's output (appendix E's LoRA is one). The model knows
/// adapters only through this trait, so `gpt` does not depend on the module that makes them.
pub trait Adapter: std::fmt::Debug + Send {
    /// The update for input `x` `(.., in)`: `(.., out)`.
    fn forward(&self, x: &Tensor) -> Tensor;
    /// The update as a weight `[out, in]`, to fold into the base weight.
    fn delta_weight(&self) -> Tensor;
}

/// The integer grid of a quantized weight (exercise 21.34).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantScheme {
    /// Naive round-to-nearest on a fixed grid over [-1, 1] (no scale fitted to the weights;
    /// weights outside are clipped).
    Fixed,
    /// Symmetric: one scale maps the largest magnitude to the largest integer
    /// (`2^(bits-1) - 1`); zero stays exactly zero.
    Absmax,
    /// Asymmetric: a scale and an integer zero point map the range `[min, max]` (widened to
    /// include 0) onto all `2^bits` levels.
    ZeroPoint,
}

/// How many scales a weight matrix gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    PerTensor,
    /// One per output channel (row of `[out, in]`).
    PerChannel,
}

/// How a linear layer's weight is quantized: bits (2-8), grid and granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantization {
    pub bits: u8,
    pub scheme: QuantScheme,
    pub granularity: Granularity,
}

impl Quantization {
    /// Symmetric int8 with one scale per output channel: the usual weight-only int8.
    pub const INT8: Self = Self { bits: 8, scheme: QuantScheme::Absmax, granularity: Granularity::PerChannel };

    pub fn validate(&self) -> Result<()> {
        ensure!((2..=8).contains(&self.bits), "quantization needs 2 to 8 bits, got {}", self.bits);
        Ok(())
    }

    /// The largest integer of the symmetric grids: `2^(bits-1) - 1`.
    fn symmetric_max(&self) -> f64 {
        ((1i64 << (self.bits - 1)) - 1) as f64
    }
}

impl std::fmt::Display for Quantization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.scheme {
            QuantScheme::Fixed => "fixed-grid",
            QuantScheme::Absmax => "absmax",
            QuantScheme::ZeroPoint => "zero-point",
        };
        let granularity = match (self.scheme, self.granularity) {
            (QuantScheme::Fixed, _) => "",
            (_, Granularity::PerTensor) => " per tensor",
            (_, Granularity::PerChannel) => " per channel",
        };
        write!(f, "{}-bit {scheme}{granularity}", self.bits)
    }
}

/// A weight `[out, in]` as integers (held in int8) and float scales (`[]` or `[out, 1]`),
/// with zero points for the asymmetric grid: `weight ≈ (values - zero_points) * scales`.
#[derive(Debug)]
pub struct QuantizedWeight {
    pub values: Tensor,
    pub scales: Tensor,
    /// The integer that stands for 0 (zero-point grids only), as a float of the scales' shape.
    pub zero_points: Option<Tensor>,
    pub quantization: Quantization,
    /// The weight packed for fbgemm's int8 kernel, which multiplies in integers instead of
    /// dequantizing first ([`QuantizedWeight::use_int8_kernel`]).
    pub int8_kernel: Option<PackedInt8Linear>,
}

impl QuantizedWeight {
    /// Rounds the weight to the nearest point of the grid `quantization` describes. Every
    /// element inside the grid's range is off by at most half a step (`scale / 2`) after
    /// [`QuantizedWeight::dequantize`]; the extremes land on the integer limits.
    pub fn quantize(weight: &Tensor, quantization: Quantization) -> Result<Self> {
        quantization.validate()?;
        let weight = weight.detach().to_kind(Kind::Float);
        let reduce = |t: Tensor, largest: bool| match (quantization.granularity, largest) {
            (Granularity::PerTensor, true) => t.max(),
            (Granularity::PerTensor, false) => t.min(),
            (Granularity::PerChannel, true) => t.amax(-1, true),
            (Granularity::PerChannel, false) => t.amin(-1, true),
        };
        let q_max = quantization.symmetric_max();
        let (values, scales, zero_points) = match quantization.scheme {
            QuantScheme::Fixed => {
                let scale = Tensor::from(1.0 / q_max).to_kind(Kind::Float).to_device(weight.device());
                ((&weight / &scale).round().clamp(-q_max, q_max), scale, None)
            }
            QuantScheme::Absmax => {
                // An all-zero row keeps a tiny scale rather than dividing by zero.
                let scales = reduce(weight.abs(), true).clamp_min(f64::MIN_POSITIVE) / q_max;
                ((&weight / &scales).round().clamp(-q_max, q_max), scales, None)
            }
            QuantScheme::ZeroPoint => {
                // Levels 0..=2^bits - 1, held shifted down by 2^(bits-1) to fit in int8.
                let levels = ((1i64 << quantization.bits) - 1) as f64;
                let shift = (1i64 << (quantization.bits - 1)) as f64;
                let low = reduce(weight.shallow_clone(), false).clamp_max(0.0);
                let high = reduce(weight.shallow_clone(), true).clamp_min(0.0);
                let scales = (high - &low).clamp_min(f64::MIN_POSITIVE) / levels;
                let zero_points = (-low / &scales).round();
                let values = ((&weight / &scales).round() + &zero_points).clamp(0.0, levels) - shift;
                (values, scales, Some(zero_points - shift))
            }
        };
        Ok(Self { values: values.to_kind(Kind::Int8), scales, zero_points, quantization, int8_kernel: None })
    }

    /// The float weight the integers stand for.
    pub fn dequantize(&self) -> Tensor {
        let values = self.values.to_kind(self.scales.kind());
        match &self.zero_points {
            Some(zero_points) => (values - zero_points) * &self.scales,
            None => values * &self.scales,
        }
    }

    /// Bytes held when packed: `bits` per weight, four per scale, one per zero point.
    pub fn bytes(&self) -> i64 {
        let packed = (self.values.numel() as i64 * self.quantization.bits as i64 + 7) / 8;
        packed + 4 * self.scales.numel() as i64 + self.zero_points.as_ref().map_or(0, |z| z.numel() as i64)
    }

    /// Multiplies with fbgemm's dynamically quantized int8 kernel from now on (PyTorch's
    /// `quantize_dynamic`): each call quantizes the activations to 8 bits with a scale taken
    /// from their range, multiplies integers with integer sums, and rescales to float. Only
    /// 8-bit absmax per-channel weights on the CPU.
    pub fn use_int8_kernel(&mut self) -> Result<()> {
        ensure!(
            self.quantization == Quantization::INT8,
            "the int8 kernel takes {} weights, not {}",
            Quantization::INT8,
            self.quantization
        );
        ensure!(self.values.device() == tch::Device::Cpu, "the int8 kernels (fbgemm) run on the CPU only");
        self.int8_kernel = Some(PackedInt8Linear::pack(&self.values, &self.scales, None)?);
        Ok(())
    }

    /// `x W^T` for `x` `(.., in)`.
    fn matmul(&self, x: &Tensor) -> Tensor {
        match &self.int8_kernel {
            None => x.matmul(&self.dequantize().to_kind(x.kind()).tr()),
            // Reduced range (7-bit activations) keeps AVX2's 16-bit partial sums from
            // saturating, as PyTorch's x86 default does.
            Some(packed) => packed
                .forward(&x.contiguous().to_kind(Kind::Float), true)
                .expect("the layer's input width was checked by the model")
                .to_kind(x.kind()),
        }
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
    /// Appendix E's LoRA adapter, once [`crate::model::lora::apply_lora`] adds one.
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

    /// Replaces the dense weight by its quantized form. The layer must have no adapter (merge
    /// it first), and the float weight it drops stays in the `VarStore` that made it.
    pub fn quantize(&mut self, quantization: Quantization) -> Result<()> {
        ensure!(self.lora.is_none(), "merge the LoRA adapter before quantizing");
        if let LinearWeight::Dense(weight) = &self.weight {
            self.weight = LinearWeight::Quantized(QuantizedWeight::quantize(weight, quantization)?);
        }
        Ok(())
    }

    /// Bytes of the weight as the layer holds it (float, or packed integers and scales),
    /// without the bias.
    pub fn weight_bytes(&self) -> i64 {
        match &self.weight {
            LinearWeight::Dense(weight) => crate::core::tensors::byte_size(weight),
            LinearWeight::Quantized(q) => q.bytes(),
        }
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

/// `x W^T + b`. In inference on the CPU with at most 16 rows of float32 (decoding a small
/// batch), it goes through our AVX2 kernel ([`native::linear_few_rows`]), which reads the
/// weight once at nearly the memory bandwidth: MKL reads it at about half for one row, and
/// copies ("packs") the whole weight for a product with a few. The same sums, rounded in
/// another order.
fn dense_forward(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let width = *x.size().last().expect("at least one dimension");
    let rows = x.numel() as i64 / width.max(1);
    let small = (1..=16).contains(&rows) && x.kind() == Kind::Float && weight.kind() == Kind::Float;
    if !small || x.requires_grad() || x.device() != tch::Device::Cpu {
        return x.linear(weight, bias);
    }
    let mut shape = x.size();
    *shape.last_mut().expect("at least one dimension") = weight.size()[0];
    native::linear_few_rows(&x.reshape([rows, width]), weight, bias)
        .expect("the shapes were checked by the layer")
        .view(shape.as_slice())
}

impl nn::Module for Linear {
    fn forward(&self, x: &Tensor) -> Tensor {
        let out = match &self.weight {
            LinearWeight::Dense(weight) => dense_forward(x, weight, self.bias.as_ref()),
            LinearWeight::Quantized(q) => match &self.bias {
                Some(bias) => q.matmul(x) + bias,
                None => q.matmul(x),
            },
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

    fn all_quantizations() -> impl Iterator<Item = Quantization> {
        [8u8, 6, 4, 3, 2].into_iter().flat_map(|bits| {
            [QuantScheme::Fixed, QuantScheme::Absmax, QuantScheme::ZeroPoint].into_iter().flat_map(move |scheme| {
                [Granularity::PerTensor, Granularity::PerChannel].map(|granularity| Quantization {
                    bits,
                    scheme,
                    granularity,
                })
            })
        })
    }

    #[test]
    fn quantization_error_is_at_most_half_a_step_and_extremes_hit_the_limits() {
        let _rng = crate::core::device::global_rng_lock();
        tch::manual_seed(5);
        // Rows of different spreads, some skewed positive.
        let weight = Tensor::randn([16, 24], (Kind::Float, Device::Cpu))
            * Tensor::rand([16, 1], (Kind::Float, Device::Cpu))
            * 0.5
            + Tensor::rand([16, 1], (Kind::Float, Device::Cpu)) * 0.1;
        for quantization in all_quantizations() {
            let q = QuantizedWeight::quantize(&weight, quantization).unwrap();
            assert_eq!(q.values.kind(), Kind::Int8);
            let error = (q.dequantize() - &weight).abs();
            // half a step, plus float32 rounding of the division and the product
            let half_step = q.scales.expand_as(&weight) * 0.5 * (1.0 + 1e-5) + 1e-7;
            assert!(bool::try_from(error.le_tensor(&half_step).all()).unwrap(), "{quantization}");
            let (low, high) = (q.values.min().int64_value(&[]), q.values.max().int64_value(&[]));
            let limit = (1i64 << (quantization.bits - 1)) - 1;
            match quantization.scheme {
                // The weights lie inside [-1, 1], which the fixed grid spans.
                QuantScheme::Fixed => assert!(low >= -limit && high <= limit, "{quantization}"),
                QuantScheme::Absmax => assert_eq!(low.abs().max(high), limit, "{quantization}: largest magnitude"),
                // All levels 0..=2^bits - 1, stored shifted by 2^(bits-1).
                QuantScheme::ZeroPoint => assert_eq!((low, high), (-limit - 1, limit), "{quantization}"),
            }
        }
        // Per-channel scales are never coarser than the per-tensor one.
        let scheme = |granularity| Quantization { granularity, ..Quantization::INT8 };
        let per_tensor = QuantizedWeight::quantize(&weight, scheme(Granularity::PerTensor)).unwrap();
        let per_channel = QuantizedWeight::quantize(&weight, scheme(Granularity::PerChannel)).unwrap();
        assert_eq!(per_channel.scales.size(), [16, 1]);
        assert!(per_channel.scales.max().double_value(&[]) <= per_tensor.scales.double_value(&[]) * (1.0 + 1e-6));
        let zeros = QuantizedWeight::quantize(&Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)), Quantization::INT8);
        assert_eq!(zeros.unwrap().dequantize().abs().sum(Kind::Float).double_value(&[]), 0.0);
        // 4 bits of 384 weights pack into 192 bytes, plus 16 scales and 16 zero points.
        let four = Quantization { bits: 4, scheme: QuantScheme::ZeroPoint, granularity: Granularity::PerChannel };
        assert_eq!(QuantizedWeight::quantize(&weight, four).unwrap().bytes(), 192 + 64 + 16);
        assert!(QuantizedWeight::quantize(&weight, Quantization { bits: 9, ..four }).is_err());
        assert_eq!(four.to_string(), "4-bit zero-point per channel");
    }

    #[test]
    fn a_quantized_layer_computes_with_the_dequantized_weight() {
        let weight = Tensor::from_slice(&[0.5f32, -1.0, 0.25, 2.0]).view([2, 2]);
        let bias = Tensor::from_slice(&[0.1f32, -0.1]);
        let mut layer = Linear::dense(weight.copy(), Some(bias.copy()));
        let x = Tensor::from_slice(&[1.0f32, 3.0]).view([1, 2]);
        let dense = x.apply(&layer);
        layer.quantize(Quantization::INT8).unwrap();
        let q = x.apply(&layer);
        assert!(q.allclose(&x.linear(&layer.effective_weight(), Some(&bias)), 1e-6, 1e-6, false));
        assert!(q.allclose(&dense, 1e-2, 1e-2, false));
        assert_eq!(layer.shape(), (2, 2));
        assert_eq!(layer.weight_bytes(), 4 + 8);
    }

    #[test]
    fn the_int8_kernel_matches_the_dequantized_product() {
        let _rng = crate::core::device::global_rng_lock();
        tch::manual_seed(3);
        let weight = Tensor::randn([48, 32], (Kind::Float, Device::Cpu)) * 0.05;
        let x = Tensor::randn([2, 5, 32], (Kind::Float, Device::Cpu));
        let mut q = QuantizedWeight::quantize(&weight, Quantization::INT8).unwrap();
        let simulated = q.matmul(&x);
        q.use_int8_kernel().unwrap();
        let real = q.matmul(&x);
        assert_eq!(real.size(), [2, 5, 48]);
        // The activations are quantized too (7 bits over their range), so the products
        // differ by a few activation steps.
        let step = x.abs().max().double_value(&[]) / 63.0;
        let bound = step * weight.abs().sum_dim_intlist(-1, false, Kind::Float).max().double_value(&[]);
        let error = (&real - &simulated).abs().max().double_value(&[]);
        assert!(error < bound, "error {error} against a bound of {bound}");
        let four = Quantization { bits: 4, ..Quantization::INT8 };
        assert!(QuantizedWeight::quantize(&weight, four).unwrap().use_int8_kernel().is_err());
    }
}
