//! Comparing results with reference values stored as JSON (the PyTorch fixtures that
//! `scripts/reference/generate.sh` writes into each crate's `tests/fixtures/`), and with
//! committed text snapshots (every binary's `--help`, so that a refactoring cannot change a
//! flag unnoticed).

use std::path::Path;
use std::process::Command;

use serde::Serialize;
use serde_json::Value;

/// Every number in `value`, depth first (nested arrays flattened).
pub fn json_floats(value: &Value) -> Vec<f64> {
    match value {
        Value::Array(items) => items.iter().flat_map(json_floats).collect(),
        Value::Number(n) => vec![n.as_f64().expect("a finite number")],
        other => panic!("not a number: {other}"),
    }
}

/// Panics (for tests) unless `ours` has the shape of `expected` and every element is within
/// `tol` of it.
pub fn assert_close(name: &str, ours: impl Serialize, expected: &Value, tol: f64) {
    let ours = json_floats(&serde_json::to_value(ours).expect("serialisable"));
    let expected = json_floats(expected);
    assert_eq!(ours.len(), expected.len(), "{name}: {} values, the reference has {}", ours.len(), expected.len());
    for (i, (a, e)) in ours.iter().zip(&expected).enumerate() {
        assert!((a - e).abs() <= tol, "{name}[{i}]: {a} vs reference {e} (tolerance {tol})");
    }
}

/// The help of the binary at `bin` and of every command under it, recursively: each
/// `bin [COMMAND...] --help` under a `## ` heading.
pub fn help_snapshot(bin: &Path) -> String {
    fn collect(bin: &Path, commands: &mut Vec<String>, out: &mut String) {
        let output = Command::new(bin).args(commands.iter()).arg("--help").output().expect("the binary runs");
        assert!(output.status.success(), "{commands:?} --help failed");
        let help = String::from_utf8(output.stdout).expect("UTF-8 help");
        *out += &format!("## {}\n{help}\n", [&["<bin>".to_string()][..], commands].concat().join(" "));
        let listed = help.split("\nCommands:\n").nth(1).map(|rest| rest.split("\n\n").next().unwrap_or(""));
        for line in listed.unwrap_or("").lines() {
            // "  name   summary": a command's line starts with two spaces and its name.
            let Some(name) = line.strip_prefix("  ").and_then(|l| l.split_whitespace().next()) else { continue };
            if name != "help" && !line.starts_with("   ") {
                commands.push(name.to_string());
                collect(bin, commands, out);
                commands.pop();
            }
        }
    }
    let mut out = String::new();
    collect(bin, &mut Vec::new(), &mut out);
    out
}

/// Panics (for tests) unless [`help_snapshot`] of the binary at `bin` equals the crate's
/// committed `tests/snapshots/help.txt` (`crate_dir`: the crate's `CARGO_MANIFEST_DIR`).
pub fn assert_help_unchanged(bin: &str, crate_dir: &str) {
    let snapshot = Path::new(crate_dir).join("tests/snapshots/help.txt");
    assert_snapshot(&snapshot, &help_snapshot(Path::new(bin)));
}

/// Panics (for tests) unless the file at `path` holds `actual`; with `UPDATE_SNAPSHOTS=1` it
/// writes `actual` there instead (review the diff before committing it).
pub fn assert_snapshot(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("a file in a folder")).expect("the folder can be made");
        std::fs::write(path, actual).expect("the snapshot can be written");
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("no snapshot at {}: run the test with UPDATE_SNAPSHOTS=1", path.display()));
    if expected != actual {
        let line = expected.lines().zip(actual.lines()).position(|(e, a)| e != a).unwrap_or(0);
        panic!(
            "{} differs from the output at line {}:\n  snapshot: {:?}\n  now:      {:?}\n(UPDATE_SNAPSHOTS=1 rewrites it)",
            path.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or(""),
            actual.lines().nth(line).unwrap_or("")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_and_compares() {
        let expected = serde_json::json!([[1.0, 2.0], [3.0, 4.5]]);
        assert_eq!(json_floats(&expected), [1.0, 2.0, 3.0, 4.5]);
        assert_close("ok", [[1.0, 2.0], [3.0, 4.50001]], &expected, 1e-4);
        let result = std::panic::catch_unwind(|| assert_close("bad", [1.0, 2.0, 3.0, 5.0], &expected, 1e-4));
        assert!(result.is_err());
    }
}
