//! The decoding and compression exercises (21.18-21.35) on tiny models trained for a few steps
//! (shared by the tests through one output folder, so each model trains once).

use std::sync::OnceLock;

use ch21_advanced::exercises::{
    compression::ex21_34, compression::ex21_35, decoding::ex21_18, decoding::ex21_19, decoding::ex21_27,
    decoding::ex21_31, decoding::ex21_32, Context,
};
use ch21_advanced::models::{self, Budget, ModelFlags, Sizes};
use ch21_advanced::quality::one_line;
use shared::app::cli::RunContext;
use shared::core::device::global_rng_lock;
use shared::generate::{generate_text_cached, Sampler, Sampling};
use shared::model::GptModel;
use shared::nn::{Granularity, QuantScheme, Quantization};

/// The exercises' context, with the default model flags (models trained here).
fn context() -> Context {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let run = RunContext { out_dir: dir.path().to_path_buf(), ..RunContext::for_tests() };
    Context { run, flags: ModelFlags::default() }
}

fn budget() -> Budget {
    Budget::tiny(30)
}

/// `model`'s greedy continuation of the first prompt, as the tables print samples.
fn greedy_sample(model: &GptModel) -> String {
    let prompt = Sizes::TINY.prompts(&context(), &budget()).unwrap().remove(0);
    let mut greedy = Sampler::new(&Sampling::GREEDY).unwrap();
    one_line(&generate_text_cached(model, &prompt, Sizes::TINY.new_tokens, &mut greedy).unwrap().text, 90)
}

#[test]
fn beam_search_and_sampling_are_scored_by_the_large_model() {
    let _rng = global_rng_lock();
    let result = ex21_18::run(&context(), &budget(), Sizes::TINY).unwrap();
    assert_eq!(result.rows.len(), ex21_18::Strategy::ALL.len());
    assert!(result.scorer.starts_with("2-layer") && result.generator.starts_with("1-layer"), "{result}");
    for row in &result.rows {
        assert_eq!(row.quality.perplexities.len(), 2);
        assert!(row.quality.perplexities.iter().all(|p| p.is_finite() && *p >= 1.0), "{row:?}");
    }
    // The greedy row's sample is the small model's greedy continuation.
    let small = models::small(
        &context(),
        &ModelFlags::default(),
        &budget(),
        &models::large(&context(), &ModelFlags::default(), &budget()).unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(result.rows[0].quality.sample, greedy_sample(small.gpt()));
}

#[test]
fn repetition_penalty_rows_cover_the_penalties() {
    let _rng = global_rng_lock();
    let result = ex21_19::run(&context(), &budget(), Sizes::TINY).unwrap();
    let penalties: Vec<f64> = result.rows.iter().map(|r| r.penalty).collect();
    assert_eq!(penalties, ex21_19::PENALTIES);
    for row in &result.rows {
        let r = row.quality.repetition;
        assert!([r.bigrams, r.trigrams, r.fourgrams].iter().all(|x| (0.0..=1.0).contains(x)), "{row:?}");
        assert!(row.quality.mean_perplexity.is_finite());
    }
}

#[test]
fn speculative_decoding_keeps_the_targets_greedy_output() {
    let _rng = global_rng_lock();
    let result = ex21_27::run(&context(), &budget(), Sizes::TINY).unwrap();
    assert_eq!(result.rows.len(), 2 * ex21_27::TEMPERATURES.len() * ex21_27::GAMMAS.len());
    for row in &result.rows {
        assert_eq!(row.stats.new_tokens, 2 * result.new_tokens, "{row:?}");
        assert!((0.0..=1.0).contains(&row.acceptance_rate));
        assert!(row.tokens_per_pass >= 1.0 && row.tokens_per_pass <= (row.gamma + 1) as f64);
        assert_eq!(row.identical_to_target, (row.temperature == 0.0).then_some(true), "{row:?}");
    }
}

#[test]
fn contrastive_decoding_with_alpha_zero_is_greedy_decoding() {
    let _rng = global_rng_lock();
    let result = ex21_31::run(&context(), &budget(), Sizes::TINY).unwrap();
    assert_eq!(result.rows.len(), 1 + ex21_31::ALPHAS.len());
    let large = models::large(&context(), &ModelFlags::default(), &budget()).unwrap();
    assert_eq!(result.rows[1].quality.sample, greedy_sample(large.gpt()));
}

#[test]
fn a_strong_watermark_is_detected_and_none_is_not() {
    let _rng = global_rng_lock();
    let result = ex21_32::run(&context(), &budget(), Sizes::TINY).unwrap();
    let deltas: Vec<f64> = result.rows.iter().map(|r| r.delta).collect();
    assert_eq!(deltas, ex21_32::DELTAS);
    let (none, strongest) = (&result.rows[0], &result.rows[4]);
    assert_eq!(none.detected, 0.0, "{none:?}");
    assert_eq!(strongest.detected, 1.0, "{strongest:?}");
    assert!(strongest.green_share > 0.8 && none.green_share < 0.6, "{result}");
}

#[test]
fn eight_bit_quantization_keeps_the_perplexity_within_one_percent() {
    let _rng = global_rng_lock();
    let result = ex21_34::run(&context(), &budget(), Sizes::TINY, 4).unwrap();
    assert_eq!(result.rows.len(), 1 + ex21_34::quantizations().len() + 1);
    let find = |bits: u8, scheme: QuantScheme, granularity: Granularity, kernel: bool| {
        let q = Quantization { bits, scheme, granularity };
        result.rows.iter().find(|r| r.quantization == Some(q) && r.int8_kernel == kernel).unwrap()
    };
    let float = &result.rows[0];
    let int8 = find(8, QuantScheme::Absmax, Granularity::PerChannel, false);
    assert!((int8.relative - 1.0).abs() < 0.01, "{result}");
    assert!(int8.bytes < float.bytes / 2, "{result}");
    let kernel = find(8, QuantScheme::Absmax, Granularity::PerChannel, true);
    assert!((kernel.perplexity / int8.perplexity - 1.0).abs() < 1e-3, "{result}");
    // Two bits on the fixed grid rounds nearly every small weight to zero.
    assert!(find(2, QuantScheme::Fixed, Granularity::PerTensor, false).relative > 1.05, "{result}");
}

#[test]
fn distillation_with_lambda_zero_is_plain_training() {
    let _rng = global_rng_lock();
    let plain = ex21_35::run(&context(), &budget(), Sizes::TINY, 0.0, 4).unwrap();
    assert_eq!(plain.rows.len(), 1 + ex21_35::TEMPERATURES.len());
    for row in &plain.rows {
        assert_eq!(row.validation_loss, plain.rows[0].validation_loss, "{plain}");
        assert_eq!(row.sample, plain.rows[0].sample);
    }
    let distilled = ex21_35::run(&context(), &budget(), Sizes::TINY, 0.5, 4).unwrap();
    assert_eq!(distilled.rows[0].validation_loss, plain.rows[0].validation_loss, "the same cross-entropy student");
    assert!(distilled.rows[1..].iter().all(|r| r.validation_loss != plain.rows[0].validation_loss));
}
