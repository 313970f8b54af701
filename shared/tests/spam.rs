//! The spam data preparation against the book's pandas code
//! (scripts/reference/ch06_classification.py → tests/fixtures/spam-reference.json).

use serde_json::Value;
use sha2::{Digest, Sha256};
use shared::app::cli::RunContext;
use shared::data::spam::{self, Message};
use shared::data::SMS_SPAM_COLLECTION;

fn digest(messages: &[Message]) -> String {
    let rows: Vec<String> = messages.iter().map(|m| format!("{}\t{}", m.label, m.text)).collect();
    Sha256::digest(rows.join("\n").as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn parsing_balancing_and_splitting_equal_pandas() {
    let reference: Value = serde_json::from_str(include_str!("fixtures/spam-reference.json")).unwrap();
    let text = RunContext::for_tests()
        .data
        .read_to_string(&SMS_SPAM_COLLECTION)
        .expect("the SMS Spam Collection (set LLMS_DATA_DIR or go online)");
    let parsed = spam::parse_collection(&text);
    assert!(parsed.malformed.is_empty(), "{:?}", parsed.malformed);
    assert_eq!(parsed.messages.len() as i64, reference["rows"].as_i64().unwrap());
    let spam_count = parsed.messages.iter().filter(|m| m.label == 1).count();
    assert_eq!((parsed.messages.len() - spam_count, spam_count), (4825, 747));
    let balanced = spam::balance(&parsed.messages, 123);
    assert_eq!(digest(&balanced), reference["balanced_digest"].as_str().unwrap());
    let (train, validation, test) = spam::random_split(&balanced, 0.7, 0.1, 123);
    assert_eq!((train.len(), validation.len(), test.len()), (1045, 149, 300));
    for (name, part) in [("train", &train), ("validation", &validation), ("test", &test)] {
        assert_eq!(digest(part), reference[name]["digest"].as_str().unwrap(), "{name}");
        assert_eq!(part[0].text, reference[name]["first_text"].as_str().unwrap());
    }
    // The CSV files read back as written.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.csv");
    spam::write_csv(&path, &train).unwrap();
    assert_eq!(spam::read_csv(&path).unwrap(), train);
}

#[test]
fn quoting_follows_pandas_and_bad_lines_are_reported() {
    let text = "ham\tplain text\nspam\t\"quoted, with \"\"inner\"\" quotes\"\nham\t\"starts quoted\" then more\n\
                ham\tnot \"quoted\" here\nspam\t\"runs over\na line break\"\nbogus\tlabel\nham\ttoo\tmany\nham\n";
    let parsed = spam::parse_collection(text);
    let texts: Vec<&str> = parsed.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "plain text",
            "quoted, with \"inner\" quotes",
            "starts quoted then more",
            "not \"quoted\" here",
            "runs over\na line break"
        ]
    );
    let lines: Vec<usize> = parsed.malformed.iter().map(|(line, _)| *line).collect();
    assert_eq!(lines, [7, 8, 9]);
    assert!(parsed.malformed[0].1.contains("unknown label \"bogus\""));
    assert!(parsed.malformed[1].1.contains("3 tab-separated fields"));
}

#[test]
fn numpy_permutation_matches_numpy() {
    // numpy 2: np.random.RandomState(123).permutation(10)
    assert_eq!(spam::NumpyRandomState::new(123).permutation(10), [4, 0, 7, 5, 8, 3, 1, 6, 9, 2]);
}
