//! The instruction-record loader, fed thousands of broken versions of the book's records (see
//! `shared::fuzz`): each ends in `Ok` or an error, never a panic. `FUZZ_CASES=N` runs N cases.

use ch07_instruction::records;
use shared::fuzz::{cases_from_env, check_loader};

#[test]
fn instruction_records() {
    let all = records::load(&shared::data::bundled_dir().join("instruction-data.json")).unwrap();
    let seed = serde_json::to_vec_pretty(&all[..4]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.json");
    let summary = check_loader("instruction-records", &seed, cases_from_env(), |bytes| {
        std::fs::write(&path, bytes).unwrap();
        records::load(&path)
    });
    println!("instruction records: {summary}");
}
