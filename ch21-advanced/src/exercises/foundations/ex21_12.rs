//! Exercise 21.12: single-head causal self-attention written out (projections, scores, mask,
//! softmax, weighted sum), returning the output and the attention weights.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::Report;

use crate::exercises::Exercise;
use shared::core::tensors::rows_f32;
use tch::{Device, Kind, Tensor};

pub const EXERCISE: Exercise = Exercise {
    id: "21.12",
    summary: "single-head causal self-attention from scratch: output and weights (lower-triangular, rows summing to 1)",
    run: |context| Report::new(&run(context.seed)?),
};

/// One head: `x W_q`, `x W_k`, `x W_v` with `(d_model, d_head)` matrices.
#[derive(Debug)]
pub struct SingleHeadAttention {
    pub w_q: Tensor,
    pub w_k: Tensor,
    pub w_v: Tensor,
}

impl SingleHeadAttention {
    /// Random projections (N(0, 1) / sqrt(d_model)) from the global generator.
    pub fn new(d_model: i64, d_head: i64) -> Self {
        let draw = || Tensor::randn([d_model, d_head], (Kind::Float, Device::Cpu)) / (d_model as f64).sqrt();
        Self { w_q: draw(), w_k: draw(), w_v: draw() }
    }

    /// `x`: `(batch, seq_len, d_model)` -> (output `(batch, seq_len, d_head)`, weights
    /// `(batch, seq_len, seq_len)`).
    pub fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let (q, k, v) = (x.matmul(&self.w_q), x.matmul(&self.w_k), x.matmul(&self.w_v));
        let d_head = self.w_q.size()[1];
        let scores = q.matmul(&k.transpose(1, 2)) / (d_head as f64).sqrt();
        let len = x.size()[1];
        let future = Tensor::ones([len, len], (Kind::Bool, x.device())).triu(1);
        let weights = scores.masked_fill(&future, f64::NEG_INFINITY).softmax(-1, Kind::Float);
        (weights.matmul(&v), weights)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_12 {
    pub input_shape: Vec<i64>,
    pub output_shape: Vec<i64>,
    /// The first sequence's weights.
    pub weights: Vec<Vec<f32>>,
    /// The largest weight above the diagonal (0: lower-triangular).
    pub above_diagonal: f64,
    /// The largest distance of a row sum from 1.
    pub row_sum_error: f64,
}

pub fn run(seed: u64) -> Result<Ex21_12> {
    let (attention, x) = {
        let _rng = shared::core::device::global_rng_lock();
        tch::manual_seed(seed as i64);
        (SingleHeadAttention::new(8, 4), Tensor::randn([2, 5, 8], (Kind::Float, Device::Cpu)))
    };
    let (output, weights) = attention.forward(&x);
    let upper = Tensor::ones([5, 5], (Kind::Bool, Device::Cpu)).triu(1);
    Ok(Ex21_12 {
        input_shape: x.size(),
        output_shape: output.size(),
        weights: rows_f32(&weights.get(0)),
        above_diagonal: weights.masked_select(&upper).abs().max().double_value(&[]),
        row_sum_error: (weights.sum_dim_intlist(-1, false, Kind::Float) - 1.0).abs().max().double_value(&[]),
    })
}

impl fmt::Display for Ex21_12 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Input {:?} -> output {:?}; the first sequence's attention weights:",
            self.input_shape, self.output_shape
        )?;
        for row in &self.weights {
            writeln!(f, "  [{}]", row.iter().map(|w| format!("{w:.4}")).collect::<Vec<_>>().join(", "))?;
        }
        write!(
            f,
            "Lower-triangular: the largest weight above the diagonal is {}; rows sum to 1 within {:.1e}.",
            self.above_diagonal, self.row_sum_error
        )
    }
}
