//! Comparing results with reference values stored as JSON (the PyTorch fixtures that
//! `scripts/reference/generate.sh` writes into each crate's `tests/fixtures/`).

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
