//! Loading weights into a [`GptModel`](crate::model::GptModel): the book's own `state_dict()`
//! files (section 5.4: ours in safetensors, or a `model.pth` written by the book's
//! `torch.save`), OpenAI's GPT-2 in the Hugging Face layout (section 5.5), and Llama 3, Qwen3
//! and Gemma 3 ([`families`]), from a folder or the Hugging Face hub ([`Pretrained`]). Every load checks each tensor's name and shape and reports
//! everything missing, mismatched or unexpected in one error.

pub mod families;
mod gpt2;
mod hub;
mod pretrained;
mod safetensors;
mod torch_pickle;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use tch::{nn::VarStore, Tensor};

pub use self::gpt2::{Gpt2Weights, GPT2_HUB_IDS};
pub use self::hub::{hub_cache_dir, HubFile};
pub use self::pretrained::Pretrained;
pub use self::safetensors::SafeTensorsFile;
use crate::model::lora::{LoraAdapters, LoraConfig};
use crate::model::GptConfig;

/// The variables of a model being filled from a file, with a record of what went wrong.
pub(crate) struct VarTargets {
    vars: HashMap<String, Tensor>,
    filled: Vec<String>,
    mismatched: Vec<String>,
    unexpected: Vec<String>,
}

impl VarTargets {
    pub(crate) fn new(vs: &VarStore) -> Self {
        Self { vars: vs.variables(), filled: Vec::new(), mismatched: Vec::new(), unexpected: Vec::new() }
    }

    /// Copies `src` into the variable `name` (converting dtype and device).
    pub(crate) fn fill(&mut self, name: &str, src: &Tensor, source_name: &str) -> Result<()> {
        if is_mask_buffer(name) {
            return Ok(());
        }
        let Some(var) = self.vars.get_mut(name) else {
            self.unexpected.push(source_name.to_string());
            return Ok(());
        };
        if var.size() != src.size() {
            let label = if name == source_name { name.to_string() } else { format!("{name} (from {source_name})") };
            self.mismatched.push(format!("{label}: {:?} in the file, {:?} in the model", src.size(), var.size()));
            self.filled.push(name.to_string()); // present, so not also reported as missing
            return Ok(());
        }
        tch::no_grad(|| var.f_copy_(src))?;
        self.filled.push(name.to_string());
        Ok(())
    }

    pub(crate) fn unexpected(&mut self, source_name: &str) {
        self.unexpected.push(source_name.to_string());
    }

    /// Succeeds when every variable was filled and nothing was mismatched or unexpected.
    pub(crate) fn finish(self, source: &Path) -> Result<()> {
        self.check(source, true)
    }

    fn check(mut self, source: &Path, all_needed: bool) -> Result<()> {
        for name in &self.filled {
            self.vars.remove(name);
        }
        let mut missing: Vec<&String> = self.vars.keys().collect();
        missing.sort();
        let mut problems = Vec::new();
        if all_needed && !missing.is_empty() {
            problems.push(format!("missing: {}", list(&missing)));
        }
        if !self.mismatched.is_empty() {
            problems.push(format!("shape mismatch: {}", list(&self.mismatched)));
        }
        if !self.unexpected.is_empty() {
            problems.push(format!("unexpected: {}", list(&self.unexpected)));
        }
        if !problems.is_empty() {
            bail!("{} does not fit the model. {}", source.display(), problems.join("; "));
        }
        Ok(())
    }
}

/// The book's `MultiHeadAttention` registers its causal mask as a buffer, so the mask is in
/// every `state_dict()`: `trf_blocks.N.att.mask`. It is not a parameter; loading skips it.
fn is_mask_buffer(name: &str) -> bool {
    name.starts_with("trf_blocks.") && name.ends_with(".att.mask")
}

/// The mask buffers of a model with `cfg`, as the book's `state_dict()` holds them (float
/// upper-triangular ones above the diagonal), so our checkpoints load into the book's
/// PyTorch model with a strict `load_state_dict`.
pub fn mask_buffers(cfg: &GptConfig) -> Vec<(String, Tensor)> {
    let ctx = cfg.context_length;
    let mask = Tensor::ones([ctx, ctx], (tch::Kind::Float, tch::Device::Cpu)).triu(1);
    (0..cfg.n_layers).map(|i| (format!("trf_blocks.{i}.att.mask"), mask.shallow_clone())).collect()
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    const SHOWN: usize = 8;
    let mut shown: Vec<String> = items.iter().take(SHOWN).map(|i| i.to_string()).collect();
    if items.len() > SHOWN {
        shown.push(format!("and {} more", items.len() - SHOWN));
    }
    shown.join(", ")
}

/// Whether `path` is a PyTorch pickle (`torch.save`) rather than safetensors.
fn is_pickle(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("pth" | "pt" | "bin"))
}

/// Loads a state dict with the book's parameter names into `vs`: a `.safetensors` file
/// (streamed) or a `.pth`/`.pt`/`.bin` file written by `torch.save(model.state_dict(), ...)`.
pub fn load_state_dict(vs: &VarStore, path: &Path) -> Result<()> {
    if !path.is_file() {
        bail!("checkpoint {} does not exist", path.display());
    }
    let mut targets = VarTargets::new(vs);
    if is_pickle(path) {
        for (name, tensor) in read_pickle(path)? {
            targets.fill(&name, &tensor, &name)?;
        }
    } else {
        let mut file = SafeTensorsFile::open(path)?;
        let names: Vec<String> = file.tensors.keys().cloned().collect();
        for name in names {
            let tensor = file.read(&name)?;
            targets.fill(&name, &tensor, &name)?;
        }
    }
    targets.finish(path)
}

/// Loads the tensors of a safetensors file into the variables of `vs` with their names,
/// leaving the others as they are (e.g. LoRA adapters onto a base model). Every tensor in the
/// file must name a variable of the same shape.
pub fn load_partial_state(vs: &VarStore, path: &Path) -> Result<()> {
    let mut file = SafeTensorsFile::open(path)?;
    let mut targets = VarTargets::new(vs);
    let names: Vec<String> = file.tensors.keys().cloned().collect();
    for name in names {
        let tensor = file.read(&name)?;
        targets.fill(&name, &tensor, &name)?;
    }
    targets.check(path, false)
}

/// The adapters a LoRA run saves alone ([`crate::model::lora::lora_state`]: `<layer>.lora.A`
/// and `<layer>.lora.B`), trained with `config`, as float tensors on `device`. Every tensor
/// must be one of a pair of the run's rank; [`LoraAdapters::check`] matches them to a model.
pub fn read_lora_adapters(path: &Path, config: LoraConfig, device: tch::Device) -> Result<LoraAdapters> {
    config.validate()?;
    ensure!(path.is_file(), "the adapter file {} does not exist", path.display());
    let mut file = SafeTensorsFile::open(path)?;
    let names: Vec<String> = file.tensors.keys().cloned().collect();
    let mut layers = BTreeMap::new();
    for name in names.iter().filter(|name| name.ends_with(".lora.A")) {
        let layer = name.trim_end_matches(".lora.A");
        let partner = format!("{layer}.lora.B");
        ensure!(file.tensors.contains_key(&partner), "{} has {name} but no {partner}", path.display());
        let a = file.read(name)?.to_kind(tch::Kind::Float).to_device(device);
        let b = file.read(&partner)?.to_kind(tch::Kind::Float).to_device(device);
        ensure!(
            a.dim() == 2 && b.dim() == 2 && a.size()[1] == config.rank && b.size()[0] == config.rank,
            "{} holds {layer}'s adapter with A {:?} and B {:?}, not of rank {}",
            path.display(),
            a.size(),
            b.size(),
            config.rank
        );
        layers.insert(layer.to_string(), (a, b));
    }
    let strays: Vec<&String> = names
        .iter()
        .filter(|name| !layers.contains_key(name.trim_end_matches(".lora.A").trim_end_matches(".lora.B")))
        .collect();
    ensure!(strays.is_empty(), "{} holds tensors that are not LoRA adapter pairs: {strays:?}", path.display());
    ensure!(!layers.is_empty(), "{} holds no LoRA adapters (<layer>.lora.A and .lora.B)", path.display());
    Ok(LoraAdapters { config, layers })
}

fn read_pickle(path: &Path) -> Result<Vec<(String, Tensor)>> {
    torch_pickle::read_torch_state_dict(path)
        .with_context(|| format!("{} is not a readable PyTorch state dict (torch.save format)", path.display()))
}

/// The shapes in a book-named state dict (safetensors or PyTorch pickle).
pub fn state_dict_shapes(path: &Path) -> Result<BTreeMap<String, Vec<i64>>> {
    if !path.is_file() {
        bail!("checkpoint {} does not exist", path.display());
    }
    if is_pickle(path) {
        Ok(read_pickle(path)?.into_iter().map(|(name, t)| (name, t.size())).collect())
    } else {
        let file = SafeTensorsFile::open(path)?;
        Ok(file.tensors.into_iter().map(|(name, info)| (name, info.shape)).collect())
    }
}

/// The model config of a book-named state dict that came without one (e.g. a `model.pth`):
/// sizes are read from the shapes; the number of heads, which no shape shows, comes from
/// `n_heads` or else from the GPT-2 preset of the same width; dropout is the book's 0.1.
pub fn infer_config(shapes: &BTreeMap<String, Vec<i64>>, n_heads: Option<i64>) -> Result<GptConfig> {
    let matrix = |name: &str| -> Result<&Vec<i64>> {
        let shape = shapes.get(name).with_context(|| format!("the state dict has no {name}"))?;
        ensure!(shape.len() == 2, "{name} has the shape {shape:?}; an embedding is a matrix");
        Ok(shape)
    };
    let tok = matrix("tok_emb.weight")?;
    let pos = matrix("pos_emb.weight")?;
    let (vocab_size, emb_dim) = (tok[0], tok[1]);
    let n_layers = (0..).take_while(|i| shapes.contains_key(&format!("trf_blocks.{i}.norm1.scale"))).count() as i64;
    let n_heads = match n_heads {
        Some(n) => n,
        None => ["gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl"]
            .iter()
            .filter_map(|name| GptConfig::preset(name).ok())
            .find(|preset| preset.emb_dim == emb_dim)
            .map(|preset| preset.n_heads)
            .with_context(|| format!("no GPT-2 preset has width {emb_dim}: give the number of heads"))?,
    };
    let config = GptConfig {
        vocab_size,
        context_length: pos[0],
        emb_dim,
        n_heads,
        n_layers,
        qkv_bias: shapes.contains_key("trf_blocks.0.att.W_query.bias"),
        ..GptConfig::gpt2_small()
    };
    config.validate()?;
    Ok(config)
}
