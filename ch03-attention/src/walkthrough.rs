//! The chapter's main run: sections 3.3-3.6 on the six-word `inputs`, computing what the
//! book prints. Every seeded module is built right after `manual_seed`, as in the book.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::core::device::seed_everything;
use shared::model::attention::MultiHeadAttention;
use tch::{nn, Device, Kind, Tensor};

use crate::causal::CausalAttention;
use crate::multihead::MultiHeadAttentionWrapper;
use crate::self_attention::{scaled_weights, SelfAttentionV1, SelfAttentionV2};
use crate::simplified::{all_context_vectors, attention_scores, naive_softmax, normalize_by_sum};
use shared::core::tensors::{format_rows, matrices_f32, rows_f32, vec_f32};

type Matrix = Vec<Vec<f32>>;

/// Everything the walk-through prints, section by section.
#[derive(Debug, Clone, Serialize)]
pub struct Walkthrough {
    // 3.3.1 A simple self-attention mechanism without trainable weights
    pub attn_scores_2: Vec<f32>,
    pub attn_weights_2_tmp: Vec<f32>,
    pub attn_weights_2_naive: Vec<f32>,
    pub attn_weights_2: Vec<f32>,
    pub context_vec_2: Vec<f32>,
    // 3.3.2 Computing attention weights for all input tokens
    pub attn_scores: Matrix,
    pub attn_weights: Matrix,
    pub all_context_vecs: Matrix,
    // 3.4.1 Computing the attention weights step by step
    pub query_2: Vec<f32>,
    pub keys_shape: Vec<i64>,
    pub attn_score_22: f32,
    pub qk_attn_scores_2: Vec<f32>,
    pub qk_attn_weights_2: Vec<f32>,
    pub qk_context_vec_2: Vec<f32>,
    // 3.4.2 A compact self-attention class
    pub sa_v1: Matrix,
    pub sa_v2: Matrix,
    // 3.5.1 Applying a causal attention mask
    pub causal_attn_weights: Matrix,
    pub masked_simple: Matrix,
    pub masked_simple_norm: Matrix,
    pub masked_attn_weights: Matrix,
    // 3.5.2 Masking additional attention weights with dropout
    pub dropout_ones: Matrix,
    pub dropout_attn_weights: Matrix,
    // 3.5.3 A compact causal attention class
    pub batch_shape: Vec<i64>,
    pub causal_attention: Vec<Matrix>,
    // 3.6.1 Stacking multiple single-head attention layers
    pub mha_wrapper: Vec<Matrix>,
    // 3.6.2 Implementing multi-head attention with weight splits
    pub batched_matmul: Vec<Matrix>,
    pub mha: Vec<Matrix>,
}

/// Section 3.6.2's example tensor of shape `(1, 2, 3, 4)`: (batch, heads, tokens, head_dim).
pub const HEADS_EXAMPLE: [[[f32; 4]; 3]; 2] = [
    [[0.2745, 0.6584, 0.2775, 0.8573], [0.8993, 0.0390, 0.9268, 0.7388], [0.7179, 0.7058, 0.9156, 0.4340]],
    [[0.0772, 0.3565, 0.1479, 0.5331], [0.4066, 0.2318, 0.4545, 0.9737], [0.4606, 0.5159, 0.4220, 0.5786]],
];

/// Runs sections 3.3-3.6 on the CPU (the book's numbers come from its CPU generator).
pub fn run(seed: u64) -> Result<Walkthrough> {
    let _no_grad = tch::no_grad_guard();
    let device = Device::Cpu;
    let inputs = crate::inputs(device);
    let (d_in, d_out, context_length) = (3, 2, 6);

    // 3.3.1: "journey" (the second input) as the query.
    let query = inputs.get(1);
    let scores_2 = attention_scores(&inputs, &query);
    let weights_2 = scores_2.softmax(0, Kind::Float);
    let context_vec_2 = weights_2.matmul(&inputs);
    // 3.3.2
    let (attn_scores, attn_weights, all_context_vecs) = all_context_vectors(&inputs);

    // 3.4.1: the weight matrices of SelfAttentionV1, drawn right after the seed.
    seed_everything(seed);
    let vs = nn::VarStore::new(device);
    let sa_v1 = SelfAttentionV1::new(&vs.root(), d_in, d_out);
    let query_2 = query.matmul(&sa_v1.w_query);
    let keys = inputs.matmul(&sa_v1.w_key);
    let values = inputs.matmul(&sa_v1.w_value);
    let qk_scores_2 = query_2.matmul(&keys.tr());
    let qk_weights_2 = scaled_weights(&qk_scores_2, keys.size()[1]);

    // 3.4.2
    let sa_v1_out = sa_v1.forward(&inputs);
    seed_everything(789);
    let vs = nn::VarStore::new(device);
    let sa_v2 = SelfAttentionV2::new(&vs.root(), d_in, d_out, false);
    let sa_v2_out = sa_v2.forward(&inputs);

    // 3.5.1: the weights of sa_v2, masked after the softmax (then renormalised) and before it.
    let causal_weights = sa_v2.attention_weights(&inputs);
    let mask_simple = Tensor::ones([context_length, context_length], (Kind::Float, device)).tril(0);
    let masked_simple = &causal_weights * &mask_simple;
    let masked_simple_norm = &masked_simple / masked_simple.sum_dim_intlist(-1, true, Kind::Float);
    let scores = inputs.apply(&sa_v2.w_query).matmul(&inputs.apply(&sa_v2.w_key).tr());
    let mask = shared::model::attention::causal_mask(context_length, device);
    let masked_weights = shared::model::attention::masked_attention_weights(&scores, &mask, d_out);

    // 3.5.2: dropout with rate 0.5 scales the kept values by 2.
    seed_everything(seed);
    let dropout_ones = Tensor::ones([6, 6], (Kind::Float, device)).dropout(0.5, true);
    seed_everything(seed);
    let dropout_weights = masked_weights.dropout(0.5, true);

    // 3.5.3-3.6.2 on a batch of two copies of the inputs.
    let batch = Tensor::stack(&[&inputs, &inputs], 0);
    seed_everything(seed);
    let vs = nn::VarStore::new(device);
    let causal = CausalAttention::new(&vs.root(), d_in, d_out, context_length, 0.0, false);
    let causal_out = causal.forward_t(&batch, false);
    seed_everything(seed);
    let vs = nn::VarStore::new(device);
    let wrapper = MultiHeadAttentionWrapper::new(&vs.root(), d_in, d_out, context_length, 0.0, 2, false);
    let wrapper_out = wrapper.forward_t(&batch, false);
    let heads = Tensor::from_slice(HEADS_EXAMPLE.as_flattened().as_flattened()).view([1, 2, 3, 4]);
    let batched_matmul = heads.matmul(&heads.transpose(2, 3)).get(0);
    seed_everything(seed);
    let vs = nn::VarStore::new(device);
    let mha = MultiHeadAttention::new(vs.root(), d_in, d_out, context_length, 0.0, 2, false)?;
    let mha_out = mha.forward_t(&batch, false);

    Ok(Walkthrough {
        attn_scores_2: vec_f32(&scores_2),
        attn_weights_2_tmp: vec_f32(&normalize_by_sum(&scores_2)),
        attn_weights_2_naive: vec_f32(&naive_softmax(&scores_2)),
        attn_weights_2: vec_f32(&weights_2),
        context_vec_2: vec_f32(&context_vec_2),
        attn_scores: rows_f32(&attn_scores),
        attn_weights: rows_f32(&attn_weights),
        all_context_vecs: rows_f32(&all_context_vecs),
        query_2: vec_f32(&query_2),
        keys_shape: keys.size(),
        attn_score_22: query_2.dot(&keys.get(1)).double_value(&[]) as f32,
        qk_attn_scores_2: vec_f32(&qk_scores_2),
        qk_attn_weights_2: vec_f32(&qk_weights_2),
        qk_context_vec_2: vec_f32(&qk_weights_2.matmul(&values)),
        sa_v1: rows_f32(&sa_v1_out),
        sa_v2: rows_f32(&sa_v2_out),
        causal_attn_weights: rows_f32(&causal_weights),
        masked_simple: rows_f32(&masked_simple),
        masked_simple_norm: rows_f32(&masked_simple_norm),
        masked_attn_weights: rows_f32(&masked_weights),
        dropout_ones: rows_f32(&dropout_ones),
        dropout_attn_weights: rows_f32(&dropout_weights),
        batch_shape: batch.size(),
        causal_attention: matrices_f32(&causal_out),
        mha_wrapper: matrices_f32(&wrapper_out),
        batched_matmul: matrices_f32(&batched_matmul),
        mha: matrices_f32(&mha_out),
    })
}

fn shape3(m: &[Matrix]) -> [usize; 3] {
    [m.len(), m[0].len(), m[0][0].len()]
}

fn list(v: &[f32]) -> String {
    format_rows(std::slice::from_ref(&v.to_vec()))
}

impl fmt::Display for Walkthrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "== 3.3.1 Self-attention without trainable weights (query: \"journey\") ==")?;
        writeln!(f, "Attention scores: {}", list(&self.attn_scores_2))?;
        writeln!(
            f,
            "Weights (divided by the sum): {}  sum {:.4}",
            list(&self.attn_weights_2_tmp),
            self.attn_weights_2_tmp.iter().sum::<f32>()
        )?;
        writeln!(f, "Weights (naive softmax):      {}", list(&self.attn_weights_2_naive))?;
        writeln!(
            f,
            "Weights (softmax):            {}  sum {:.4}",
            list(&self.attn_weights_2),
            self.attn_weights_2.iter().sum::<f32>()
        )?;
        writeln!(f, "Context vector: {}", list(&self.context_vec_2))?;

        writeln!(f, "\n== 3.3.2 Attention weights for all inputs ==")?;
        writeln!(f, "Scores (inputs @ inputs.T):\n{}", format_rows(&self.attn_scores))?;
        writeln!(f, "Weights (softmax by row):\n{}", format_rows(&self.attn_weights))?;
        let sums: Vec<f32> = self.attn_weights.iter().map(|row| row.iter().sum()).collect();
        writeln!(f, "Row sums: {}", list(&sums))?;
        writeln!(f, "All context vectors:\n{}", format_rows(&self.all_context_vecs))?;

        writeln!(f, "\n== 3.4.1 Trainable weights, step by step (seed 123) ==")?;
        writeln!(f, "query_2: {}", list(&self.query_2))?;
        writeln!(f, "keys.shape: {:?}", self.keys_shape)?;
        writeln!(f, "attn_score_22: {:.4}", self.attn_score_22)?;
        writeln!(f, "attn_scores_2: {}", list(&self.qk_attn_scores_2))?;
        writeln!(f, "attn_weights_2: {}", list(&self.qk_attn_weights_2))?;
        writeln!(f, "context_vec_2: {}", list(&self.qk_context_vec_2))?;

        writeln!(f, "\n== 3.4.2 Compact self-attention classes ==")?;
        writeln!(f, "SelfAttentionV1 (seed 123):\n{}", format_rows(&self.sa_v1))?;
        writeln!(f, "SelfAttentionV2 (seed 789):\n{}", format_rows(&self.sa_v2))?;

        writeln!(f, "\n== 3.5.1 Causal attention mask ==")?;
        writeln!(f, "Attention weights:\n{}", format_rows(&self.causal_attn_weights))?;
        writeln!(f, "Masked after softmax:\n{}", format_rows(&self.masked_simple))?;
        writeln!(f, "Renormalised:\n{}", format_rows(&self.masked_simple_norm))?;
        writeln!(f, "Masked with -inf before softmax:\n{}", format_rows(&self.masked_attn_weights))?;

        writeln!(f, "\n== 3.5.2 Dropout (rate 0.5, seed 123) ==")?;
        writeln!(f, "On a 6 x 6 matrix of ones:\n{}", format_rows(&self.dropout_ones))?;
        writeln!(f, "On the attention weights:\n{}", format_rows(&self.dropout_attn_weights))?;

        writeln!(f, "\n== 3.5.3 CausalAttention (seed 123) ==")?;
        writeln!(f, "batch.shape: {:?}", self.batch_shape)?;
        writeln!(f, "{}", format_rows(&self.causal_attention[0]))?;
        writeln!(f, "context_vecs.shape: {:?}", shape3(&self.causal_attention))?;

        writeln!(f, "\n== 3.6.1 MultiHeadAttentionWrapper (2 heads, seed 123) ==")?;
        writeln!(f, "{}", format_rows(&self.mha_wrapper[0]))?;
        writeln!(f, "context_vecs.shape: {:?}", shape3(&self.mha_wrapper))?;

        writeln!(f, "\n== 3.6.2 MultiHeadAttention (2 heads, seed 123) ==")?;
        writeln!(f, "a @ a.transpose(2, 3) for a of shape (1, 2, 3, 4):")?;
        for head in &self.batched_matmul {
            writeln!(f, "{}", format_rows(head))?;
        }
        writeln!(f, "{}", format_rows(&self.mha[0]))?;
        write!(f, "context_vecs.shape: {:?}", shape3(&self.mha))
    }
}
