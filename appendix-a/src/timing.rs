//! Exercises A.2/A.4: how long `100 x 200 @ 200 x 300` takes on the CPU and on the GPU.

use std::fmt;

use serde::Serialize;
use shared::core::timing::median_seconds;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Serialize)]
pub struct MatmulTiming {
    pub shape: String,
    pub repeats: usize,
    pub cpu_threads: i32,
    pub cpu_median_us: f64,
    /// `None` when no CUDA device is present.
    pub gpu_median_us: Option<f64>,
    /// CPU time / GPU time.
    pub gpu_speedup: Option<f64>,
}

fn time_on(device: Device, repeats: usize) -> f64 {
    let a = Tensor::rand([100, 200], (Kind::Float, device));
    let b = Tensor::rand([200, 300], (Kind::Float, device));
    median_seconds(device, 10, repeats, || {
        let _ = a.matmul(&b);
    }) * 1e6
}

/// Median of `repeats` runs after a warm-up, the GPU synchronised after each run.
pub fn run(repeats: usize) -> MatmulTiming {
    let cpu = time_on(Device::Cpu, repeats);
    let gpu = tch::Cuda::is_available().then(|| time_on(Device::Cuda(0), repeats));
    MatmulTiming {
        shape: "100x200 @ 200x300 (float32)".into(),
        repeats,
        cpu_threads: tch::get_num_threads(),
        cpu_median_us: cpu,
        gpu_median_us: gpu,
        gpu_speedup: gpu.map(|gpu| cpu / gpu),
    }
}

impl fmt::Display for MatmulTiming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}, median of {} runs:", self.shape, self.repeats)?;
        writeln!(f, "  CPU ({} threads): {:.1} µs", self.cpu_threads, self.cpu_median_us)?;
        match (self.gpu_median_us, self.gpu_speedup) {
            (Some(gpu), Some(speedup)) => write!(f, "  GPU (cuda:0): {gpu:.1} µs, {speedup:.2}x the CPU's speed"),
            _ => write!(f, "  GPU: skipped, no CUDA device is available"),
        }
    }
}
