//! `GptConfig` (section 4.1's `GPT_CONFIG_124M`) with the GPT-2 presets of exercise 4.2.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::attention::{AttentionMask, AttentionOptions};
use crate::model::positions::{PosEncoding, RopeScaling};
use crate::nn::{Activation, FeedForwardKind, NormKind};
use crate::tokenizer::TokenizerSpec;

/// The model's hyperparameters, with the book's field names.
///
/// `drop_rate` is the book's single dropout rate. Exercise 4.3 splits it: `drop_rate_emb`
/// (after the embeddings), `drop_rate_attn` (on the attention weights) and
/// `drop_rate_shortcut` (before each shortcut addition) override it where set.
///
/// The fields after them are chapter 21's variations of the architecture, then those that
/// make the same model Llama 3, Qwen3 or Gemma 3 (from `norm` on; written only when they
/// differ from GPT-2). Their defaults (which a config file may leave out) are the book's
/// GPT-2, so older config and checkpoint files load as the model they always described.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    pub vocab_size: i64,
    pub context_length: i64,
    pub emb_dim: i64,
    pub n_heads: i64,
    pub n_layers: i64,
    pub drop_rate: f64,
    pub qkv_bias: bool,
    #[serde(default)]
    pub drop_rate_emb: Option<f64>,
    #[serde(default)]
    pub drop_rate_attn: Option<f64>,
    #[serde(default)]
    pub drop_rate_shortcut: Option<f64>,
    /// `learned` (GPT-2), `rope`, `sinusoidal` or `none`.
    #[serde(default)]
    pub pos_encoding: PosEncoding,
    /// RoPE's base (10,000 as in the RoPE paper and GPT-NeoX).
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Key/value heads (grouped-query attention); `None` means `n_heads` (multi-head).
    #[serde(default)]
    pub n_kv_heads: Option<i64>,
    /// `"causal"` (GPT-2), `{"sliding_window": W}` or `{"prefix": P}`.
    #[serde(default)]
    pub attention_mask: AttentionMask,
    /// With a sliding window: the first positions every query may still see (StreamingLLM).
    #[serde(default)]
    pub sink_tokens: i64,
    /// `pre` (GPT-2: normalise before attention and feed-forward) or `post` (GPT-1: after
    /// each shortcut addition).
    #[serde(default)]
    pub norm_placement: NormPlacement,
    /// The output head computes with the token embedding's matrix instead of its own.
    #[serde(default)]
    pub tie_embeddings: bool,
    /// Output heads: the first predicts the next token, head `k` the token `k` places later
    /// (multi-token prediction).
    #[serde(default = "one")]
    pub n_future_heads: i64,
    /// The tokenizer whose ids the model reads (GPT-2's by default).
    #[serde(default)]
    pub tokenizer: TokenizerSpec,
    /// Biases on the attention's output projection, the feed-forward layers and the layer
    /// norms (their shift). GPT-2 has them; nanoGPT's `bias=False` and most recent models do
    /// not. (`qkv_bias` covers the query, key and value projections.)
    #[serde(default = "yes")]
    pub bias: bool,
    /// The feed-forward non-linearity: `gelu_tanh` (GPT-2's approximation, listing 4.3) or
    /// `gelu` (the exact `x * Phi(x)`, PyTorch's `nn.GELU()`).
    #[serde(default)]
    pub activation: Activation,
    /// `layer_norm` (GPT-2), `rms_norm` (Llama, Qwen3) or `rms_norm_plus_one` (Gemma).
    #[serde(default, skip_serializing_if = "is_default")]
    pub norm: NormKind,
    /// The norms' epsilon; `None`: 1e-5, GPT-2's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm_eps: Option<f64>,
    /// `mlp` (GPT-2) or `gated` (SwiGLU with the `silu` activation, GeGLU with `gelu_tanh`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub feed_forward: FeedForwardKind,
    /// The feed-forward module's inner width; `None`: 4 x `emb_dim`, GPT-2's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_dim: Option<i64>,
    /// Features per attention head; `None`: `emb_dim / n_heads`, GPT-2's (Qwen3 and Gemma 3
    /// choose it freely: the query projection then has `n_heads * head_dim` outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<i64>,
    /// RMS-normalise each head's queries and keys before the rotation (Qwen3, Gemma 3).
    #[serde(default, skip_serializing_if = "is_default")]
    pub qk_norm: bool,
    /// RoPE's frequencies stretched for long contexts (Llama 3.1's scheme, or linear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    /// Layers that attend within a sliding window and rotate with their own RoPE base,
    /// interleaved with the others (Gemma 3: five local layers for each global one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_attention: Option<LocalAttention>,
    /// Multiply the token embeddings by `sqrt(emb_dim)` (Gemma).
    #[serde(default, skip_serializing_if = "is_default")]
    pub scale_embeddings: bool,
    /// Attention scores are divided by `sqrt(query_pre_attn_scalar)` instead of
    /// `sqrt(head_dim)` (Gemma).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_pre_attn_scalar: Option<f64>,
    /// A norm after attention and after the feed-forward module too, before each shortcut
    /// addition: four norms per block (Gemma).
    #[serde(default, skip_serializing_if = "is_default")]
    pub sandwich_norms: bool,
    /// The logits pass through `cap * tanh(logits / cap)` (Gemma 2's soft-capping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_logit_softcap: Option<f64>,
}

/// Layers that see only a window of recent positions (`GptConfig::local_attention`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalAttention {
    /// Positions a query sees, its own included.
    pub window: i64,
    /// RoPE's base in these layers (no scaling).
    pub rope_theta: f64,
    /// The layers (from 0) that attend locally.
    pub layers: Vec<i64>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Where each block normalises (`GptConfig::norm_placement`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormPlacement {
    #[default]
    Pre,
    Post,
}

fn default_rope_theta() -> f64 {
    10_000.0
}

fn one() -> i64 {
    1
}

fn yes() -> bool {
    true
}

/// The largest sizes a config may ask for. They are far above any GPT-2 (vocabulary 50,257,
/// context 1,024, width 1,600, 48 layers) and keep every size computation inside `i64`.
pub const MAX_VOCAB_SIZE: i64 = 1 << 24;
pub const MAX_CONTEXT_LENGTH: i64 = 1 << 17;
pub const MAX_EMB_DIM: i64 = 1 << 16;
pub const MAX_LAYERS: i64 = 1 << 10;
/// The most output heads (multi-token prediction).
pub const MAX_FUTURE_HEADS: i64 = 64;
/// The largest model a config may describe, parameters (float32) and attention masks
/// together: 256 GiB. Whether it fits the memory at hand is checked when the model is built.
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
            pos_encoding: PosEncoding::Learned,
            rope_theta: default_rope_theta(),
            n_kv_heads: None,
            attention_mask: AttentionMask::Causal,
            sink_tokens: 0,
            norm_placement: NormPlacement::Pre,
            tie_embeddings: false,
            n_future_heads: 1,
            tokenizer: TokenizerSpec::Gpt2,
            bias: true,
            activation: Activation::GeluTanh,
            norm: NormKind::LayerNorm,
            norm_eps: None,
            feed_forward: FeedForwardKind::Mlp,
            hidden_dim: None,
            head_dim: None,
            qk_norm: false,
            rope_scaling: None,
            local_attention: None,
            scale_embeddings: false,
            query_pre_attn_scalar: None,
            sandwich_norms: false,
            final_logit_softcap: None,
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

    /// Key/value heads per attention layer.
    pub fn kv_heads(&self) -> i64 {
        self.n_kv_heads.unwrap_or(self.n_heads)
    }

    pub fn head_dim(&self) -> i64 {
        self.head_dim.unwrap_or(self.emb_dim / self.n_heads)
    }

    /// The feed-forward module's inner width.
    pub fn hidden_dim(&self) -> i64 {
        self.hidden_dim.unwrap_or(4 * self.emb_dim)
    }

    /// Whether `layer` attends within [`GptConfig::local_attention`]'s window.
    pub fn is_local(&self, layer: i64) -> bool {
        self.local_attention.as_ref().is_some_and(|local| local.layers.contains(&layer))
    }

    /// Bytes of keys and values one token adds to the KV cache (`KvCache::bytes` per slot):
    /// a key and a value of `kv_heads() * head_dim()` numbers in every layer.
    pub fn kv_cache_bytes_per_token(&self, kind: tch::Kind) -> i64 {
        2 * self.n_layers * self.kv_heads() * self.head_dim() * kind.elt_size_in_bytes() as i64
    }

    /// The attention options of block `layer`.
    pub fn attention_options(&self, layer: i64) -> AttentionOptions {
        let rope = (self.pos_encoding == PosEncoding::Rope).then_some((self.rope_theta, self.rope_scaling));
        let (mask, rope) = match &self.local_attention {
            Some(local) if self.is_local(layer) => {
                (AttentionMask::SlidingWindow(local.window), rope.map(|_| (local.rope_theta, None)))
            }
            _ => (self.attention_mask, rope),
        };
        AttentionOptions {
            num_kv_heads: self.kv_heads(),
            head_dim: self.head_dim(),
            mask,
            sink_tokens: self.sink_tokens,
            rope_theta: rope.map(|(theta, _)| theta),
            rope_scaling: rope.and_then(|(_, scaling)| scaling),
            out_bias: self.bias,
            qk_norm: self.qk_norm.then_some((self.norm, self.norm_eps)),
            score_dim: self.query_pre_attn_scalar,
        }
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
            self.head_dim.is_some() || self.emb_dim % self.n_heads == 0,
            "invalid model config: emb_dim ({}) must be divisible by n_heads ({})",
            self.emb_dim,
            self.n_heads
        );
        for (name, value) in [("head_dim", self.head_dim), ("hidden_dim", self.hidden_dim)] {
            if let Some(value) = value {
                ensure!(
                    (1..=MAX_EMB_DIM).contains(&value),
                    "invalid model config: {name} must be 1 to {MAX_EMB_DIM}, got {value}"
                );
            }
        }
        self.validate_family_options()?;
        let kv_heads = self.kv_heads();
        ensure!(
            kv_heads > 0 && self.n_heads % kv_heads == 0,
            "invalid model config: n_heads ({}) must be a multiple of n_kv_heads ({kv_heads})",
            self.n_heads
        );
        if self.pos_encoding == PosEncoding::Rope {
            ensure!(
                self.head_dim() % 2 == 0,
                "invalid model config: rope needs an even head size (head_dim, or emb_dim / n_heads), got {}",
                self.head_dim()
            );
            ensure!(
                self.rope_theta.is_finite() && self.rope_theta > 1.0,
                "invalid model config: rope_theta must be a finite number above 1, got {}",
                self.rope_theta
            );
        }
        match self.attention_mask {
            AttentionMask::Causal => {}
            AttentionMask::SlidingWindow(window) => ensure!(
                (1..=MAX_CONTEXT_LENGTH).contains(&window),
                "invalid model config: the sliding window must be 1 to {MAX_CONTEXT_LENGTH} positions, got {window}"
            ),
            AttentionMask::Prefix(prefix) => ensure!(
                (0..=self.context_length).contains(&prefix),
                "invalid model config: the prefix must be 0 to context_length ({}) positions, got {prefix}",
                self.context_length
            ),
        }
        ensure!(
            (0..=self.context_length).contains(&self.sink_tokens),
            "invalid model config: sink_tokens must be 0 to context_length ({}), got {}",
            self.context_length,
            self.sink_tokens
        );
        ensure!(
            self.sink_tokens == 0 || matches!(self.attention_mask, AttentionMask::SlidingWindow(_)),
            "invalid model config: sink_tokens needs a sliding_window attention_mask"
        );
        ensure!(
            (1..=MAX_FUTURE_HEADS).contains(&self.n_future_heads),
            "invalid model config: n_future_heads must be 1 to {MAX_FUTURE_HEADS}, got {}",
            self.n_future_heads
        );
        self.tokenizer.validate().context("invalid model config")?;
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

    /// The checks of the options from `norm` on.
    fn validate_family_options(&self) -> Result<()> {
        let positive = |name: &str, value: Option<f64>| -> Result<()> {
            if let Some(value) = value {
                ensure!(
                    value.is_finite() && value > 0.0,
                    "invalid model config: {name} must be a positive number, got {value}"
                );
            }
            Ok(())
        };
        positive("norm_eps", self.norm_eps)?;
        positive("query_pre_attn_scalar", self.query_pre_attn_scalar)?;
        positive("final_logit_softcap", self.final_logit_softcap)?;
        let rope = self.pos_encoding == PosEncoding::Rope;
        if let Some(scaling) = &self.rope_scaling {
            ensure!(rope, "invalid model config: rope_scaling needs pos_encoding rope");
            if let Some(problem) = scaling.problem() {
                bail!("invalid model config: rope_scaling: {problem}");
            }
        }
        if let Some(local) = &self.local_attention {
            ensure!(
                (1..=MAX_CONTEXT_LENGTH).contains(&local.window),
                "invalid model config: the local attention window must be 1 to {MAX_CONTEXT_LENGTH} positions, got {}",
                local.window
            );
            ensure!(
                local.layers.iter().all(|layer| (0..self.n_layers).contains(layer)),
                "invalid model config: local_attention.layers must be layer numbers from 0 to {}, got {:?}",
                self.n_layers - 1,
                local.layers
            );
            ensure!(
                self.attention_mask == AttentionMask::Causal && self.sink_tokens == 0,
                "invalid model config: local_attention needs the causal attention_mask for the other layers"
            );
            ensure!(
                !rope || (local.rope_theta.is_finite() && local.rope_theta > 1.0),
                "invalid model config: local_attention.rope_theta must be a finite number above 1, got {}",
                local.rope_theta
            );
        }
        ensure!(
            !self.sandwich_norms || self.norm_placement == NormPlacement::Pre,
            "invalid model config: sandwich_norms needs norm_placement pre"
        );
        Ok(())
    }

    /// Bytes a model built from this config holds: float32 parameters (and the sinusoidal
    /// position table when it has one) plus each block's `context_length`² boolean attention
    /// mask, which a full-context training step keeps for the backward pass. Exact within the
    /// size limits above.
    pub fn memory_bytes(&self) -> i64 {
        let parameters = super::ParameterCounts::from_config(self).total();
        let table = if self.pos_encoding == PosEncoding::Sinusoidal { self.context_length * self.emb_dim } else { 0 };
        4 * (parameters + table) + self.n_layers * self.context_length * self.context_length
    }

    /// The fields (by name) whose values differ between `self` and `other`, every field
    /// compared, so that a field added later cannot be overlooked.
    pub fn differences(&self, other: &Self) -> Vec<String> {
        let fields = |config: &Self| match serde_json::to_value(config).expect("a config serializes") {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("a config is a JSON object"),
        };
        let (ours, theirs) = (fields(self), fields(other));
        // A field left out (at its default) on one side only differs too.
        let mut names: Vec<&String> = ours.keys().chain(theirs.keys()).collect();
        names.sort();
        names.dedup();
        names.into_iter().filter(|name| ours.get(*name) != theirs.get(*name)).cloned().collect()
    }

    /// [`GptConfig::differences`] in the architecture alone: every field but the dropout
    /// rates, which change between training and fine-tuning without changing the weights.
    pub fn architecture_differences(&self, other: &Self) -> Vec<String> {
        let mut differences = self.differences(other);
        differences.retain(|name| !name.starts_with("drop_rate"));
        differences
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
