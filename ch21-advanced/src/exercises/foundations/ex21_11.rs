//! Exercise 21.11: `create_causal_mask` written out, applied to the attention scores of a
//! 4-token example: the weights before masking see the future, after masking they do not,
//! and every row still sums to 1.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::Report;

use crate::exercises::Exercise;
use shared::core::tensors::rows_f32;
use tch::{Device, Kind, Tensor};

pub const EXERCISE: Exercise = Exercise {
    id: "21.11",
    summary: "create_causal_mask from scratch; a 4-token example's attention weights before and after masking",
    run: |context| Report::new(&run(context.seed)?),
};

/// `true` above the diagonal: query `i` may not see key `j > i`. Built element by element.
pub fn create_causal_mask(len: usize) -> Vec<Vec<bool>> {
    (0..len).map(|i| (0..len).map(|j| j > i).collect()).collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_11 {
    pub mask: Vec<Vec<bool>>,
    pub weights_before: Vec<Vec<f32>>,
    pub weights_after: Vec<Vec<f32>>,
    /// The largest weight on a future position after masking (0).
    pub future_weight: f64,
    pub row_sums: Vec<f64>,
}

pub fn run(seed: u64) -> Result<Ex21_11> {
    let len = 4;
    let mask = create_causal_mask(len);
    let scores = {
        let _rng = shared::core::device::global_rng_lock();
        tch::manual_seed(seed as i64);
        Tensor::randn([len as i64, len as i64], (Kind::Float, Device::Cpu))
    };
    let flat: Vec<bool> = mask.concat();
    let blocked = Tensor::from_slice(&flat).view([len as i64, len as i64]);
    let before = scores.softmax(-1, Kind::Float);
    let after = scores.masked_fill(&blocked, f64::NEG_INFINITY).softmax(-1, Kind::Float);
    let future_weight = after.masked_select(&blocked).abs().max().double_value(&[]);
    let row_sums =
        Vec::<f32>::try_from(after.sum_dim_intlist(-1, false, Kind::Float))?.into_iter().map(f64::from).collect();
    Ok(Ex21_11 { mask, weights_before: rows_f32(&before), weights_after: rows_f32(&after), future_weight, row_sums })
}

impl fmt::Display for Ex21_11 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let matrix = |f: &mut fmt::Formatter<'_>, rows: &[Vec<f32>]| -> fmt::Result {
            for row in rows {
                writeln!(f, "  [{}]", row.iter().map(|w| format!("{w:.4}")).collect::<Vec<_>>().join(", "))?;
            }
            Ok(())
        };
        writeln!(f, "create_causal_mask(4) (X: masked):")?;
        for row in &self.mask {
            writeln!(f, "  {}", row.iter().map(|&m| if m { "X" } else { "0" }).collect::<Vec<_>>().join(" "))?;
        }
        writeln!(f, "Attention weights of random scores, before masking (every row sees the future):")?;
        matrix(f, &self.weights_before)?;
        writeln!(f, "After masking (scores above the diagonal set to -inf before the softmax):")?;
        matrix(f, &self.weights_after)?;
        write!(
            f,
            "Largest weight on a future position: {}; row sums: {:?}",
            self.future_weight,
            self.row_sums.iter().map(|s| format!("{s:.6}")).collect::<Vec<_>>()
        )
    }
}
