//! Exercise 3.3: a `MultiHeadAttention` shaped like GPT-2 small's (768 dimensions, 12 heads,
//! 1,024 tokens of context).

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::{Exercise, Report};
use shared::core::device::seed_everything;
use shared::model::attention::MultiHeadAttention;
use tch::{nn, Kind, Tensor};

pub const EXERCISE: Exercise = Exercise {
    id: "3.3",
    summary: "MultiHeadAttention with GPT-2 small's shape (768 dims, 12 heads, 1,024 tokens): 2,360,064 parameters",
    run: |context| Report::new(&run(context)?),
};

#[derive(Debug, Clone, Serialize)]
pub struct Ex3_3 {
    pub d_in: i64,
    pub d_out: i64,
    pub num_heads: i64,
    pub context_length: i64,
    pub head_dim: i64,
    /// Each parameter's name and element count.
    pub parameters: Vec<(String, i64)>,
    pub total_parameters: i64,
    pub input_shape: Vec<i64>,
    pub output_shape: Vec<i64>,
}

pub fn run(context: &shared::app::cli::RunContext) -> Result<Ex3_3> {
    let (d_in, d_out, num_heads, context_length) = (768, 768, 12, 1024);
    seed_everything(context.seed);
    let vs = nn::VarStore::new(context.device);
    let mha = MultiHeadAttention::new(vs.root(), d_in, d_out, context_length, 0.0, num_heads, false)?;
    let mut parameters: Vec<(String, i64)> =
        vs.variables().into_iter().map(|(name, t)| (name, t.numel() as i64)).collect();
    parameters.sort();
    let x = Tensor::randn([1, context_length, d_in], (Kind::Float, context.device));
    let out = tch::no_grad(|| mha.forward_t(&x, false));
    Ok(Ex3_3 {
        d_in,
        d_out,
        num_heads,
        context_length,
        head_dim: mha.head_dim,
        total_parameters: parameters.iter().map(|(_, n)| n).sum(),
        parameters,
        input_shape: x.size(),
        output_shape: out.size(),
    })
}

impl fmt::Display for Ex3_3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "MultiHeadAttention(d_in={}, d_out={}, context_length={}, num_heads={}): head_dim {}",
            self.d_in, self.d_out, self.context_length, self.num_heads, self.head_dim
        )?;
        for (name, count) in &self.parameters {
            writeln!(f, "  {name:<20} {count:>10}")?;
        }
        writeln!(f, "Total parameters: {}", self.total_parameters)?;
        write!(f, "Input {:?} -> output {:?}", self.input_shape, self.output_shape)
    }
}
