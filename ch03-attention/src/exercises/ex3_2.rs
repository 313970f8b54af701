//! Exercise 3.2: two heads, yet 2-dimensional context vectors: each head gets `d_out = 1`.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::{Exercise, Report};
use shared::core::device::seed_everything;
use tch::{nn, Device, Tensor};

use crate::multihead::MultiHeadAttentionWrapper;
use shared::core::tensors::{format_rows, matrices_f32};

pub const EXERCISE: Exercise = Exercise {
    id: "3.2",
    summary: "MultiHeadAttentionWrapper with num_heads=2 and d_out=1 gives 2-dimensional context vectors",
    run: |context| Report::new(&run(context.seed)?),
};

#[derive(Debug, Clone, Serialize)]
pub struct Ex3_2 {
    pub num_heads: i64,
    pub d_out: i64,
    pub shape: Vec<i64>,
    pub context_vecs: Vec<Vec<Vec<f32>>>,
}

pub fn run(seed: u64) -> Result<Ex3_2> {
    let inputs = crate::inputs(Device::Cpu);
    let batch = Tensor::stack(&[&inputs, &inputs], 0);
    let (num_heads, d_out) = (2, 1);
    seed_everything(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let wrapper = MultiHeadAttentionWrapper::new(&vs.root(), 3, d_out, 6, 0.0, num_heads, false);
    let out = tch::no_grad(|| wrapper.forward_t(&batch, false));
    Ok(Ex3_2 { num_heads, d_out, shape: out.size(), context_vecs: matrices_f32(&out) })
}

impl fmt::Display for Ex3_2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "num_heads={}, d_out={} per head:", self.num_heads, self.d_out)?;
        writeln!(f, "{}", format_rows(&self.context_vecs[0]))?;
        write!(f, "context_vecs.shape: {:?}", self.shape)
    }
}
