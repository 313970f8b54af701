//! Matrix multiplication on the CPU and the GPU (appendix A, exercises A.2 and A.4), in
//! float32 and bfloat16 (and on the GPU float32 on TF32 tensor cores, PyTorch's
//! `allow_tf32`), from exercise A.2's 100x200 @ 200x300 to 4,096 x 4,096. GPU timings
//! synchronise the device after every multiplication; without CUDA the GPU group says it
//! was skipped. Criterion reports elements/s: here floating-point operations per second.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shared::core::native::set_tf32_matmul;
use tch::{Device, Kind, Tensor};

const SHAPES: [(i64, i64, i64); 4] = [(100, 200, 300), (512, 512, 512), (1024, 1024, 1024), (4096, 4096, 4096)];

fn bench_device(c: &mut Criterion, group_name: &str, device: Device) {
    let mut group = c.benchmark_group(group_name);
    group.sample_size(10);
    let tf32 = device.is_cuda();
    let precisions = [("Float", Kind::Float, false), ("TF32", Kind::Float, true), ("BFloat16", Kind::BFloat16, false)];
    for (label, kind, on_tf32) in precisions.into_iter().filter(|&(_, _, on)| tf32 || !on) {
        set_tf32_matmul(on_tf32).expect("the TF32 setting");
        for (m, k, n) in SHAPES {
            let a = Tensor::randn([m, k], (kind, device));
            let b = Tensor::randn([k, n], (kind, device));
            group.throughput(Throughput::Elements((2 * m * k * n) as u64)); // floating-point operations
            let id = BenchmarkId::new(label, format!("{m}x{k}@{k}x{n}"));
            group.bench_function(id, |bench| {
                bench.iter(|| {
                    let c = a.matmul(&b);
                    if let Device::Cuda(index) = device {
                        tch::Cuda::synchronize(index as i64);
                    }
                    c
                })
            });
        }
    }
    set_tf32_matmul(false).expect("the TF32 setting");
    group.finish();
}

fn matmul(c: &mut Criterion) {
    bench_device(c, "matmul_cpu", Device::Cpu);
    if tch::Cuda::is_available() {
        bench_device(c, "matmul_gpu", Device::Cuda(0));
    } else {
        eprintln!("matmul_gpu: skipped, no CUDA device is available");
    }
}

criterion_group!(benches, matmul);
criterion_main!(benches);
