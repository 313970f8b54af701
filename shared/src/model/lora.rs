//! Appendix E: low-rank adaptation (LoRA). A frozen linear layer `W` gets a trainable update
//! `scaling * (x @ A @ B)` with `A` `(in, rank)` and `B` `(rank, out)`; `B` starts at zero, so a
//! freshly adapted model computes exactly what the base model computes.
//!
//! Every linear layer of the GPT model is a [`crate::nn::Linear`], which computes a plain
//! `nn.Linear` until [`apply_lora`] gives it a [`LoraLayer`] (through the model's
//! [`Adapter`] trait: the model does not depend on this module). The adapter's parameters are named
//! `<layer>.lora.A` and `<layer>.lora.B` beside the base `<layer>.weight`, so base checkpoints
//! still load, and [`lora_state`] saves the adapters alone.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};
use tch::Tensor;

use crate::core::init::linear_weight_bound;
use crate::core::tensors::byte_size;
use crate::model::GptModel;
use crate::nn::{Adapter, Linear};

/// The adapter's size: `rank` and `alpha`, scaling the update by `alpha / rank`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: i64,
    pub alpha: f64,
}

impl LoraConfig {
    pub fn validate(&self) -> Result<()> {
        ensure!((1..=1 << 16).contains(&self.rank), "the LoRA rank must be between 1 and 65536, got {}", self.rank);
        ensure!(self.alpha.is_finite() && self.alpha > 0.0, "the LoRA alpha must be positive, got {}", self.alpha);
        Ok(())
    }

    pub fn scaling(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// Appendix E's `LoRALayer`: `A` initialised like `kaiming_uniform_(A, a=sqrt(5))` (uniform
/// within `1/sqrt(rank)`: PyTorch takes the fan-in of an `(in, rank)` matrix to be `rank`),
/// `B` zeros.
#[derive(Debug)]
pub struct LoraLayer {
    pub a: Tensor,
    pub b: Tensor,
    pub scaling: f64,
}

impl LoraLayer {
    pub fn new(path: &nn::Path, in_dim: i64, out_dim: i64, config: LoraConfig) -> Self {
        let bound = linear_weight_bound(config.rank);
        let a = crate::core::init::var(path, "A", &[in_dim, config.rank], Init::Uniform { lo: -bound, up: bound });
        let b = path.zeros("B", &[config.rank, out_dim]);
        Self { a, b, scaling: config.scaling() }
    }
}

impl Adapter for LoraLayer {
    /// `scaling * (x @ A @ B)`.
    fn forward(&self, x: &Tensor) -> Tensor {
        x.matmul(&self.a).matmul(&self.b) * self.scaling
    }

    /// The update as an `nn.Linear` weight, `[out, in]`.
    fn delta_weight(&self) -> Tensor {
        self.a.matmul(&self.b).tr() * self.scaling
    }
}

/// Appendix E's `LinearWithLoRA`: gives `layer` an adapter whose parameters live under
/// `path` (`<layer>.lora`); returns the adapter's parameter count.
pub fn adapt(layer: &mut Linear, path: &nn::Path, config: LoraConfig) -> i64 {
    let (out_dim, in_dim) = layer.shape();
    let lora = LoraLayer::new(path, in_dim, out_dim, config);
    let count = (lora.a.numel() + lora.b.numel()) as i64;
    layer.lora = Some(Box::new(lora));
    count
}

/// Appendix E's `replace_linear_with_lora` after freezing the model: every parameter of `vs`
/// stops requiring gradients, then every linear layer of `model` (built at the root of `vs`)
/// gets a trainable adapter. Returns the number of LoRA parameters.
pub fn apply_lora(vs: &nn::VarStore, model: &mut GptModel, config: LoraConfig) -> Result<i64> {
    config.validate()?;
    for (_, tensor) in vs.variables() {
        let _ = tensor.set_requires_grad(false);
    }
    let mut count = 0;
    for (name, layer) in model.linear_layers_mut() {
        ensure!(layer.lora.is_none(), "{name} already has a LoRA adapter");
        let path = name.split('.').fold(vs.root(), |path, part| path / part) / "lora";
        count += adapt(layer, &path, config);
    }
    Ok(count)
}

/// The book's lines on trainable parameters around [`apply_lora`]: `before` them, none once
/// frozen, and the adapters' (appendix E, exercise 7.4).
pub fn counts_text(before: i64, adapters: i64, config: LoraConfig) -> String {
    format!(
        "Total trainable parameters before: {before}\nTotal trainable parameters after: 0\n\
         Total trainable LoRA parameters: {adapters} (rank {}, alpha {})",
        config.rank, config.alpha
    )
}

/// Folds every adapter into its base weight (see [`Linear::merge`]) and drops the
/// adapters' variables from `vs`, which then saves as a plain model.
pub fn merge_lora(vs: &nn::VarStore, model: &mut GptModel) {
    for (_, layer) in model.linear_layers_mut() {
        layer.merge();
    }
    crate::core::var_store::remove_variables(vs, |name| name.contains(".lora."));
}

/// The adapters' parameters alone (`*.lora.A`, `*.lora.B`), for a small file.
pub fn lora_state(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut state: Vec<(String, Tensor)> =
        vs.variables().into_iter().filter(|(name, _)| name.contains(".lora.")).collect();
    state.sort_by(|a, b| a.0.cmp(&b.0));
    state
}

/// A LoRA run's adapters alone (`A` and `B` per linear layer, as [`lora_state`] saves them),
/// kept apart from any model: [`LoraAdapters::attach`] gives a model's layers adapters that
/// share these tensors, and [`LoraAdapters::detach`] takes them off again, leaving the base
/// weights untouched. Several adapters can so take turns on one copy of a base model (a
/// server's adapters). [`crate::weights::read_lora_adapters`] reads them from a file.
#[derive(Debug)]
pub struct LoraAdapters {
    pub config: LoraConfig,
    /// `layer name -> (A, B)`, e.g. `trf_blocks.0.att.W_query`.
    pub layers: std::collections::BTreeMap<String, (Tensor, Tensor)>,
}

impl LoraAdapters {
    /// Checks that every adapter matches a linear layer of `model` in name and shape.
    pub fn check(&self, model: &mut GptModel) -> Result<()> {
        let shapes: std::collections::BTreeMap<String, (i64, i64)> =
            model.linear_layers_mut().into_iter().map(|(name, layer)| (name, layer.shape())).collect();
        for (name, (a, b)) in &self.layers {
            let &(out_dim, in_dim) =
                shapes.get(name).ok_or_else(|| anyhow::anyhow!("the model has no linear layer {name} to adapt"))?;
            ensure!(
                a.size() == [in_dim, self.config.rank] && b.size() == [self.config.rank, out_dim],
                "the adapter of {name} is A {:?}, B {:?}; the layer ({in_dim} in, {out_dim} out) with rank {} \
                 needs A [{in_dim}, {rank}] and B [{rank}, {out_dim}]: the adapter was trained on another model",
                a.size(),
                b.size(),
                self.config.rank,
                rank = self.config.rank,
            );
        }
        Ok(())
    }

    /// Gives each layer of `model` that has an adapter here that adapter (sharing this
    /// object's tensors), and every other layer none.
    pub fn attach(&self, model: &mut GptModel) -> Result<()> {
        self.check(model)?;
        for (name, layer) in model.linear_layers_mut() {
            layer.lora = self.layers.get(&name).map(|(a, b)| {
                let adapter = LoraLayer { a: a.shallow_clone(), b: b.shallow_clone(), scaling: self.config.scaling() };
                Box::new(adapter) as Box<dyn Adapter>
            });
        }
        Ok(())
    }

    /// Takes every adapter off `model`: the base model again.
    pub fn detach(model: &mut GptModel) {
        for (_, layer) in model.linear_layers_mut() {
            layer.lora = None;
        }
    }

    /// The adapters' bytes.
    pub fn bytes(&self) -> i64 {
        self.layers.values().map(|(a, b)| byte_size(a) + byte_size(b)).sum()
    }
}
