//! LibTorch operators that `tch` does not generate, compiled from `cpp/native.cpp` against
//! the same LibTorch (see `build.rs`): PyTorch's fused AdamW kernel (`torch.optim.AdamW(...,
//! fused=True)`), dropping a gradient (`zero_grad(set_to_none=True)`), fbgemm's dynamically
//! quantized int8 linear layer (`torch.ao.nn.quantized.dynamic.Linear`), and the autocast
//! dtype. Errors raised in C++ come back as `Err` with LibTorch's message.

use std::ffi::{c_char, c_void, CStr};

use anyhow::{bail, Result};
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn llms_free_message(text: *mut c_char);
    fn llms_fused_adamw(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        exp_avgs: *const *mut C_tensor,
        exp_avg_sqs: *const *mut C_tensor,
        steps: *const *mut C_tensor,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
    ) -> *mut c_char;
    fn llms_drop_grad(tensor: *mut C_tensor) -> *mut c_char;
    fn llms_qlinear_prepack(
        values: *mut C_tensor,
        scales: *mut C_tensor,
        bias: *mut C_tensor,
        packed: *mut *mut c_void,
    ) -> *mut c_char;
    fn llms_qlinear_dynamic(
        input: *mut C_tensor,
        packed: *mut c_void,
        reduce_range: bool,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn llms_qlinear_free(packed: *mut c_void);
    fn llms_set_cuda_autocast_bfloat16() -> *mut c_char;
    fn llms_cpu_autocast(enter: bool) -> *mut c_char;
    fn llms_set_tf32_matmul(allow: bool, was: *mut bool) -> *mut c_char;
    fn llms_linear_few_rows(
        input: *mut C_tensor,
        weight: *mut C_tensor,
        bias: *mut C_tensor,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
}

/// Turns the C side's message (NULL on success) into a `Result` (also for `distributed`).
pub(crate) fn check(message: *mut c_char) -> Result<()> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null message is a NUL-terminated string the C side allocated for us.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    unsafe { llms_free_message(message) };
    bail!("{}", text.trim_end())
}

/// The tensors' LibTorch pointers, for the C side (also for `distributed`).
pub(crate) fn pointers(tensors: &[Tensor]) -> Vec<*mut C_tensor> {
    tensors.iter().map(|t| t.as_ptr() as *mut C_tensor).collect()
}

/// The tensors of one AdamW update (shallow clones of the optimizer's): parameters,
/// gradients, moments and float step counts (already incremented for this step), all of
/// the same length.
#[derive(Default)]
pub struct AdamWTensors {
    pub params: Vec<Tensor>,
    pub grads: Vec<Tensor>,
    pub exp_avgs: Vec<Tensor>,
    pub exp_avg_sqs: Vec<Tensor>,
    pub steps: Vec<Tensor>,
}

/// `torch._fused_adamw_`: one pass over each parameter, its gradient and its moments (the
/// same update as PyTorch's single-tensor AdamW up to float rounding).
pub fn fused_adamw(t: &AdamWTensors, lr: f64, beta1: f64, beta2: f64, weight_decay: f64, eps: f64) -> Result<()> {
    let n = t.params.len();
    anyhow::ensure!(
        [t.grads.len(), t.exp_avgs.len(), t.exp_avg_sqs.len(), t.steps.len()].iter().all(|&len| len == n),
        "fused AdamW needs as many gradients, moments and steps as parameters"
    );
    let [p, g, m, v, s] = [&t.params, &t.grads, &t.exp_avgs, &t.exp_avg_sqs, &t.steps].map(|t| pointers(t));
    // SAFETY: every pointer is a live tensor borrowed for the call; the kernel updates the
    // parameters and moments in place, as their `Tensor`s expect.
    check(unsafe {
        llms_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            s.as_ptr(),
            n,
            lr,
            beta1,
            beta2,
            weight_decay,
            eps,
        )
    })
}

/// Sets a parameter's gradient to undefined, so that the next backward pass stores its
/// gradient instead of adding it to zeros (PyTorch's `zero_grad(set_to_none=True)`).
pub fn drop_grad(param: &Tensor) -> Result<()> {
    // SAFETY: the pointer is a live tensor; only its gradient slot changes.
    check(unsafe { llms_drop_grad(param.as_ptr() as *mut C_tensor) })
}

/// Makes CUDA autocast compute in bfloat16 (its default is float16).
pub fn set_cuda_autocast_bfloat16() -> Result<()> {
    // SAFETY: no arguments; sets a process-wide LibTorch setting.
    check(unsafe { llms_set_cuda_autocast_bfloat16() })
}

/// Lets cuBLAS compute float32 matrix products on TF32 tensor cores (10 mantissa bits, as
/// `torch.backends.cuda.matmul.allow_tf32 = True`), or not (LibTorch's default); returns the
/// previous setting. Process-wide; the CPU's products are unaffected.
pub fn set_tf32_matmul(allow: bool) -> Result<bool> {
    let mut was = false;
    // SAFETY: `was` is a live bool for the call.
    check(unsafe { llms_set_tf32_matmul(allow, &mut was) })?;
    Ok(was)
}

/// Runs `f` under the CPU's bfloat16 autocast: what fast mode's CUDA autocast does (matrix
/// products in bfloat16, float32 weights), on the CPU's kernels, so that the fast path's
/// mixes of dtypes can be tested where there is no GPU. Not nested, not across threads.
pub fn with_cpu_autocast<T>(f: impl FnOnce() -> T) -> Result<T> {
    // SAFETY: no pointers; switches a LibTorch setting of this thread.
    check(unsafe { llms_cpu_autocast(true) })?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    check(unsafe { llms_cpu_autocast(false) })?;
    result.map_err(|panic| {
        let message = super::panic_message(panic.as_ref()).unwrap_or_else(|| "a panic".into());
        anyhow::anyhow!("panicked under autocast: {message}")
    })
}

/// `x W^T + b` for a float32 `x` `[rows, in]` of a few rows (decoding) on the CPU, by our
/// AVX2 matrix-vector kernel: it streams the weight at nearly the memory bandwidth, where
/// MKL's product with one row reads it at about half (the same sums, rounded in another
/// order). With a gradient wanted, another dtype or device, or no AVX2, it is `x.linear`.
pub fn linear_few_rows(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let mut out = std::ptr::null_mut();
    let bias = bias.map_or(std::ptr::null_mut(), |b| b.as_ptr() as *mut C_tensor);
    let [x, weight] = [x, weight].map(|t| t.as_ptr() as *mut C_tensor);
    // SAFETY: live tensors borrowed for the call; `out` receives a new owned tensor.
    check(unsafe { llms_linear_few_rows(x, weight, bias, &mut out) })?;
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// A linear layer's weight packed for fbgemm's int8 kernels (`quantized::linear_prepack`):
/// int8 weights with one scale per output row, and the float bias.
pub struct PackedInt8Linear {
    packed: *mut c_void,
}

// SAFETY: the packed weight is immutable after packing and LibTorch's kernels only read it.
unsafe impl Send for PackedInt8Linear {}
unsafe impl Sync for PackedInt8Linear {}

impl std::fmt::Debug for PackedInt8Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PackedInt8Linear")
    }
}

impl PackedInt8Linear {
    /// Packs a symmetric int8 weight: `values` `[out, in]` (int8) times one scale per
    /// output row (`scales`, `[out]` or `[out, 1]`), with an optional float bias `[out]`.
    pub fn pack(values: &Tensor, scales: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let mut packed = std::ptr::null_mut();
        let bias = bias.map_or(std::ptr::null_mut(), |b| b.as_ptr() as *mut C_tensor);
        let [values, scales] = [values, scales].map(|t| t.as_ptr() as *mut C_tensor);
        // SAFETY: live tensors borrowed for the call; `packed` receives an owned handle.
        check(unsafe { llms_qlinear_prepack(values, scales, bias, &mut packed) })?;
        Ok(Self { packed })
    }

    /// `quantized::linear_dynamic`: quantizes `x` `(.., in)` to uint8 with a scale from its
    /// range at every call, multiplies in int8 with int32 sums and returns float `(.., out)`.
    /// `reduce_range` uses 7 of the 8 activation bits, which keeps AVX2's 16-bit
    /// intermediate sums from saturating (PyTorch's default on x86).
    pub fn forward(&self, x: &Tensor, reduce_range: bool) -> Result<Tensor> {
        let mut out = std::ptr::null_mut();
        // SAFETY: `x` and the packed weight are live; `out` receives a new owned tensor.
        check(unsafe { llms_qlinear_dynamic(x.as_ptr() as *mut C_tensor, self.packed, reduce_range, &mut out) })?;
        Ok(unsafe { Tensor::from_ptr(out) })
    }
}

impl Drop for PackedInt8Linear {
    fn drop(&mut self) {
        // SAFETY: the handle came from `llms_qlinear_prepack` and is freed once.
        unsafe { llms_qlinear_free(self.packed) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn tf32_matmul_is_off_by_default_and_switches() {
        // LibTorch's default, as PyTorch's: float32 products in full precision.
        let before = set_tf32_matmul(true).unwrap();
        assert!(set_tf32_matmul(before).unwrap(), "the setting was on");
        assert!(!before, "TF32 is off unless asked for");
    }

    #[test]
    fn int8_linear_is_close_to_float_and_errors_come_back() {
        let _rng = crate::core::device::global_rng_lock();
        tch::manual_seed(1);
        let weight = Tensor::randn([64, 48], (Kind::Float, Device::Cpu)) * 0.05;
        let bias = Tensor::randn([64], (Kind::Float, Device::Cpu)) * 0.01;
        let scales = weight.abs().amax(-1, true) / 127.0;
        let values = (&weight / &scales).round().to_kind(Kind::Int8);
        let packed = PackedInt8Linear::pack(&values, &scales, Some(&bias)).unwrap();
        let x = Tensor::randn([3, 48], (Kind::Float, Device::Cpu));
        let y = packed.forward(&x, true).unwrap();
        let reference = x.linear(&weight, Some(&bias));
        let error = (&y - &reference).abs().max().double_value(&[]);
        assert!(error < 0.02 * reference.abs().max().double_value(&[]), "error {error}");
        let wrong = packed.forward(&Tensor::randn([3, 7], (Kind::Float, Device::Cpu)), true);
        assert!(wrong.is_err());
        assert!(PackedInt8Linear::pack(&values, &scales.narrow(0, 0, 3), None).is_err(), "one scale per row");
    }

    #[test]
    fn the_few_rows_kernel_computes_a_linear_layer() {
        let _rng = crate::core::device::global_rng_lock();
        tch::manual_seed(2);
        // Widths that leave tails: weight rows not a multiple of 4, inputs not of 8.
        for (rows, out, width) in [(1, 37, 19), (3, 64, 48), (16, 1030, 2051)] {
            let weight = Tensor::randn([out, width], (Kind::Float, Device::Cpu));
            let bias = Tensor::randn([out], (Kind::Float, Device::Cpu));
            let x = Tensor::randn([rows, width], (Kind::Float, Device::Cpu));
            let y = tch::no_grad(|| linear_few_rows(&x, &weight, Some(&bias))).unwrap();
            assert!(y.allclose(&x.linear(&weight, Some(&bias)), 1e-4, 1e-4, false), "{rows}x{width} -> {out}");
            let y = tch::no_grad(|| linear_few_rows(&x, &weight, None)).unwrap();
            assert!(y.allclose(&x.linear::<Tensor>(&weight, None), 1e-4, 1e-4, false));
        }
        // With a gradient wanted it is LibTorch's linear, gradient and all.
        let weight = Tensor::randn([8, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let y = linear_few_rows(&Tensor::ones([1, 4], (Kind::Float, Device::Cpu)), &weight, None).unwrap();
        y.sum(Kind::Float).backward();
        assert_eq!(weight.grad().sum(Kind::Float).double_value(&[]), 32.0);
        assert!(linear_few_rows(&Tensor::ones([1, 5], (Kind::Float, Device::Cpu)), &weight, None).is_err());
    }

    #[test]
    fn a_dropped_gradient_is_undefined() {
        let x = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        (&x * 2.0).sum(Kind::Float).backward();
        assert!(x.grad().defined());
        drop_grad(&x).unwrap();
        assert!(!x.grad().defined());
    }
}
