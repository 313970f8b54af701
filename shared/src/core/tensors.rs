//! Tensors as nested vectors, for printing, JSON results and comparisons in tests, and
//! their size in memory.

use tch::{Device, Kind, Tensor};

fn flat<T>(t: &Tensor, kind: Kind) -> Vec<T>
where
    Vec<T>: TryFrom<Tensor, Error = tch::TchError>,
{
    Vec::<T>::try_from(t.detach().to_device(Device::Cpu).to_kind(kind).contiguous().view(-1))
        .expect("a tensor convertible to the requested element type")
}

fn last_dim(t: &Tensor) -> usize {
    (*t.size().last().expect("a tensor of rank 1 or more") as usize).max(1)
}

/// The bytes of a tensor's elements.
pub fn byte_size(t: &Tensor) -> i64 {
    (t.numel() * t.kind().elt_size_in_bytes()) as i64
}

/// Every element as f32, in row-major order.
pub fn vec_f32(t: &Tensor) -> Vec<f32> {
    flat(t, Kind::Float)
}

/// Every element as f64, in row-major order.
pub fn vec_f64(t: &Tensor) -> Vec<f64> {
    flat(t, Kind::Double)
}

/// A 2-D tensor's rows as f64 (statistics, figures).
pub fn rows_f64(t: &Tensor) -> Vec<Vec<f64>> {
    vec_f64(t).chunks(last_dim(t)).map(<[f64]>::to_vec).collect()
}

/// A 2-D tensor's rows as f32.
pub fn rows_f32(t: &Tensor) -> Vec<Vec<f32>> {
    vec_f32(t).chunks(last_dim(t)).map(<[f32]>::to_vec).collect()
}

/// A 3-D tensor's matrices as f32.
pub fn matrices_f32(t: &Tensor) -> Vec<Vec<Vec<f32>>> {
    (0..t.size()[0]).map(|i| rows_f32(&t.get(i))).collect()
}

/// A 2-D tensor's rows as i64 (token ids, labels).
pub fn rows_i64(t: &Tensor) -> Vec<Vec<i64>> {
    flat::<i64>(t, Kind::Int64).chunks(last_dim(t)).map(<[i64]>::to_vec).collect()
}

/// Rows printed like PyTorch prints them, 4 decimals, one row per line.
pub fn format_rows(rows: &[Vec<f32>]) -> String {
    rows.iter()
        .map(|row| format!("[{}]", row.iter().map(|x| format!("{x:8.4}")).collect::<Vec<_>>().join(",")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_by_rank() {
        let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(rows_f32(&t.view([2, 3])), [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        assert_eq!(matrices_f32(&t.view([3, 1, 2]))[2], [[5.0, 6.0]]);
        assert_eq!(rows_i64(&t.view([3, 2]).transpose(0, 1)), [[1, 3, 5], [2, 4, 6]]);
        assert_eq!(format_rows(&[vec![1.0, -0.25]]), "[  1.0000, -0.2500]");
    }
}
