//! Tensors as nested vectors, for printing, JSON and comparisons in tests.

use tch::{Device, Kind, Tensor};

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.detach().to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1)).expect("a float tensor")
}

/// A 1-D tensor.
pub fn vec1(t: &Tensor) -> Vec<f32> {
    values(t)
}

/// A 2-D tensor, row by row.
pub fn vec2(t: &Tensor) -> Vec<Vec<f32>> {
    let width = *t.size().last().expect("a 2-D tensor") as usize;
    values(t).chunks(width.max(1)).map(<[f32]>::to_vec).collect()
}

/// A 3-D tensor, matrix by matrix.
pub fn vec3(t: &Tensor) -> Vec<Vec<Vec<f32>>> {
    (0..t.size()[0]).map(|i| vec2(&t.get(i))).collect()
}

/// Formats rows like PyTorch prints them, 4 decimals.
pub fn format_rows(rows: &[Vec<f32>]) -> String {
    rows.iter()
        .map(|row| format!("[{}]", row.iter().map(|x| format!("{x:7.4}")).collect::<Vec<_>>().join(",")))
        .collect::<Vec<_>>()
        .join("\n")
}
