//! The benchmark commands measure what they say: fast mode trains the book's model on the
//! book's loss (its losses follow book mode's), and the decoding rows agree with each other.

use ch05_pretraining::bench::{bench_generate, bench_step, GenerateBenchOptions, StepBenchOptions};
use shared::app::model_source::ModelSource;
use shared::core::device::global_rng_lock;
use shared::data::{DataLocator, THE_VERDICT};
use shared::model::GptConfig;
use shared::train::TrainMode;
use tch::Device;

fn verdict() -> String {
    DataLocator::from_env(None).read_to_string(&THE_VERDICT).unwrap()
}

/// A small GPT with the book's dropout (0.1), so fast mode's fused attention draws its
/// own dropout masks.
fn small() -> GptConfig {
    GptConfig { context_length: 64, emb_dim: 64, n_heads: 4, n_layers: 2, ..GptConfig::gpt2_small() }
}

#[test]
fn fast_mode_follows_book_mode_and_the_loss_falls() {
    let _rng = global_rng_lock();
    let text = verdict();
    let run = |mode| {
        let options = StepBenchOptions {
            config: small(),
            config_name: "small".into(),
            batch_size: 4,
            steps: 12,
            warmup: 0,
            mode,
        };
        bench_step(&text, &options, Device::Cpu, 123).unwrap()
    };
    let (book, fast) = (run(TrainMode::Book), run(TrainMode::Fast));
    assert_eq!(book.losses.len(), 12);
    for (step, (b, f)) in book.losses.iter().zip(&fast.losses).enumerate() {
        assert!((b - f).abs() < 0.05, "step {step}: book {b:.4}, fast {f:.4}");
    }
    assert!(fast.losses[11] < fast.losses[0] - 0.1, "{:?}", fast.losses);
    for result in [&book, &fast] {
        let phases = result.forward_s + result.backward_s + result.optimizer_s;
        assert!((result.step_s - phases).abs() < 1e-9 && result.step_s > 0.0);
        assert!(result.mfu > 0.0 && result.matmul_gflops > 0.0);
    }
    // 6 x (matrix weights) + 12 L T d per token, for 4 x 64 tokens.
    let weights: i64 = 2 * 12 * 64 * 64 + 64 * 50257;
    let per_token = 6 * weights + 12 * 2 * 64 * 64;
    assert!((book.model_gflops_per_step - (per_token * 4 * 64) as f64 / 1e9).abs() < 1e-9);
}

#[test]
fn decoding_rows_agree_and_int8_keeps_the_perplexity() {
    let _rng = global_rng_lock();
    let options = GenerateBenchOptions {
        source: ModelSource::Fresh(small()),
        new_tokens: 8,
        batch: 3,
        int8: true,
        perplexity: true,
    };
    let result = bench_generate(&verdict(), &options, Device::Cpu, 123).unwrap();
    let names: Vec<&str> = result.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "KV cache, float32",
            "KV cache, float32, 3 prompts one at a time",
            "KV cache, float32, 3 prompts batched",
            "KV cache, int8 (fbgemm)",
            "KV cache, int8, 3 prompts batched",
            "KV cache, float32, fused kernels"
        ]
    );
    assert!(result.batched_tokens_identical);
    assert_eq!(result.rows[2].new_tokens, 24);
    let (float, int8) = (result.perplexity_float32.unwrap(), result.perplexity_int8.unwrap());
    assert!((int8 / float - 1.0).abs() < 0.01, "{float} vs {int8}");
    let too_many = GenerateBenchOptions { batch: 9, ..options };
    assert!(bench_generate(&verdict(), &too_many, Device::Cpu, 123).unwrap_err().to_string().contains("--batch"));
}
