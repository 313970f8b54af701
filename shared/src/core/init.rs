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
//!
//! The numbers are drawn from the CPU's generator whatever the model's device, then copied
//! there: the book builds its model on the CPU and moves it (`GPTModel(cfg).to(device)`), so
//! a seeded model is the book's on a GPU too (the GPU's own generator draws other numbers).

use tch::nn::{self, Init};
use tch::{Device, Tensor};

/// A variable `name` of shape `dims` under `path`, its values drawn by `init` from the CPU's
/// generator (see the module's note) and copied to the path's device.
pub fn var(path: &nn::Path, name: &str, dims: &[i64], init: Init) -> Tensor {
    if path.device() == Device::Cpu {
        return path.var(name, dims, init);
    }
    // The same draws `path.var` makes on the CPU (it calls `nn::init::init` too).
    path.var_copy(name, &nn::init::init(init, dims, Device::Cpu))
}

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
    let ws = var(&path, "weight", &[out_dim, in_dim], Init::Uniform { lo: -bound, up: bound });
    let bs = bias.then(|| {
        let bound = linear_bias_bound(in_dim);
        var(&path, "bias", &[out_dim], Init::Uniform { lo: -bound, up: bound })
    });
    nn::Linear { ws, bs }
}

/// `nn.Embedding(count, dim)`: a `weight` variable drawn from N(0, 1).
pub fn embedding(path: nn::Path, count: i64, dim: i64) -> nn::Embedding {
    let normal = Init::Randn { mean: 0.0, stdev: 1.0 };
    if path.device() == Device::Cpu {
        return nn::embedding(path, count, dim, nn::EmbeddingConfig { ws_init: normal, ..Default::default() });
    }
    // Created as zeros (no draws), then filled with the CPU's draws (see [`var`]).
    let config = nn::EmbeddingConfig { ws_init: Init::Const(0.0), ..Default::default() };
    let embedding = nn::embedding(&path, count, dim, config);
    tch::no_grad(|| embedding.ws.shallow_clone().copy_(&nn::init::init(normal, &[count, dim], Device::Cpu)));
    embedding
}

/// `nn.Parameter(torch.rand(dims))`: a variable drawn from U[0, 1).
pub fn rand(path: &nn::Path, name: &str, dims: &[i64]) -> Tensor {
    var(path, name, dims, Init::Uniform { lo: 0.0, up: 1.0 })
}

/// GPT-2's initialisation (as nanoGPT applies it), for models trained from scratch with tied
/// embeddings, where the book's N(0, 1) embedding would make the first logits huge: every
/// weight matrix and embedding of `vs` redrawn from N(0, 0.02), the projections that write
/// into the residual stream (`out_proj`, `ff.layers.2`) from N(0, 0.02 / sqrt(2 n_layers)),
/// biases zeroed; norms keep their ones and zeros. Draws from the global generator in the
/// variables' name order.
pub fn gpt2_init(vs: &nn::VarStore, n_layers: i64) {
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    let residual_std = 0.02 / (2.0 * n_layers as f64).sqrt();
    tch::no_grad(|| {
        for (name, tensor) in variables {
            let mut tensor = tensor;
            if name.ends_with(".bias") {
                let _ = tensor.zero_();
            } else if tensor.dim() == 2 && name.ends_with("weight") {
                let std =
                    if name.contains(".out_proj.") || name.contains(".ff.layers.2.") { residual_std } else { 0.02 };
                // Drawn on the CPU, as [`var`] draws.
                let drawn = Tensor::empty(tensor.size(), (tensor.kind(), Device::Cpu)).normal_(0.0, std);
                tensor.copy_(&drawn);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::device::{global_rng_lock, seed_everything};
    use tch::{Device, Kind};

    #[test]
    fn gpt2_init_draws_small_weights_and_zero_biases() {
        let _rng = global_rng_lock();
        seed_everything(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = crate::model::GptConfig { n_layers: 8, ..crate::model::GptConfig::tiny() };
        let _model = crate::model::GptModel::new(&vs.root(), &cfg).unwrap();
        gpt2_init(&vs, cfg.n_layers);
        let variables = vs.variables();
        let std = |name: &str| variables[name].std(true).double_value(&[]);
        assert!((std("tok_emb.weight") - 0.02).abs() < 0.001);
        assert!((std("trf_blocks.0.ff.layers.2.weight") - 0.005).abs() < 0.001, "0.02 / sqrt(16)");
        assert_eq!(variables["trf_blocks.0.ff.layers.0.bias"].abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(variables["final_norm.scale"].mean(Kind::Float).double_value(&[]), 1.0);
    }

    #[test]
    fn the_draws_copied_to_another_device_are_the_cpu_variables_draws() {
        // `var` and `embedding` on a GPU copy `nn::init::init`'s CPU draws; on the CPU they
        // draw into the variable. The two must be the same numbers.
        let _rng = global_rng_lock();
        for init in [Init::Uniform { lo: -0.3, up: 0.3 }, Init::Randn { mean: 0.0, stdev: 1.0 }] {
            let vs = nn::VarStore::new(Device::Cpu);
            seed_everything(11);
            let direct = var(&vs.root(), "w", &[5, 7], init);
            seed_everything(11);
            assert!(direct.equal(&nn::init::init(init, &[5, 7], Device::Cpu)));
        }
        let vs = nn::VarStore::new(Device::Cpu);
        seed_everything(11);
        let table = embedding(vs.root() / "emb", 6, 4);
        seed_everything(11);
        assert!(table.ws.equal(&nn::init::init(Init::Randn { mean: 0.0, stdev: 1.0 }, &[6, 4], Device::Cpu)));
    }

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
