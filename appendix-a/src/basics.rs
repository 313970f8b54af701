//! Sections A.2.1-A.2.3: tensors of every rank, their dtypes, and common operations.

use std::fmt;

use serde::Serialize;
use shared::core::tensors::rows_i64;
use tch::{Kind, Tensor};

/// What the appendix prints about tensors.
#[derive(Debug, Clone, Serialize)]
pub struct TensorBasics {
    /// Shapes of the rank 0-3 tensors `1`, `[1, 2, 3]`, `[[1, 2], [3, 4]]`, `[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]`.
    pub rank_shapes: Vec<Vec<i64>>,
    /// Integers default to int64, floats to float32 (A.2.2).
    pub int_dtype: String,
    pub float_dtype: String,
    pub converted_dtype: String,
    pub shape: Vec<i64>,
    pub reshaped: Vec<Vec<i64>>,
    pub viewed: Vec<Vec<i64>>,
    pub transposed: Vec<Vec<i64>>,
    /// `tensor2d @ tensor2d.T`.
    pub matmul: Vec<Vec<i64>>,
}

pub fn run() -> TensorBasics {
    let tensor0d = Tensor::from(1i64);
    let tensor1d = Tensor::from_slice(&[1i64, 2, 3]);
    let tensor2d = Tensor::from_slice(&[1i64, 2, 3, 4]).view([2, 2]);
    let tensor3d = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6, 7, 8]).view([2, 2, 2]);
    let floatvec = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
    let matrix = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6]).view([2, 3]);
    TensorBasics {
        rank_shapes: [&tensor0d, &tensor1d, &tensor2d, &tensor3d].iter().map(|t| t.size()).collect(),
        int_dtype: format!("{:?}", tensor1d.kind()),
        float_dtype: format!("{:?}", floatvec.kind()),
        converted_dtype: format!("{:?}", tensor1d.to_kind(Kind::Float).kind()),
        shape: matrix.size(),
        reshaped: rows_i64(&matrix.reshape([3, 2])),
        viewed: rows_i64(&matrix.view([3, 2])),
        transposed: rows_i64(&matrix.tr()),
        matmul: rows_i64(&matrix.matmul(&matrix.tr())),
    }
}

impl fmt::Display for TensorBasics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Shapes of rank 0-3 tensors: {:?}", self.rank_shapes)?;
        writeln!(
            f,
            "dtypes: integers {}, floats {}, integers .to(float32) {}",
            self.int_dtype, self.float_dtype, self.converted_dtype
        )?;
        writeln!(f, "tensor2d.shape: {:?}", self.shape)?;
        writeln!(f, "reshape(3, 2): {:?}", self.reshaped)?;
        writeln!(f, "view(3, 2):    {:?}", self.viewed)?;
        writeln!(f, "tensor2d.T:    {:?}", self.transposed)?;
        write!(f, "tensor2d @ tensor2d.T: {:?}", self.matmul)
    }
}
