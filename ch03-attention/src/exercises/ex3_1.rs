//! Exercise 3.1: give `SelfAttentionV1` the weights of a `SelfAttentionV2`.
//!
//! `nn.Linear` stores its weight as `[d_out, d_in]` and computes `x @ W.T`; V1 stores
//! `[d_in, d_out]` and computes `x @ W`. So V1's matrices are V2's weights transposed.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::{Exercise, Report};
use shared::core::device::seed_everything;
use tch::{nn, Device, Tensor};

use crate::self_attention::{SelfAttentionV1, SelfAttentionV2};
use shared::core::tensors::{format_rows, rows_f32};

pub const EXERCISE: Exercise = Exercise {
    id: "3.1",
    summary: "copy SelfAttentionV2's linear weights (transposed) into SelfAttentionV1: identical outputs",
    run: |context| Report::new(&run(context.seed)?),
};

#[derive(Debug, Clone, Serialize)]
pub struct Ex3_1 {
    pub v2_output: Vec<Vec<f32>>,
    pub v1_output_before: Vec<Vec<f32>>,
    pub v1_output_after: Vec<Vec<f32>>,
    /// Bit-for-bit equality of the two outputs after the copy.
    pub identical: bool,
}

/// Copies `v2`'s weights into `v1`, transposed.
pub fn transfer_weights(v2: &SelfAttentionV2, v1: &mut SelfAttentionV1) {
    tch::no_grad(|| {
        v1.w_query.copy_(&v2.w_query.ws.tr());
        v1.w_key.copy_(&v2.w_key.ws.tr());
        v1.w_value.copy_(&v2.w_value.ws.tr());
    });
}

/// V2 seeded with 789 as in the book, V1 with `seed`, on the chapter's inputs.
pub fn run(seed: u64) -> Result<Ex3_1> {
    let inputs = crate::inputs(Device::Cpu);
    seed_everything(789);
    let vs2 = nn::VarStore::new(Device::Cpu);
    let v2 = SelfAttentionV2::new(&vs2.root(), 3, 2, false);
    seed_everything(seed);
    let vs1 = nn::VarStore::new(Device::Cpu);
    let mut v1 = SelfAttentionV1::new(&vs1.root(), 3, 2);
    let (v2_out, before) = tch::no_grad(|| (v2.forward(&inputs), v1.forward(&inputs)));
    transfer_weights(&v2, &mut v1);
    let after: Tensor = tch::no_grad(|| v1.forward(&inputs));
    Ok(Ex3_1 {
        identical: after.equal(&v2_out),
        v2_output: rows_f32(&v2_out),
        v1_output_before: rows_f32(&before),
        v1_output_after: rows_f32(&after),
    })
}

impl fmt::Display for Ex3_1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "SelfAttentionV2 (seed 789):\n{}", format_rows(&self.v2_output))?;
        writeln!(f, "SelfAttentionV1, own weights:\n{}", format_rows(&self.v1_output_before))?;
        writeln!(f, "SelfAttentionV1 with V2's weights transposed:\n{}", format_rows(&self.v1_output_after))?;
        write!(f, "Identical: {}", self.identical)
    }
}
