//! The models a server offers (`serve --model NAME=SOURCE`, repeatable): models of their
//! own, each with its worker thread, and LoRA adapters over one of them, served by that
//! model's worker over the same weights. A request names its model with `model` (the first
//! one when it names none); `/v1/models` lists them, each adapter with its base as
//! `parent` (as vLLM lists its LoRA adapters).

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{bail, ensure, Result};
use axum::http::StatusCode;
use serde_json::{json, Value};

use super::api::ApiError;
use super::worker::{AdapterSource, ModelInfo, StatsSnapshot, Variant, Worker};
use crate::finetune::InstructionModel;

/// Loads a model on its worker's thread (so that the model never leaves it).
pub type Loader = Box<dyn FnOnce() -> Result<InstructionModel> + Send>;

/// A model a server offers under `name`.
pub struct ModelEntry {
    pub name: String,
    pub source: EntrySource,
}

/// What a [`ModelEntry`] serves.
pub enum EntrySource {
    /// A model of its own: its weights, its worker.
    Model(Loader),
    /// A LoRA adapter file over the entry named `base` (a model of its own), sharing its
    /// weights and its worker.
    Adapter { base: String, adapter: AdapterSource },
}

impl ModelEntry {
    pub fn model(name: impl Into<String>, load: impl FnOnce() -> Result<InstructionModel> + Send + 'static) -> Self {
        Self { name: name.into(), source: EntrySource::Model(Box::new(load)) }
    }

    pub fn adapter(name: impl Into<String>, base: impl Into<String>, adapter: AdapterSource) -> Self {
        Self { name: name.into(), source: EntrySource::Adapter { base: base.into(), adapter } }
    }
}

/// An adapter's name and file.
type NamedAdapter = (String, AdapterSource);

/// One model as the API offers it.
pub struct ServedModel {
    pub name: String,
    /// The base model's name, for an adapter.
    pub parent: Option<String>,
    pub info: ModelInfo,
    /// The worker that decodes it, and which of the worker's models it is.
    pub worker: Arc<Worker>,
    pub variant: Variant,
}

/// Every model a server offers, the default (a request naming none) first.
pub struct ServedModels {
    pub models: Vec<ServedModel>,
    workers: Vec<Arc<Worker>>,
}

/// How each worker decodes: requests per batch, waiting requests, kept prompt caches.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    pub max_batch: usize,
    pub max_queue: usize,
    pub prompt_cache: usize,
}

impl ServedModels {
    /// Checks the entries (distinct names, each adapter over a model of its own named
    /// here) and starts a worker for each model of its own with its adapters, one after the
    /// other. Returns once all are loaded, with the workers' threads.
    pub fn start(entries: Vec<ModelEntry>, settings: WorkerSettings) -> Result<(Self, Vec<JoinHandle<()>>)> {
        ensure!(!entries.is_empty(), "a server needs at least one model");
        let mut names = HashSet::new();
        for entry in &entries {
            ensure!(!entry.name.trim().is_empty(), "a model's name cannot be empty");
            ensure!(names.insert(entry.name.as_str()), "two models are named '{}'", entry.name);
        }
        let bases: Vec<&str> = entries
            .iter()
            .filter_map(|entry| matches!(entry.source, EntrySource::Model(_)).then_some(entry.name.as_str()))
            .collect();
        for entry in &entries {
            if let EntrySource::Adapter { base, .. } = &entry.source {
                if !bases.contains(&base.as_str()) {
                    bail!(
                        "the adapter '{}' is over '{base}', which is not a model of its own here (those are: {})",
                        entry.name,
                        bases.join(", ")
                    );
                }
            }
        }
        let order: Vec<String> = entries.iter().map(|entry| entry.name.clone()).collect();
        // Each model of its own, in order, with its adapters.
        let mut groups: Vec<(String, Loader, Vec<NamedAdapter>)> = Vec::new();
        let mut adapters = Vec::new();
        for entry in entries {
            match entry.source {
                EntrySource::Model(load) => groups.push((entry.name, load, Vec::new())),
                EntrySource::Adapter { base, adapter } => adapters.push((base, entry.name, adapter)),
            }
        }
        for (base, name, adapter) in adapters {
            let group = groups.iter_mut().find(|group| group.0 == base).expect("checked above");
            group.2.push((name, adapter));
        }
        let (mut models, mut workers, mut threads) = (Vec::new(), Vec::new(), Vec::new());
        for (name, load, adapters) in groups {
            let sources = adapters.iter().map(|(_, source)| source.clone()).collect();
            let (worker, infos, thread) =
                Worker::spawn(load, sources, settings.max_batch, settings.max_queue, settings.prompt_cache)?;
            let worker = Arc::new(worker);
            let names =
                std::iter::once((name.clone(), None)).chain(adapters.into_iter().map(|(a, _)| (a, Some(name.clone()))));
            for (variant, ((served, parent), info)) in names.zip(infos).enumerate() {
                models.push(ServedModel { name: served, parent, info, worker: Arc::clone(&worker), variant });
            }
            workers.push(worker);
            threads.push(thread);
        }
        models.sort_by_key(|model: &ServedModel| order.iter().position(|name| *name == model.name));
        Ok((Self { models, workers }, threads))
    }

    /// The model a request names, or the default one; an unknown name is a 404 in OpenAI's
    /// shape.
    pub fn find(&self, requested: Option<&str>) -> Result<&ServedModel, ApiError> {
        let Some(name) = requested else { return Ok(&self.models[0]) };
        self.models.iter().find(|model| model.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.models.iter().map(|model| model.name.as_str()).collect();
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("the model '{name}' does not exist; this server has {}", names.join(", ")),
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
            )
        })
    }

    /// `/v1/models`' entry for `model`.
    pub fn card(model: &ServedModel, created: u64) -> Value {
        json!({
            "id": model.name,
            "object": "model",
            "created": created,
            "owned_by": "llms-from-scratch-rs",
            "root": model.parent.as_ref().unwrap_or(&model.name),
            "parent": model.parent,
            "max_model_len": model.info.context_length,
        })
    }

    /// Every worker's counters, added up.
    pub fn stats(&self) -> StatsSnapshot {
        self.workers.iter().map(|worker| worker.stats()).sum()
    }

    /// The bytes of the weights held: each model's own once, and each adapter's.
    pub fn weight_bytes(&self) -> i64 {
        self.models.iter().map(|model| model.info.weight_bytes).sum()
    }
}
