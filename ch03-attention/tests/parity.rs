//! PyTorch parity: the walk-through's modules reproduce the book's PyTorch code (values in
//! tests/fixtures/pytorch-reference.json, written by scripts/reference/generate.sh).

use ch03_attention::walkthrough::{self, Walkthrough};
use serde_json::Value;
use shared::core::device::global_rng_lock;
use shared::reference::json_floats;

fn reference() -> Value {
    serde_json::from_str(include_str!("fixtures/pytorch-reference.json")).unwrap()
}

fn walkthrough() -> Walkthrough {
    let _rng = global_rng_lock();
    walkthrough::run(123).unwrap()
}

/// Asserts `ours` equals the reference entry `key` within `tol` element-wise.
fn assert_close(key: &str, ours: impl serde::Serialize, tol: f64) {
    shared::reference::assert_close(key, ours, &reference()[key], tol);
}

#[test]
fn inputs_match() {
    assert_close("inputs", ch03_attention::INPUTS, 0.0);
}

#[test]
fn seeded_modules_match_pytorch_to_4_decimals() {
    let w = walkthrough();
    assert_close("sa_v1", &w.sa_v1, 1e-4);
    assert_close("sa_v2", &w.sa_v2, 1e-4);
    assert_close("causal_attention", &w.causal_attention, 1e-4);
    assert_close("mha_wrapper", &w.mha_wrapper, 1e-4);
    assert_close("mha", &w.mha, 1e-4);
}

#[test]
fn every_step_of_the_walkthrough_matches() {
    let w = walkthrough();
    let tol = 1e-6;
    assert_close("attn_scores_2", &w.attn_scores_2, tol);
    assert_close("attn_weights_2_tmp", &w.attn_weights_2_tmp, tol);
    assert_close("attn_weights_2", &w.attn_weights_2_naive, tol);
    assert_close("attn_weights_2", &w.attn_weights_2, tol);
    assert_close("context_vec_2", &w.context_vec_2, tol);
    assert_close("attn_scores", &w.attn_scores, tol);
    assert_close("attn_weights", &w.attn_weights, tol);
    assert_close("all_context_vecs", &w.all_context_vecs, tol);
    assert_close("query_2", &w.query_2, tol);
    assert_close("attn_score_22", w.attn_score_22, tol);
    assert_close("qk_attn_scores_2", &w.qk_attn_scores_2, tol);
    assert_close("qk_attn_weights_2", &w.qk_attn_weights_2, tol);
    assert_close("qk_context_vec_2", &w.qk_context_vec_2, tol);
    assert_close("causal_attn_weights", &w.causal_attn_weights, tol);
    assert_close("masked_simple", &w.masked_simple, tol);
    assert_close("masked_simple_norm", &w.masked_simple_norm, tol);
    assert_close("masked_attn_weights", &w.masked_attn_weights, tol);
    // Dropout draws the same Bernoulli mask as torch.nn.Dropout after manual_seed(123).
    assert_close("dropout_ones", &w.dropout_ones, 0.0);
    assert_close("dropout_attn_weights", &w.dropout_attn_weights, tol);
    assert_close("batched_matmul", &w.batched_matmul, tol);
    assert_eq!(w.keys_shape, [6, 2]);
    assert_eq!(w.batch_shape, [2, 6, 3]);
}

#[test]
fn book_printed_values() {
    // A few numbers exactly as the book prints them (4 decimals).
    let w = walkthrough();
    let round = |x: f32| (x * 1e4).round() / 1e4;
    assert_eq!(w.context_vec_2.iter().map(|&x| round(x)).collect::<Vec<_>>(), [0.4419, 0.6515, 0.5683]);
    assert_eq!(round(w.attn_score_22), 1.8524);
    assert_eq!(w.qk_context_vec_2.iter().map(|&x| round(x)).collect::<Vec<_>>(), [0.3061, 0.8210]);
    assert_eq!(w.mha[0][0].iter().map(|&x| round(x)).collect::<Vec<_>>(), [0.3190, 0.4858]);
    assert_eq!((w.mha_wrapper.len(), w.mha_wrapper[0].len(), w.mha_wrapper[0][0].len()), (2, 6, 4));
}

/// The independent reference (a committed copy, see tests/fixtures/independent/README.md):
/// values produced apart from this project's own generator, to 4 decimals.
#[test]
fn matches_the_independent_parity_fixture() {
    let text = include_str!("fixtures/independent/ch03-attention.json");
    let independent: Value = serde_json::from_str(text).unwrap();
    let w = walkthrough();
    let pairs = [
        ("inputs", serde_json::to_value(ch03_attention::INPUTS).unwrap()),
        ("seed123_SelfAttentionV1_out", serde_json::to_value(&w.sa_v1).unwrap()),
        ("seed789_SelfAttentionV2_out", serde_json::to_value(&w.sa_v2).unwrap()),
        ("seed123_MultiHeadAttention_d_out2_heads2_out", serde_json::to_value(&w.mha).unwrap()),
    ];
    for (key, ours) in pairs {
        let (ours, theirs) = (json_floats(&ours), json_floats(&independent[key]));
        assert_eq!(ours.len(), theirs.len(), "{key}");
        for (a, e) in ours.iter().zip(&theirs) {
            assert!((a - e).abs() <= 5e-5, "{key}: {a} vs {e} (4 decimals)");
        }
    }
}
