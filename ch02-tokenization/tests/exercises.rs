//! Exercises 2.1 and 2.2 give the values of the book's solutions (appendix C).

use ch02_tokenization::exercises::{self, ex2_1, ex2_2};
use shared::app::cli::RunContext;
use shared::app::exercise;
use shared::core::device::global_rng_lock;

#[test]
fn exercise_2_1_encodes_and_decodes_the_unknown_words() {
    let result = ex2_1::run().unwrap();
    assert_eq!(result.ids, [33901, 86, 343, 86, 220, 959]);
    let pieces: Vec<(u32, &str)> = result.pieces.iter().map(|(id, p)| (*id, p.as_str())).collect();
    assert_eq!(pieces, [(33901, "Ak"), (86, "w"), (343, "ir"), (86, "w"), (220, " "), (959, "ier")]);
    assert_eq!(result.decoded, "Akwirw ier");
}

#[test]
fn exercise_2_2_reproduces_the_solution_batches() {
    let _rng = global_rng_lock(); // iterating a loader draws from the global generator
    let result = ex2_2::run(&RunContext::for_tests()).expect("needs the-verdict.txt (set LLMS_DATA_DIR)");
    let [short, long] = &result.loaders[..] else { panic!("two loaders expected") };
    assert_eq!((short.batch_size, short.max_length, short.stride), (4, 2, 2));
    assert_eq!(short.inputs, [[40, 367], [2885, 1464], [1807, 3619], [402, 271]]);
    assert_eq!(short.targets, [[367, 2885], [1464, 1807], [3619, 402], [271, 10899]]);
    assert_eq!((long.batch_size, long.max_length, long.stride), (4, 8, 2));
    assert_eq!(
        long.inputs,
        [
            [40, 367, 2885, 1464, 1807, 3619, 402, 271],
            [2885, 1464, 1807, 3619, 402, 271, 10899, 2138],
            [1807, 3619, 402, 271, 10899, 2138, 257, 7026],
            [402, 271, 10899, 2138, 257, 7026, 15632, 438]
        ]
    );
    // Targets are the inputs shifted by one token.
    for (input, target) in long.inputs.iter().zip(&long.targets) {
        assert_eq!(input[1..], target[..7]);
    }
}

#[test]
fn every_exercise_is_listed_and_runs_as_json() {
    let _rng = global_rng_lock();
    let ids: Vec<&str> = exercises::ALL.iter().map(|e| e.id).collect();
    assert_eq!(ids, ["2.1", "2.2"]);
    let context = RunContext::for_tests();
    for entry in exercises::ALL {
        let json = exercise::run(exercises::ALL, entry.id, true, &context).unwrap();
        serde_json::from_str::<serde_json::Value>(&json).expect("valid JSON");
        assert!(exercise::list(exercises::ALL).contains(entry.summary));
    }
}

#[test]
fn the_readme_lists_every_exercise() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let missing = shared::app::exercise::missing_readme_rows(exercises::ALL, &readme);
    assert!(missing.is_empty(), "README.md lacks the rows {missing:?}");
}
