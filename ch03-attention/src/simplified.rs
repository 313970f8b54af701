//! Section 3.3: self-attention without trainable weights.

use tch::{Kind, Tensor};

/// Attention scores of every input with respect to `query` (dot products, section 3.3.1).
pub fn attention_scores(inputs: &Tensor, query: &Tensor) -> Tensor {
    inputs.matmul(query)
}

/// Normalisation by the sum: weights that add up to 1 but can be negative for negative scores.
pub fn normalize_by_sum(scores: &Tensor) -> Tensor {
    scores / scores.sum(Kind::Float)
}

/// The textbook softmax, `exp(x) / sum(exp(x))` (unstable for large inputs).
pub fn naive_softmax(scores: &Tensor) -> Tensor {
    let exp = scores.exp();
    &exp / exp.sum_dim_intlist(0, false, Kind::Float)
}

/// All context vectors at once (section 3.3.2): `softmax(inputs @ inputs.T) @ inputs`.
pub fn all_context_vectors(inputs: &Tensor) -> (Tensor, Tensor, Tensor) {
    let scores = inputs.matmul(&inputs.tr());
    let weights = scores.softmax(-1, Kind::Float);
    let context = weights.matmul(inputs);
    (scores, weights, context)
}
