//! Section E.4's parameter counts, computed from the model: the GPT-2 124M classifier (QKV
//! biases, a 2-class head) before freezing, after freezing, and its LoRA adapters.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::model::classifier::replace_head;
use shared::model::lora::{apply_lora, LoraConfig};
use shared::model::{GptConfig, GptModel};
use tch::{nn, Device};

/// The appendix's adapters: rank 16, alpha 16.
pub const BOOK_LORA: LoraConfig = LoraConfig { rank: 16, alpha: 16.0 };

#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub model: String,
    pub lora: LoraConfig,
    pub trainable_before: i64,
    pub trainable_after_freezing: i64,
    pub lora_parameters: i64,
    /// The adapters' share of the model's parameters.
    pub lora_share: f64,
}

fn trainable(vs: &nn::VarStore) -> i64 {
    vs.variables().values().filter(|t| t.requires_grad()).map(|t| t.numel() as i64).sum()
}

/// Builds the classifier of `config` (weights do not matter for counting), then freezes it
/// and adds the adapters, counting at each step.
pub fn run(config: &GptConfig, name: &str, lora: LoraConfig) -> Result<Counts> {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = GptModel::new(&vs.root(), config)?;
    replace_head(&vs, &mut model, 2);
    let trainable_before = trainable(&vs);
    for (_, tensor) in vs.variables() {
        let _ = tensor.set_requires_grad(false);
    }
    let trainable_after_freezing = trainable(&vs);
    let lora_parameters = apply_lora(&vs, &mut model, lora)?;
    assert_eq!(trainable(&vs), lora_parameters, "only the adapters train");
    Ok(Counts {
        model: name.to_string(),
        lora,
        trainable_before,
        trainable_after_freezing,
        lora_parameters,
        lora_share: lora_parameters as f64 / trainable_before as f64,
    })
}

/// GPT-2 124M as chapter 6 loads it: context 1,024, QKV biases.
pub fn book_classifier_config() -> GptConfig {
    GptConfig { qkv_bias: true, drop_rate: 0.0, ..GptConfig::gpt2_small() }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} classifier, LoRA rank {} alpha {}:", self.model, self.lora.rank, self.lora.alpha)?;
        writeln!(f, "Total trainable parameters before: {}", self.trainable_before)?;
        writeln!(f, "Total trainable parameters after: {}", self.trainable_after_freezing)?;
        write!(
            f,
            "Total trainable LoRA parameters: {} ({:.2}% of the model)",
            self.lora_parameters,
            100.0 * self.lora_share
        )
    }
}
