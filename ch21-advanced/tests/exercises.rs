//! Chapter 21's exercises, and the README rows that list them.

use ch21_advanced::exercises::{self, ex21_8, ex21_9};

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
fn every_exercise_has_a_readme_row() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for exercise in exercises::ALL {
        assert!(readme.contains(&format!("| {} |", exercise.id)), "no README row for {}", exercise.id);
    }
}
