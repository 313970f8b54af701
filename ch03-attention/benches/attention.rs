//! Forward pass of each multi-head attention variant (GPT-2 small's attention on a batch of
//! 2 x 256 tokens, float32 and bfloat16, on the CPU and, when present, the GPU). The `bench`
//! command prints the full-size table with backward passes.

use ch03_attention::variants::{AttentionVariants, Variant};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tch::{nn, Device, Kind, Tensor};

fn bench_device(c: &mut Criterion, device: Device) {
    let mut group = c.benchmark_group(format!("mha_forward_{}", shared::core::device::device_name(device)));
    group.sample_size(10);
    for kind in [Kind::Float, Kind::BFloat16] {
        tch::manual_seed(123);
        let mut vs = nn::VarStore::new(device);
        let variants = AttentionVariants::new(&vs.root(), 768, 256, 12).expect("valid shape");
        vs.set_kind(kind);
        let x = Tensor::randn([2, 256, 768], (kind, device));
        for variant in Variant::ALL {
            group.bench_function(BenchmarkId::new(format!("{kind:?}"), variant), |bench| {
                bench.iter(|| {
                    let out = tch::no_grad(|| variants.forward(variant, &x));
                    if let Device::Cuda(index) = device {
                        tch::Cuda::synchronize(index as i64);
                    }
                    out
                })
            });
        }
    }
    group.finish();
}

fn attention(c: &mut Criterion) {
    bench_device(c, Device::Cpu);
    if tch::Cuda::is_available() {
        bench_device(c, Device::Cuda(0));
    } else {
        eprintln!("mha_forward_cuda: skipped, no CUDA device is available");
    }
}

criterion_group!(benches, attention);
criterion_main!(benches);
