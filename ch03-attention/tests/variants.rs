//! Every multi-head attention variant computes the same function from the same weights.

use ch03_attention::bench::{self, BenchConfig};
use ch03_attention::variants::{AttentionVariants, Variant};
use shared::core::device::{global_rng_lock, seed_everything};
use tch::{nn, Device, Kind, Tensor};

#[test]
fn all_variants_agree() {
    let _rng = global_rng_lock();
    seed_everything(123);
    let vs = nn::VarStore::new(Device::Cpu);
    let variants = AttentionVariants::new(&vs.root(), 48, 16, 4).unwrap();
    let x = Tensor::randn([3, 16, 48], (Kind::Float, Device::Cpu));
    let reference = tch::no_grad(|| variants.forward(Variant::Book, &x));
    for variant in Variant::ALL {
        let out = tch::no_grad(|| variants.forward(variant, &x));
        assert_eq!(out.size(), [3, 16, 48], "{variant}");
        let diff = (&out - &reference).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{variant} differs from the book's module by {diff}");
    }
    // Shorter sequences than the context use the top-left corner of the mask.
    let short = x.narrow(1, 0, 5);
    let reference = tch::no_grad(|| variants.forward(Variant::Book, &short));
    for variant in Variant::ALL {
        let out = tch::no_grad(|| variants.forward(variant, &short));
        assert!(out.allclose(&reference, 1e-5, 1e-5, false), "{variant} on 5 tokens");
    }
}

#[test]
fn gradients_flow_in_every_variant() {
    let _rng = global_rng_lock();
    seed_everything(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let variants = AttentionVariants::new(&vs.root(), 8, 4, 2).unwrap();
    let x = Tensor::randn([1, 4, 8], (Kind::Float, Device::Cpu));
    for variant in Variant::ALL {
        variants.forward(variant, &x).sum(Kind::Float).backward();
    }
    for p in variants.parameters() {
        assert!(p.grad().defined() && p.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}

#[test]
fn bench_measures_every_variant_and_dtype() {
    let _rng = global_rng_lock();
    let config = BenchConfig { batch: 1, tokens: 8, emb_dim: 16, heads: 2, repeats: 1, ..BenchConfig::default() };
    let mut streamed = 0;
    let table = bench::run(&config, |_| streamed += 1).unwrap();
    assert_eq!(streamed, table.rows.len());
    assert_eq!(table.rows.len(), 2 * Variant::ALL.len());
    // One row per variant and dtype, in order (timings themselves are not asserted).
    let cells: Vec<(Variant, &str)> = table.rows.iter().map(|r| (r.variant, r.dtype.as_str())).collect();
    let expected: Vec<(Variant, &str)> =
        ["float32", "bfloat16"].into_iter().flat_map(|dtype| Variant::ALL.iter().map(move |&v| (v, dtype))).collect();
    assert_eq!(cells, expected);
    let text = table.to_string();
    assert!(text.contains("| combined QKV + SDPA (causal) | bfloat16 |"), "{text}");
    let bad = BenchConfig { emb_dim: 10, heads: 3, ..config };
    assert!(bench::run(&bad, |_| {}).is_err());
}
