//! PyTorch's default parameter initializers, reproduced draw for draw (sections 3.4 and 4.6).
//!
//! With `tch::manual_seed(s)` these create the same numbers as the book's PyTorch modules
//! after `torch.manual_seed(s)`, as long as parameters are created in the same order:
//! - `nn.Linear(in, out)`: the weight `[out, in]` first, U(-b, b) with Kaiming's bound for
//!   `a = sqrt(5)` (which works out to `1 / sqrt(in)`), then the bias, U(-1/sqrt(in), 1/sqrt(in));
//! - `nn.Embedding`: N(0, 1);
//! - `torch.rand`: U[0, 1).
//!
//! `tch::nn::linear` is not used: its bound differs and it creates the bias first.

use tch::nn::{self, Init};
use tch::Tensor;

/// `kaiming_uniform_(w, a=sqrt(5))`'s bound, computed in f64 in PyTorch's order.
pub fn linear_weight_bound(fan_in: i64) -> f64 {
    let a = 5f64.sqrt();
    let gain = (2.0 / (1.0 + a * a)).sqrt();
    let std = gain / (fan_in as f64).sqrt();
    3f64.sqrt() * std
}

/// The bias bound of `nn.Linear`: `1 / sqrt(fan_in)` (0 when there are no inputs).
pub fn linear_bias_bound(fan_in: i64) -> f64 {
    if fan_in > 0 {
        1.0 / (fan_in as f64).sqrt()
    } else {
        0.0
    }
}

/// `nn.Linear(in_dim, out_dim, bias)` with variables `weight` (`[out, in]`) and `bias`
/// under `path`, created in PyTorch's order.
pub fn linear(path: nn::Path, in_dim: i64, out_dim: i64, bias: bool) -> nn::Linear {
    let bound = linear_weight_bound(in_dim);
    let ws = path.var("weight", &[out_dim, in_dim], Init::Uniform { lo: -bound, up: bound });
    let bs = bias.then(|| {
        let bound = linear_bias_bound(in_dim);
        path.var("bias", &[out_dim], Init::Uniform { lo: -bound, up: bound })
    });
    nn::Linear { ws, bs }
}

/// `nn.Embedding(count, dim)`: a `weight` variable drawn from N(0, 1).
pub fn embedding(path: nn::Path, count: i64, dim: i64) -> nn::Embedding {
    nn::embedding(path, count, dim, Default::default())
}

/// `nn.Parameter(torch.rand(dims))`: a variable drawn from U[0, 1).
pub fn rand(path: &nn::Path, name: &str, dims: &[i64]) -> Tensor {
    path.var(name, dims, Init::Uniform { lo: 0.0, up: 1.0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{global_rng_lock, seed_everything};
    use tch::{Device, Kind};

    #[test]
    fn bounds_match_pytorch() {
        assert!((linear_weight_bound(768) - 1.0 / 768f64.sqrt()).abs() < 1e-15);
        assert_eq!(linear_bias_bound(4), 0.5);
        assert_eq!(linear_bias_bound(0), 0.0);
    }

    #[test]
    fn linear_draws_weight_then_bias() {
        let _rng = global_rng_lock();
        let vs = nn::VarStore::new(Device::Cpu);
        seed_everything(7);
        let layer = linear(vs.root() / "proj", 4, 3, true);
        seed_everything(7);
        let weight = Tensor::zeros([3, 4], (Kind::Float, Device::Cpu)).uniform_(-0.5, 0.5);
        let bias = Tensor::zeros([3], (Kind::Float, Device::Cpu)).uniform_(-0.5, 0.5);
        assert!(layer.ws.equal(&weight));
        assert!(layer.bs.unwrap().equal(&bias));
        let names: Vec<String> = vs.variables().into_keys().collect();
        assert!(names.contains(&"proj.weight".to_string()) && names.contains(&"proj.bias".to_string()));
    }
}
