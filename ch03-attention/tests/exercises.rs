//! Exercises 3.1-3.3.

use ch03_attention::exercises::{self, ex3_1, ex3_2, ex3_3};
use shared::app::cli::RunContext;
use shared::app::exercise;
use shared::core::device::global_rng_lock;

#[test]
fn exercise_3_1_outputs_are_identical_after_the_transfer() {
    let _rng = global_rng_lock();
    let result = ex3_1::run(123).unwrap();
    assert!(result.identical);
    assert_eq!(result.v1_output_after, result.v2_output); // exact equality
    assert_ne!(result.v1_output_before, result.v2_output);
    // V2 is the book's seed-789 module.
    assert!((result.v2_output[0][0] - -0.0739).abs() < 1e-4 && (result.v2_output[0][1] - 0.0713).abs() < 1e-4);
}

#[test]
fn exercise_3_2_gives_two_dimensional_context_vectors() {
    let _rng = global_rng_lock();
    let result = ex3_2::run(123).unwrap();
    assert_eq!(result.shape, [2, 6, 2]);
    let reference: serde_json::Value = serde_json::from_str(include_str!("fixtures/pytorch-reference.json")).unwrap();
    for (row, expected) in result.context_vecs[0].iter().zip(reference["mha_wrapper_d_out1"][0].as_array().unwrap()) {
        for (x, e) in row.iter().zip(expected.as_array().unwrap()) {
            assert!((*x as f64 - e.as_f64().unwrap()).abs() < 1e-5);
        }
    }
}

#[test]
fn exercise_3_3_has_gpt2_small_attention_parameters() {
    let _rng = global_rng_lock();
    let result = ex3_3::run(&RunContext::for_tests()).unwrap();
    assert_eq!(result.total_parameters, 2_360_064);
    assert_eq!(result.total_parameters, 4 * 768 * 768 + 768);
    assert_eq!(result.head_dim, 64);
    assert_eq!(result.output_shape, [1, 1024, 768]);
    assert_eq!(result.parameters.len(), 5);
}

#[test]
fn every_exercise_is_listed_in_the_readme_and_runs_as_json() {
    let _rng = global_rng_lock();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let context = RunContext::for_tests();
    let missing = shared::app::exercise::missing_readme_rows(exercises::ALL, &readme);
    assert!(missing.is_empty(), "README.md lacks the rows {missing:?}");
    for entry in exercises::ALL {
        let json = exercise::run(exercises::ALL, entry.id, true, &context).unwrap();
        serde_json::from_str::<serde_json::Value>(&json).expect("valid JSON");
    }
}
