//! Chapter 21's exercises, and the README rows that list them.

use ch21_advanced::exercises::{self, ex21_11, ex21_6, ex21_7, ex21_8, ex21_9};
use shared::cli::RunContext;

#[test]
fn exercise_21_8_reads_the_cache_sizes_off_real_caches() {
    let result = ex21_8::run().unwrap();
    let f32_batch1 = &result.caches[0];
    assert_eq!((f32_batch1.dtype.as_str(), f32_batch1.batch, f32_batch1.bytes), ("float32", 1, 75_497_472));
    for cache in &result.caches {
        assert_eq!(cache.bytes, cache.formula_bytes, "{cache:?}");
    }
    assert_eq!(result.caches[3].bytes, 8 * 75_497_472 / 2, "float16, batch 8");
    // The sums against closed forms: sum of L^2 and of L over the sequence lengths.
    let cfg = ex21_8::config();
    let per = 4 * 12 * 12 * 64;
    let squares = |n: i64| n * (n + 1) * (2 * n + 1) / 6;
    assert_eq!(result.flops_without_cache, per * (squares(767) - squares(255)));
    let with = per * 256 * 256 + per * ((257..=767).sum::<i64>());
    assert_eq!(result.flops_with_cache, with);
    assert_eq!(ex21_8::attention_flops(&cfg, 1, 10), per * 10);
}

#[test]
fn exercise_21_9_computes_the_perplexities() {
    let result = ex21_9::run();
    assert!((result.loss_nats - 3.2189).abs() < 1e-4);
    assert!((result.uniform_loss - 50_000f64.ln()).abs() < 1e-4, "{}", result.uniform_loss);
    assert!((result.uniform_perplexity - 50_000.0).abs() < 5.0, "{}", result.uniform_perplexity);
}

#[test]
fn exercise_21_6_temperature_and_entropy() {
    let dir = tempfile::tempdir().unwrap();
    let result = ex21_6::run(&RunContext { out_dir: dir.path().to_path_buf(), ..RunContext::for_tests() }).unwrap();
    // softmax(z / 1) by hand
    let exps: Vec<f64> = ex21_6::LOGITS.iter().map(|&z| f64::from(z).exp()).collect();
    let total: f64 = exps.iter().sum();
    for (p, e) in result.rows[1].probabilities.iter().zip(&exps) {
        assert!((p - e / total).abs() < 1e-6);
    }
    let entropies: Vec<f64> = result.rows.iter().map(|r| r.entropy).collect();
    assert!(entropies.windows(2).all(|w| w[0] < w[1]), "hotter is flatter: {entropies:?}");
    assert!((result.uniform_entropy - 4f64.ln()).abs() < 1e-12);
    let at = ex21_6::at(result.near_uniform_tau);
    assert!((at.entropy - 0.99 * 4f64.ln()).abs() < 1e-4, "the bisection found the 1 % point");
    assert!(ex21_6::at(result.near_uniform_tau * 0.9).entropy < 0.99 * 4f64.ln());
    assert!(result.cold.probabilities[0] > 0.999 && (result.hot.entropy - 4f64.ln()).abs() < 1e-5);
    assert!(result.figure.is_file());
}

#[test]
fn exercise_21_7_truncation_sets() {
    let result = ex21_7::run().unwrap();
    assert_eq!(result.top_k.kept, [0, 1, 2]);
    for (p, want) in result.top_k.renormalised.iter().zip([0.35 / 0.7, 0.2 / 0.7, 0.15 / 0.7]) {
        assert!((p - want).abs() < 1e-6);
    }
    assert_eq!(result.top_p.kept, [0, 1, 2, 3, 4, 5], "0.88 after five tokens, 0.93 after six");
    assert!((result.top_p.renormalised[0] - 0.35 / 0.93).abs() < 1e-6);
    assert_eq!(result.peaked_top_k.kept.len(), 5);
    assert!(result.peaked_top_k.renormalised[1..].iter().all(|&p| p < 0.013));
    assert_eq!(result.peaked_top_p.kept, [0]);
}

#[test]
fn exercise_21_11_masks_the_future() {
    let result = ex21_11::run(123).unwrap();
    let shared_mask = shared::attention::causal_mask(4, tch::Device::Cpu);
    let flat: Vec<bool> = result.mask.concat();
    assert_eq!(flat, Vec::<bool>::try_from(shared_mask.view([-1])).unwrap());
    assert_eq!(result.future_weight, 0.0);
    assert!(result.row_sums.iter().all(|s| (s - 1.0).abs() < 1e-6));
    assert!(result.weights_before[0][1] > 0.0, "unmasked, the first token sees the second");
    assert_eq!(result.weights_after[0][0], 1.0);
}

#[test]
fn every_exercise_has_a_readme_row() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for exercise in exercises::ALL {
        assert!(readme.contains(&format!("| {} |", exercise.id)), "no README row for {}", exercise.id);
    }
}
