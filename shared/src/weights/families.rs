//! Today's open-weight models in the Hugging Face layout, loaded into the one `GptModel`:
//! Llama 3 (`model_type: llama`), Qwen3 (`qwen3`) and Gemma 3 (`gemma3_text`), the models the
//! book's companion chapters build from its GPT (rasbt/LLMs-from-scratch `ch05/07_gpt_to_llama`,
//! `ch05/11_qwen3`, `ch05/12_gemma3`).
//!
//! `config.json` is read as transformers 4.x writes it (`rope_theta`, `rope_scaling`,
//! `rope_local_base_freq`, `sliding_window_pattern`) and as 5.x writes it (`rope_parameters`,
//! `layer_types`). The weights are one `model.safetensors` or the shards that
//! `model.safetensors.index.json` lists, read one tensor at a time into the model's variables
//! (converted to their dtype: bfloat16 files become float32 on the CPU). Names map as follows:
//!
//! | Hugging Face | ours |
//! |---|---|
//! | `model.embed_tokens` | `tok_emb` |
//! | `model.layers.N.self_attn.{q,k,v,o}_proj` | `trf_blocks.N.att.{W_query,W_key,W_value,out_proj}` |
//! | `model.layers.N.self_attn.{q,k}_norm` | `trf_blocks.N.att.{q,k}_norm` (Qwen3, Gemma 3) |
//! | `model.layers.N.mlp.{gate,up,down}_proj` | `trf_blocks.N.ff.{fc1,fc2,fc3}` |
//! | `model.layers.N.input_layernorm` | `trf_blocks.N.norm1` |
//! | `model.layers.N.post_attention_layernorm` | `norm2` (Llama, Qwen3: the norm before the feed-forward); `post_attention_norm` (Gemma) |
//! | `model.layers.N.{pre,post}_feedforward_layernorm` | `norm2`, `post_ff_norm` (Gemma) |
//! | `model.norm` | `final_norm` |
//! | `lm_head` | `out_head` (absent when tied to the embedding) |

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use serde_json::Value;
use tch::nn::VarStore;

use super::{SafeTensorsFile, VarTargets};
use crate::model::positions::{PosEncoding, RopeScaling};
use crate::model::{GptConfig, LocalAttention};
use crate::nn::{Activation, FeedForwardKind, NormKind};
use crate::tokenizer::TokenizerSpec;

/// The `model_type`s this module reads.
pub const FAMILY_MODEL_TYPES: [&str; 3] = ["llama", "qwen3", "gemma3_text"];

/// The longest context a loaded model gets: the KV cache is allocated for the whole context,
/// and today's models declare 32k-128k positions. A longer prompt is refused with the limit.
pub const MAX_LOADED_CONTEXT: i64 = 8192;

/// Which family a checkpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Llama,
    Qwen3,
    Gemma3,
}

impl Family {
    pub fn of_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "llama" => Some(Self::Llama),
            "qwen3" => Some(Self::Qwen3),
            "gemma3_text" => Some(Self::Gemma3),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "Llama",
            Self::Qwen3 => "Qwen3",
            Self::Gemma3 => "Gemma 3",
        }
    }
}

/// The fields of a Hugging Face config that the families share.
#[derive(Debug, Deserialize)]
struct HfConfig {
    vocab_size: i64,
    hidden_size: i64,
    intermediate_size: i64,
    num_hidden_layers: i64,
    num_attention_heads: i64,
    num_key_value_heads: Option<i64>,
    head_dim: Option<i64>,
    max_position_embeddings: i64,
    rms_norm_eps: Option<f64>,
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    hidden_act: Option<String>,
    hidden_activation: Option<String>,
    // Gemma 3
    query_pre_attn_scalar: Option<f64>,
    sliding_window: Option<i64>,
    layer_types: Option<Vec<String>>,
    sliding_window_pattern: Option<i64>,
    final_logit_softcapping: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    // Qwen3
    #[serde(default)]
    use_sliding_window: bool,
}

/// A checkpoint of one of the families, ready to load.
#[derive(Debug, Clone)]
pub struct FamilyWeights {
    pub family: Family,
    pub dir: PathBuf,
    /// `model.safetensors`, or every shard of the index.
    pub weight_files: Vec<PathBuf>,
    /// The model these weights fit.
    pub config: GptConfig,
}

impl FamilyWeights {
    /// A folder with `config.json` (already read: `json`) and `model.safetensors` (or
    /// `model.safetensors.index.json` and its shards).
    pub fn open(dir: &Path, json: &Value) -> Result<Self> {
        let (family, mut config) =
            family_config(json).with_context(|| format!("in {}", dir.join("config.json").display()))?;
        if dir.join("tokenizer.json").is_file() {
            config.tokenizer = TokenizerSpec::HuggingFace { dir: dir.to_path_buf() };
        }
        Ok(Self { family, dir: dir.to_path_buf(), weight_files: weight_files(dir)?, config })
    }

    /// Copies the weights into `vs`, which holds a `GptModel` built from
    /// [`FamilyWeights::config`]; anything missing, mismatched or unknown is one error.
    pub fn load_into(&self, vs: &VarStore) -> Result<()> {
        let mut targets = VarTargets::new(vs);
        let tied = self.config.tie_embeddings;
        for path in &self.weight_files {
            let mut file = SafeTensorsFile::open(path)?;
            let names: Vec<String> = file.tensors.keys().cloned().collect();
            for name in names {
                match target_name(self.family, &name) {
                    Some(target) if !(tied && target == "out_head.weight") => {
                        let tensor = file.read(&name)?;
                        targets.fill(&target, &tensor, &name)?;
                    }
                    // A tied head saved anyway is the embedding again.
                    Some(_) => {}
                    None => targets.unexpected(&name),
                }
            }
        }
        targets.finish(&self.dir)
    }
}

impl FamilyWeights {
    /// The shard file names `model.safetensors.index.json` lists, each once, in order.
    pub fn shards(index_path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(index_path).with_context(|| format!("reading {}", index_path.display()))?;
        let index: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", index_path.display()))?;
        let map = index
            .get("weight_map")
            .and_then(Value::as_object)
            .with_context(|| format!("{} has no weight_map", index_path.display()))?;
        let mut shards: Vec<String> = map.values().filter_map(Value::as_str).map(str::to_string).collect();
        shards.sort();
        shards.dedup();
        for shard in &shards {
            ensure!(
                !shard.contains('/') && !shard.contains('\\') && !shard.starts_with('.'),
                "{} names the shard {shard:?}, which is not a file name",
                index_path.display()
            );
        }
        Ok(shards)
    }
}

/// The weight files of a checkpoint folder.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index_path = dir.join("model.safetensors.index.json");
    ensure!(index_path.is_file(), "{} has neither model.safetensors nor model.safetensors.index.json", dir.display());
    FamilyWeights::shards(&index_path)?
        .into_iter()
        .map(|shard| {
            let path = dir.join(&shard);
            ensure!(path.is_file(), "{} lists {shard}, which is missing", index_path.display());
            Ok(path)
        })
        .collect()
}

/// Our parameter name for a Hugging Face tensor name, if the family has it.
fn target_name(family: Family, name: &str) -> Option<String> {
    match name {
        "model.embed_tokens.weight" => return Some("tok_emb.weight".into()),
        "model.norm.weight" => return Some("final_norm.scale".into()),
        "lm_head.weight" => return Some("out_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let ours = match (family, rest) {
        (_, "self_attn.q_proj.weight") => "att.W_query.weight",
        (_, "self_attn.k_proj.weight") => "att.W_key.weight",
        (_, "self_attn.v_proj.weight") => "att.W_value.weight",
        (_, "self_attn.o_proj.weight") => "att.out_proj.weight",
        (Family::Qwen3 | Family::Gemma3, "self_attn.q_norm.weight") => "att.q_norm.scale",
        (Family::Qwen3 | Family::Gemma3, "self_attn.k_norm.weight") => "att.k_norm.scale",
        (_, "mlp.gate_proj.weight") => "ff.fc1.weight",
        (_, "mlp.up_proj.weight") => "ff.fc2.weight",
        (_, "mlp.down_proj.weight") => "ff.fc3.weight",
        (_, "input_layernorm.weight") => "norm1.scale",
        (Family::Llama | Family::Qwen3, "post_attention_layernorm.weight") => "norm2.scale",
        (Family::Gemma3, "post_attention_layernorm.weight") => "post_attention_norm.scale",
        (Family::Gemma3, "pre_feedforward_layernorm.weight") => "norm2.scale",
        (Family::Gemma3, "post_feedforward_layernorm.weight") => "post_ff_norm.scale",
        _ => return None,
    };
    Some(format!("trf_blocks.{layer}.{ours}"))
}

/// The family and our config of a Hugging Face `config.json`.
pub fn family_config(json: &Value) -> Result<(Family, GptConfig)> {
    let model_type = json.get("model_type").and_then(Value::as_str).unwrap_or("(none)");
    let family = Family::of_model_type(model_type).with_context(|| {
        format!("model_type {model_type} is not one this project reads ({}, or gpt2)", FAMILY_MODEL_TYPES.join(", "))
    })?;
    let hf: HfConfig = serde_json::from_value(json.clone()).context("a field has the wrong type or is missing")?;
    let unsupported = |what: &str| format!("{} with {what} is not supported", family.name());
    ensure!(!hf.attention_bias && !hf.mlp_bias, unsupported("biases (attention_bias or mlp_bias)"));
    ensure!(!hf.use_sliding_window, unsupported("use_sliding_window"));
    ensure!(hf.attn_logit_softcapping.is_none(), unsupported("attn_logit_softcapping"));
    let activation = hf.hidden_activation.or(hf.hidden_act).unwrap_or_else(|| "silu".into());
    let activation = match activation.as_str() {
        "silu" | "swish" => Activation::Silu,
        "gelu_pytorch_tanh" | "gelu_new" => Activation::GeluTanh,
        "gelu" => Activation::Gelu,
        other => bail!(unsupported(&format!("the activation {other}"))),
    };
    let (rope_theta, rope_scaling, local_theta) = rope(json, family)?;
    let gemma = family == Family::Gemma3;
    let head_dim = hf.head_dim.filter(|&d| d * hf.num_attention_heads != hf.hidden_size);
    let local_attention = if gemma {
        let window = hf.sliding_window.context("Gemma 3 needs sliding_window")?;
        let layers = match (&hf.layer_types, hf.sliding_window_pattern) {
            (Some(types), _) => {
                ensure!(types.len() as i64 == hf.num_hidden_layers, "layer_types must name every layer");
                types
                    .iter()
                    .enumerate()
                    .filter_map(|(i, kind)| match kind.as_str() {
                        "sliding_attention" => Some(Ok(i as i64)),
                        "full_attention" => None,
                        other => Some(Err(anyhow::anyhow!("unknown layer type {other}"))),
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            (None, pattern) => {
                let pattern = pattern.unwrap_or(6);
                ensure!(pattern > 0, "sliding_window_pattern must be positive");
                (0..hf.num_hidden_layers).filter(|i| (i + 1) % pattern != 0).collect()
            }
        };
        Some(LocalAttention { window, rope_theta: local_theta.unwrap_or(10_000.0), layers })
    } else {
        None
    };
    let config = GptConfig {
        vocab_size: hf.vocab_size,
        context_length: hf.max_position_embeddings.min(MAX_LOADED_CONTEXT),
        emb_dim: hf.hidden_size,
        n_heads: hf.num_attention_heads,
        n_layers: hf.num_hidden_layers,
        drop_rate: 0.0,
        qkv_bias: false,
        pos_encoding: PosEncoding::Rope,
        rope_theta,
        n_kv_heads: hf.num_key_value_heads.filter(|&kv| kv != hf.num_attention_heads),
        tie_embeddings: hf.tie_word_embeddings.unwrap_or(gemma),
        bias: false,
        activation,
        norm: if gemma { NormKind::RmsNormPlusOne } else { NormKind::RmsNorm },
        norm_eps: Some(hf.rms_norm_eps.unwrap_or(1e-6)),
        feed_forward: FeedForwardKind::Gated,
        hidden_dim: Some(hf.intermediate_size),
        head_dim,
        qk_norm: family != Family::Llama,
        rope_scaling,
        local_attention,
        scale_embeddings: gemma,
        query_pre_attn_scalar: if gemma { hf.query_pre_attn_scalar.or(Some(256.0)) } else { None },
        sandwich_norms: gemma,
        final_logit_softcap: hf.final_logit_softcapping,
        ..GptConfig::gpt2_small()
    };
    config.validate()?;
    Ok((family, config))
}

/// RoPE's base and scaling of the (global) layers, and Gemma's local base: from 5.x's
/// `rope_parameters` (per layer type for Gemma) or 4.x's `rope_theta`, `rope_scaling` and
/// `rope_local_base_freq`.
fn rope(json: &Value, family: Family) -> Result<(f64, Option<RopeScaling>, Option<f64>)> {
    let number = |value: Option<&Value>| value.and_then(Value::as_f64);
    let default_theta = match family {
        Family::Llama => 10_000.0,
        Family::Qwen3 => 10_000.0,
        Family::Gemma3 => 1_000_000.0,
    };
    if let Some(parameters) = json.get("rope_parameters").filter(|p| !p.is_null()) {
        let (global, local) = match (family, parameters.get("full_attention")) {
            (Family::Gemma3, Some(global)) => (global, parameters.get("sliding_attention")),
            _ => (parameters, None),
        };
        let theta = number(global.get("rope_theta")).unwrap_or(default_theta);
        let local_theta = local.and_then(|local| number(local.get("rope_theta")));
        return Ok((theta, scaling(global)?, local_theta));
    }
    let theta = number(json.get("rope_theta")).unwrap_or(default_theta);
    let scaling = match json.get("rope_scaling").filter(|s| !s.is_null()) {
        Some(spec) => scaling(spec)?,
        None => None,
    };
    Ok((theta, scaling, number(json.get("rope_local_base_freq"))))
}

/// A Hugging Face RoPE scaling entry (`rope_type` or the older `type`).
fn scaling(spec: &Value) -> Result<Option<RopeScaling>> {
    let kind = spec.get("rope_type").or_else(|| spec.get("type")).and_then(Value::as_str).unwrap_or("default");
    let number = |name: &str| -> Result<f64> {
        spec.get(name).and_then(Value::as_f64).with_context(|| format!("{kind} RoPE scaling needs {name}"))
    };
    Ok(match kind {
        "default" => None,
        "linear" => Some(RopeScaling::Linear { factor: number("factor")? }),
        "llama3" => Some(RopeScaling::Llama3 {
            factor: number("factor")?,
            low_freq_factor: number("low_freq_factor")?,
            high_freq_factor: number("high_freq_factor")?,
            original_context_length: number("original_max_position_embeddings")? as i64,
        }),
        other => bail!("RoPE scaling {other} is not supported (default, linear and llama3 are)"),
    })
}
