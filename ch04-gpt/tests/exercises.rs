//! Exercises 4.1-4.3.

use ch04_gpt::exercises::{self, ex4_1, ex4_2, ex4_3};
use shared::core::device::global_rng_lock;

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
    // Which parts change between training and evaluation mode tells where a rate acts:
    // (attention module, block, whole model). A rate wired into the wrong place, or not at
    // all, changes this pattern.
    let acts = |prefix: &str| {
        let p = result.placements.iter().find(|p| p.setting.starts_with(prefix)).unwrap();
        (p.attention_effect > 1e-4, p.block_effect > 1e-4, p.train_eval_difference > 1e-4)
    };
    assert_eq!(acts("drop_rate_emb"), (false, false, true), "embedding dropout acts on the embeddings only");
    assert_eq!(acts("drop_rate_attn"), (true, true, true), "attention dropout acts inside attention");
    assert_eq!(acts("drop_rate_shortcut"), (false, true, true), "shortcut dropout acts in the block, not in attention");
    assert_eq!(acts("all three"), (true, true, true));
    let none = result.placements.iter().find(|p| p.setting.starts_with("none")).unwrap();
    assert_eq!((none.attention_effect, none.block_effect, none.train_eval_difference), (0.0, 0.0, 0.0));
}

#[test]
fn the_readme_lists_every_exercise() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let missing = shared::app::exercise::missing_readme_rows(exercises::ALL, &readme);
    assert!(missing.is_empty(), "README.md lacks the rows {missing:?}");
}
