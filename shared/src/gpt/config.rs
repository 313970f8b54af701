//! `GptConfig` (section 4.1's `GPT_CONFIG_124M`) with the GPT-2 presets of exercise 4.2.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

/// The model's hyperparameters, with the book's field names.
///
/// `drop_rate` is the book's single dropout rate. Exercise 4.3 splits it: `drop_rate_emb`
/// (after the embeddings), `drop_rate_attn` (on the attention weights) and
/// `drop_rate_shortcut` (before each shortcut addition) override it where set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    pub vocab_size: i64,
    pub context_length: i64,
    pub emb_dim: i64,
    pub n_heads: i64,
    pub n_layers: i64,
    pub drop_rate: f64,
    pub qkv_bias: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_rate_emb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_rate_attn: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_rate_shortcut: Option<f64>,
}

/// The largest sizes a config may ask for. They are far above any GPT-2 (vocabulary 50,257,
/// context 1,024, width 1,600, 48 layers) and keep every size computation inside `i64`.
pub const MAX_VOCAB_SIZE: i64 = 1 << 24;
pub const MAX_CONTEXT_LENGTH: i64 = 1 << 17;
pub const MAX_EMB_DIM: i64 = 1 << 16;
pub const MAX_LAYERS: i64 = 1 << 10;
/// The largest model a config may describe, parameters (float32) and causal masks together:
/// 256 GiB. Whether it fits the memory at hand is checked when the model is built.
pub const MAX_MODEL_BYTES: i64 = 1 << 38;

/// The preset names accepted by [`GptConfig::preset`].
pub const PRESETS: [&str; 4] = ["gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl"];

impl GptConfig {
    /// GPT-2 small (124M) as the book configures it: context 1,024, dropout 0.1, no QKV bias.
    pub fn gpt2_small() -> Self {
        Self {
            vocab_size: 50257,
            context_length: 1024,
            emb_dim: 768,
            n_heads: 12,
            n_layers: 12,
            drop_rate: 0.1,
            qkv_bias: false,
            drop_rate_emb: None,
            drop_rate_attn: None,
            drop_rate_shortcut: None,
        }
    }

    /// A preset by name: `gpt2-small` (also `gpt2`, `124M`), `gpt2-medium` (355M),
    /// `gpt2-large` (774M), `gpt2-xl` (1558M).
    pub fn preset(name: &str) -> Result<Self> {
        let (emb_dim, n_layers, n_heads) = match name.to_ascii_lowercase().as_str() {
            "gpt2-small" | "gpt2" | "124m" => (768, 12, 12),
            "gpt2-medium" | "355m" => (1024, 24, 16),
            "gpt2-large" | "774m" => (1280, 36, 20),
            "gpt2-xl" | "1558m" => (1600, 48, 25),
            _ => bail!("unknown model preset '{name}'; the presets are {}", PRESETS.join(", ")),
        };
        Ok(Self { emb_dim, n_layers, n_heads, ..Self::gpt2_small() })
    }

    /// A tiny model for tests: GPT-2's vocabulary, 2 layers of width 32, context 16.
    pub fn tiny() -> Self {
        Self { context_length: 16, emb_dim: 32, n_heads: 4, n_layers: 2, ..Self::gpt2_small() }
    }

    /// Dropout after the token + position embeddings.
    pub fn emb_dropout(&self) -> f64 {
        self.drop_rate_emb.unwrap_or(self.drop_rate)
    }

    /// Dropout on the attention weights.
    pub fn attn_dropout(&self) -> f64 {
        self.drop_rate_attn.unwrap_or(self.drop_rate)
    }

    /// Dropout before each shortcut addition.
    pub fn shortcut_dropout(&self) -> f64 {
        self.drop_rate_shortcut.unwrap_or(self.drop_rate)
    }

    /// Rejects configurations that cannot build a model, with the reason.
    pub fn validate(&self) -> Result<()> {
        for (name, value, max) in [
            ("vocab_size", self.vocab_size, MAX_VOCAB_SIZE),
            ("context_length", self.context_length, MAX_CONTEXT_LENGTH),
            ("emb_dim", self.emb_dim, MAX_EMB_DIM),
            ("n_heads", self.n_heads, MAX_EMB_DIM),
            ("n_layers", self.n_layers, MAX_LAYERS),
        ] {
            ensure!(value > 0, "invalid model config: {name} must be positive, got {value}");
            ensure!(value <= max, "invalid model config: {name} is {value}, more than the largest supported, {max}");
        }
        ensure!(
            self.emb_dim % self.n_heads == 0,
            "invalid model config: emb_dim ({}) must be divisible by n_heads ({})",
            self.emb_dim,
            self.n_heads
        );
        for (name, rate) in [
            ("drop_rate", self.drop_rate),
            ("drop_rate_emb", self.emb_dropout()),
            ("drop_rate_attn", self.attn_dropout()),
            ("drop_rate_shortcut", self.shortcut_dropout()),
        ] {
            ensure!((0.0..1.0).contains(&rate), "invalid model config: {name} must be in [0, 1), got {rate}");
        }
        let bytes = self.memory_bytes();
        ensure!(
            bytes <= MAX_MODEL_BYTES,
            "invalid model config: its parameters and masks take {:.1} GB, more than the largest supported, {:.1} GB",
            bytes as f64 / 1e9,
            MAX_MODEL_BYTES as f64 / 1e9
        );
        Ok(())
    }

    /// Bytes a model built from this config holds: float32 parameters plus each block's
    /// `context_length`² boolean causal mask. Exact within the size limits above.
    pub fn memory_bytes(&self) -> i64 {
        let parameters = super::ParameterCounts::from_config(self).total();
        4 * parameters + self.n_layers * self.context_length * self.context_length
    }

    /// A preset name or the path of a JSON file holding a config.
    pub fn from_name_or_file(spec: &str) -> Result<Self> {
        if Path::new(spec).is_file() {
            Self::load(Path::new(spec))
        } else {
            Self::preset(spec).with_context(|| format!("'{spec}' is neither a preset nor a config file"))
        }
    }

    /// Reads and validates a JSON config.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: Self =
            serde_json::from_str(&text).with_context(|| format!("{} is not a valid model config", path.display()))?;
        config.validate().with_context(|| format!("in {}", path.display()))?;
        Ok(config)
    }

    /// Writes the config as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?).with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_follow_the_book() {
        let xl = GptConfig::preset("gpt2-xl").unwrap();
        assert_eq!((xl.emb_dim, xl.n_layers, xl.n_heads), (1600, 48, 25));
        assert_eq!(GptConfig::preset("gpt2-small").unwrap(), GptConfig::gpt2_small());
        for name in PRESETS {
            GptConfig::preset(name).unwrap().validate().unwrap();
        }
        let err = GptConfig::preset("gpt3").unwrap_err().to_string();
        assert!(err.contains("gpt2-small, gpt2-medium, gpt2-large, gpt2-xl"), "{err}");
    }

    #[test]
    fn invalid_configs_are_rejected_with_the_reason() {
        let bad = |change: fn(&mut GptConfig), needle: &str| {
            let mut config = GptConfig::tiny();
            change(&mut config);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        };
        bad(|c| c.n_heads = 5, "divisible by n_heads");
        bad(|c| c.n_layers = 0, "n_layers must be positive");
        bad(|c| c.vocab_size = -1, "vocab_size must be positive");
        bad(|c| c.drop_rate = 1.0, "drop_rate must be in [0, 1)");
        bad(|c| c.drop_rate_attn = Some(-0.1), "drop_rate_attn");
    }

    #[test]
    fn json_round_trip_and_single_drop_rate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let config = GptConfig { drop_rate_shortcut: Some(0.3), ..GptConfig::tiny() };
        config.save(&path).unwrap();
        assert_eq!(GptConfig::load(&path).unwrap(), config);
        assert_eq!(GptConfig::from_name_or_file(path.to_str().unwrap()).unwrap(), config);

        // The book's form, one drop_rate for everything.
        let book = r#"{"vocab_size": 50257, "context_length": 1024, "emb_dim": 768, "n_heads": 12,
                       "n_layers": 12, "drop_rate": 0.1, "qkv_bias": false}"#;
        std::fs::write(&path, book).unwrap();
        let loaded = GptConfig::load(&path).unwrap();
        assert_eq!((loaded.emb_dropout(), loaded.attn_dropout(), loaded.shortcut_dropout()), (0.1, 0.1, 0.1));

        std::fs::write(&path, r#"{"vocab_size": 10}"#).unwrap();
        assert!(format!("{:#}", GptConfig::load(&path).unwrap_err()).contains("not a valid model config"));
        std::fs::write(&path, book.replace("\"n_heads\": 12", "\"n_heads\": 7")).unwrap();
        assert!(format!("{:#}", GptConfig::load(&path).unwrap_err()).contains("divisible"));
    }
}
