//! Exercise 5.3: the decoding settings that remove randomness, checked against
//! `generate_text_simple`: temperature 0 (argmax) or top-k 1 (one candidate left), whatever
//! the seed.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::{Exercise, Report};
use shared::app::model_source::ModelSource;
use shared::core::device::seed_everything;
use shared::generate::{generate, generate_text_simple, Sampling};
use shared::model::GptModel;
use shared::tokenizer::Gpt2Tokenizer;
use tch::Tensor;

use crate::pretrain::{book_config, START_CONTEXT};

pub const EXERCISE: Exercise = Exercise {
    id: "5.3",
    summary: "deterministic decoding: temperature 0, or top-k 1 at any temperature, equals generate_text_simple",
    run: |context| {
        let loaded = ModelSource::Fresh(book_config()).load(context.device, context.seed)?;
        Report::new(&run(&loaded.model, START_CONTEXT, 15)?)
    },
};

#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub name: String,
    pub sampling: Sampling,
    /// The continuation under seeds 1 and 2.
    pub ids_by_seed: [Vec<i64>; 2],
    pub deterministic: bool,
    pub equals_generate_text_simple: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex5_3 {
    pub simple: Vec<i64>,
    pub settings: Vec<Setting>,
}

pub fn run(model: &GptModel, prompt: &str, max_new_tokens: i64) -> Result<Ex5_3> {
    let ids: Vec<i64> = Gpt2Tokenizer::new().encode(prompt).into_iter().map(i64::from).collect();
    let idx = Tensor::from_slice(&ids).view([1, -1]).to_device(model.tok_emb.ws.device());
    let context = model.cfg.context_length;
    let as_ids = |t: Tensor| Vec::<i64>::try_from(t.get(0).to_device(tch::Device::Cpu));
    let simple = as_ids(generate_text_simple(model, &idx, max_new_tokens, context)?)?;
    let mut settings = Vec::new();
    for (name, sampling) in [
        ("temperature 0 (greedy)", Sampling::GREEDY),
        ("temperature 0 with top-k 25", Sampling { top_k: Some(25), ..Sampling::GREEDY }),
        ("top-k 1 at temperature 1.4", Sampling { temperature: 1.4, top_k: Some(1), eos_id: None }),
        ("temperature 1.4, top-k 25 (random)", Sampling { temperature: 1.4, top_k: Some(25), eos_id: None }),
    ] {
        let mut by_seed = Vec::new();
        for seed in [1, 2] {
            seed_everything(seed);
            by_seed.push(as_ids(generate(model, &idx, max_new_tokens, context, &sampling)?)?);
        }
        let ids_by_seed: [Vec<i64>; 2] = by_seed.try_into().expect("two seeds");
        settings.push(Setting {
            name: name.to_string(),
            sampling,
            deterministic: ids_by_seed[0] == ids_by_seed[1],
            equals_generate_text_simple: ids_by_seed.iter().all(|ids| *ids == simple),
            ids_by_seed,
        });
    }
    Ok(Ex5_3 { simple, settings })
}

impl fmt::Display for Ex5_3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "generate_text_simple: {:?}", self.simple)?;
        for s in &self.settings {
            writeln!(
                f,
                "{:<36} same under seeds 1 and 2: {:<5}  equals generate_text_simple: {}",
                s.name, s.deterministic, s.equals_generate_text_simple
            )?;
        }
        write!(f, "Temperature 0, or top-k 1, removes the sampling step: the seed no longer matters.")
    }
}
