//! Hugging Face tokenizers (`tokenizer.json`: Llama 3's, Qwen3's and Gemma 3's byte-pair
//! encodings with their special tokens) behind our [`Tokenizer`] trait, through the
//! `tokenizers` crate, the library Python's `transformers` uses. The folder's
//! `tokenizer_config.json` gives the BOS and EOS tokens and the chat template
//! ([`super::chat`]); `generation_config.json` the ids generation stops at.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use super::chat::ChatTemplate;
use super::{TokenId, Tokenizer, TokenizerSpec};

/// A `tokenizer.json` and what its folder says about it.
pub struct HfTokenizer {
    inner: Arc<tokenizers::Tokenizer>,
    dir: PathBuf,
    bos_token: Option<String>,
    eos_token: Option<String>,
    /// The ids that end a reply (`generation_config.json`'s `eos_token_id`, else the EOS
    /// token's), first the main one.
    stop_ids: Vec<TokenId>,
}

impl HfTokenizer {
    /// The tokenizer of a model folder holding `tokenizer.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let inner = parsed(&dir.join("tokenizer.json"))?;
        let config = read_json(&dir.join("tokenizer_config.json"))?;
        let token = |name: &str| config.as_ref().and_then(|c| token_text(c.get(name)?));
        let (bos_token, eos_token) = (token("bos_token"), token("eos_token"));
        let generation = read_json(&dir.join("generation_config.json"))?;
        let mut stop_ids: Vec<TokenId> = match generation.as_ref().and_then(|g| g.get("eos_token_id")) {
            Some(Value::Array(ids)) => ids.iter().filter_map(Value::as_u64).map(|id| id as TokenId).collect(),
            Some(id) => id.as_u64().map(|id| id as TokenId).into_iter().collect(),
            None => Vec::new(),
        };
        if let Some(id) = eos_token.as_deref().and_then(|token| inner.token_to_id(token)) {
            if !stop_ids.contains(&id) {
                stop_ids.push(id);
            }
        }
        Ok(Self { inner, dir: dir.to_path_buf(), bos_token, eos_token, stop_ids })
    }

    /// `text`'s ids, with the special tokens the tokenizer's post-processor adds (Llama's and
    /// Gemma's BOS) when `add_special_tokens`; special tokens written in the text are
    /// recognised either way.
    pub fn encode_with(&self, text: &str, add_special_tokens: bool) -> Result<Vec<TokenId>> {
        let encoding = self.inner.encode(text, add_special_tokens).map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens left out when `skip_special_tokens`.
    pub fn decode_with(&self, ids: &[TokenId], skip_special_tokens: bool) -> Result<String> {
        let size = self.vocab_size();
        if let Some(id) = ids.iter().find(|&&id| id as usize >= size) {
            anyhow::bail!("token id {id} is outside the vocabulary (0..{size})");
        }
        self.inner.decode(ids, skip_special_tokens).map_err(|e| anyhow::anyhow!("decoding: {e}"))
    }
}

impl Tokenizer for HfTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<TokenId>> {
        self.encode_with(text, true)
    }

    fn encode_fragment(&self, text: &str) -> Result<Vec<TokenId>> {
        self.encode_with(text, false)
    }

    fn decode_lossy(&self, ids: &[TokenId]) -> Result<String> {
        self.decode_with(ids, true)
    }

    fn decode(&self, ids: &[TokenId]) -> Result<String> {
        self.decode_with(ids, false)
    }

    fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn end_of_text(&self) -> Option<TokenId> {
        self.stop_ids.first().copied()
    }

    fn stop_ids(&self) -> Vec<TokenId> {
        self.stop_ids.clone()
    }

    fn spec(&self) -> TokenizerSpec {
        TokenizerSpec::HuggingFace { dir: self.dir.clone() }
    }

    /// The folder's chat template, with its BOS and EOS tokens, if it has one.
    fn chat_template(&self) -> Result<Option<ChatTemplate>> {
        ChatTemplate::open(&self.dir, self.bos_token.clone(), self.eos_token.clone())
    }
}

/// The `tokenizer.json` at `path`, parsed once per process: a model's tokenizer is rebuilt
/// from its config for every response, and Llama 3's file is 9 MB of JSON (GPT-2's
/// tokenizer is one shared instance likewise).
fn parsed(path: &Path) -> Result<Arc<tokenizers::Tokenizer>> {
    static PARSED: LazyLock<Mutex<HashMap<PathBuf, Arc<tokenizers::Tokenizer>>>> = LazyLock::new(Default::default);
    ensure!(path.is_file(), "{} has no tokenizer.json", path.parent().unwrap_or(path).display());
    let mut parsed = PARSED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(tokenizer) = parsed.get(path) {
        return Ok(tokenizer.clone());
    }
    let tokenizer = tokenizers::Tokenizer::from_file(path)
        .map_err(|e| anyhow::anyhow!("{} is not a tokenizer.json tokenizers can read: {e}", path.display()))?;
    let tokenizer = Arc::new(tokenizer);
    parsed.insert(path.to_path_buf(), tokenizer.clone());
    Ok(tokenizer)
}

/// A JSON file, or `None` when it does not exist.
pub(crate) fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).map(Some).with_context(|| format!("{} is not JSON", path.display()))
}

/// A token as `tokenizer_config.json` writes it: a string, or an object with `content`.
fn token_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Object(token) => token.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}
