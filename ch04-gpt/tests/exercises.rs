//! Exercises 4.1-4.3.

use ch04_gpt::exercises::{self, ex4_1, ex4_2, ex4_3};
use shared::device::global_rng_lock;

#[test]
fn exercise_4_1_counts_a_block() {
    let result = {
        let _rng = global_rng_lock();
        ex4_1::run().unwrap()
    };
    assert_eq!((result.feed_forward, result.attention), (4_722_432, 2_360_064));
    assert!((result.ratio - 2.0009).abs() < 1e-4);
}

#[test]
fn exercise_4_2_sizes_all_presets() {
    let result = ex4_2::run().unwrap();
    let rows: Vec<(&str, i64, i64, f64)> =
        result.models.iter().map(|m| (m.preset.as_str(), m.total_parameters, m.with_weight_tying, m.size_mb)).collect();
    assert_eq!(rows[0], ("gpt2-small", 163_009_536, 124_412_160, 621.83));
    assert_eq!(rows[1], ("gpt2-medium", 406_212_608, 354_749_440, 1549.58));
    assert_eq!(rows[2], ("gpt2-large", 838_220_800, 773_891_840, 3197.56));
    assert_eq!(rows[3], ("gpt2-xl", 1_637_792_000, 1_557_380_800, 6247.68));
}

#[test]
fn exercise_4_3_puts_each_rate_in_its_place_only() {
    let result = {
        let _rng = global_rng_lock();
        ex4_3::run(123).unwrap()
    };
    let by_setting = |prefix: &str| result.placements.iter().find(|p| p.setting.starts_with(prefix)).unwrap();
    let emb = by_setting("drop_rate_emb");
    assert_eq!(
        (emb.embedding_rate, emb.attention_rates.as_slice(), emb.shortcut_rates.as_slice()),
        (0.1, &[0.0, 0.0][..], &[0.0, 0.0][..])
    );
    let attn = by_setting("drop_rate_attn");
    assert_eq!(
        (attn.embedding_rate, attn.attention_rates.as_slice(), attn.shortcut_rates.as_slice()),
        (0.0, &[0.2, 0.2][..], &[0.0, 0.0][..])
    );
    let shortcut = by_setting("drop_rate_shortcut");
    assert_eq!(
        (shortcut.embedding_rate, shortcut.attention_rates.as_slice(), shortcut.shortcut_rates.as_slice()),
        (0.0, &[0.0, 0.0][..], &[0.3, 0.3][..])
    );
    // Each rate changes training-mode outputs on its own; with no dropout, train = eval.
    for p in &result.placements[..4] {
        assert!(p.train_eval_difference > 1e-4, "{}: {}", p.setting, p.train_eval_difference);
    }
    assert_eq!(by_setting("none").train_eval_difference, 0.0);
}

#[test]
fn the_readme_lists_every_exercise() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let missing = shared::exercise::missing_readme_rows(exercises::ALL, &readme);
    assert!(missing.is_empty(), "README.md lacks the rows {missing:?}");
}
