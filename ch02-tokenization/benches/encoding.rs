//! Encoding throughput of `tiktoken-rs` and of our from-scratch GPT-2 BPE, in MB/s, on The
//! Verdict and on tiny Shakespeare (data from LLMS_DATA_DIR, the cache or a download).

use ch02_tokenization::bpe::BytePairEncoder;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shared::data::{DataLocator, THE_VERDICT, TINY_SHAKESPEARE};
use shared::tokenizer::Gpt2Tokenizer;

fn encoding(c: &mut Criterion) {
    let locator = DataLocator::from_env(None);
    let ours = BytePairEncoder::gpt2().expect("GPT-2 ranks");
    let tiktoken = Gpt2Tokenizer::new();
    let mut group = c.benchmark_group("gpt2_encode");
    group.sample_size(10);
    for set in [THE_VERDICT, TINY_SHAKESPEARE] {
        let text = locator.read_to_string(&set).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ours.encode(&text).unwrap(), tiktoken.encode(&text), "encoders disagree on {}", set.name);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("tiktoken-rs", set.name), &text, |b, text| {
            b.iter(|| tiktoken.encode(text))
        });
        group.bench_with_input(BenchmarkId::new("from-scratch", set.name), &text, |b, text| {
            b.iter(|| ours.encode(text).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, encoding);
criterion_main!(benches);
