//! Several models in one server (`serve --model NAME=SOURCE`): models of their own and LoRA
//! adapters over one of them, each chosen by the request's `model`, each answering as that
//! model alone would, the adapters sharing their base's weights.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ch07_instruction::finetune::{self, InstructionMeta, InstructionModel};
use ch07_instruction::records::InstructionRecord;
use ch07_instruction::respond::respond;
use ch07_instruction::serve::models::ModelEntry;
use ch07_instruction::serve::worker::AdapterSource;
use ch07_instruction::serve::{self, ServeOptions};
use ch07_instruction::template::{Alpaca, TemplateKind};
use common::model::small_model;
use serde_json::{json, Value};
use shared::core::device::global_rng_lock;
use shared::model::lora::{apply_lora, LoraConfig};
use tch::{Device, Kind, Tensor};

const LORA: LoraConfig = LoraConfig { rank: 4, alpha: 8.0 };

/// Adapters for the small model as a LoRA run leaves them, with B drawn from `seed` (a
/// fresh adapter's B is zero and would change nothing), in `dir`.
fn adapter_file(dir: &Path, seed: i64) -> PathBuf {
    let _rng = global_rng_lock();
    let mut model = small_model().unwrap();
    apply_lora(&model.loaded.vs, &mut model.loaded.model, LORA).unwrap();
    tch::manual_seed(seed);
    tch::no_grad(|| {
        for (name, tensor) in model.loaded.vs.variables() {
            if name.ends_with(".lora.B") {
                tensor.shallow_clone().copy_(&(Tensor::randn(tensor.size(), (Kind::Float, Device::Cpu)) * 0.3));
            }
        }
    });
    let path = dir.join(format!("adapters-{seed}.safetensors"));
    let meta = InstructionMeta { template: TemplateKind::Alpaca, mask_instructions: false, lora: Some(LORA) };
    finetune::save_adapters(&path, &model.loaded.vs, &meta).unwrap();
    path
}

/// The small model with `adapters` attached, as `respond` would use it alone.
fn adapted_model(adapters: &Path) -> InstructionModel {
    let _rng = global_rng_lock();
    let mut model = small_model().unwrap();
    let (lora, _) = finetune::load_adapters(adapters, Device::Cpu).unwrap();
    lora.attach(&mut model.loaded.model).unwrap();
    model
}

fn adapter(path: &Path) -> AdapterSource {
    AdapterSource { path: path.to_path_buf(), template: None }
}

fn post(url: &str, path: &str, body: &Value) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into();
    let mut response = agent.post(format!("{url}{path}")).send(body.to_string()).unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap())
}

fn get(url: &str, path: &str) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent.get(format!("{url}{path}")).call().unwrap();
    (response.status().as_u16(), serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap())
}

/// A greedy reply of `model` (the server's default when `None`) to `instruction`.
fn reply(url: &str, model: Option<&str>, instruction: &str) -> String {
    let mut body = json!({ "messages": [{ "role": "user", "content": instruction }], "max_tokens": 16 });
    if let Some(model) = model {
        body["model"] = json!(model);
    }
    let (status, reply) = post(url, "/v1/chat/completions", &body);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["model"], model.unwrap_or("base"));
    reply["choices"][0]["message"]["content"].as_str().unwrap().to_string()
}

#[test]
fn each_model_and_adapter_answers_as_it_would_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (adapter_file(dir.path(), 1), adapter_file(dir.path(), 2));
    let entries = vec![
        ModelEntry::model("base", small_model),
        ModelEntry::adapter("tuned-a", "base", adapter(&first)),
        ModelEntry::model("other", small_model),
        ModelEntry::adapter("tuned-b", "base", adapter(&second)),
    ];
    let server = {
        let _rng = global_rng_lock(); // the models are built on the workers' threads
        serve::start_models(entries, ServeOptions::local(0)).unwrap()
    };
    let url = server.url();

    // /v1/models lists them in order, the adapters with their base as parent.
    let (status, list) = get(&url, "/v1/models");
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["base", "tuned-a", "other", "tuned-b"]);
    let parents: Vec<&Value> = list["data"].as_array().unwrap().iter().map(|m| &m["parent"]).collect();
    assert_eq!(parents, [&Value::Null, &json!("base"), &Value::Null, &json!("base")]);
    assert_eq!(get(&url, "/v1/models/tuned-b").1["root"], "base");

    // Each answers as the model alone does; one after the other, so that each is decoded
    // alone and goes through the prompt cache (which must not hand one model's keys and
    // values to another: the adapters and the base get the same prompt).
    let instruction = "Name a planet.";
    let record = InstructionRecord::new(instruction, "", "");
    let expected = |model: &InstructionModel| respond(&model.loaded.model, &Alpaca, &record, 16, Device::Cpu).unwrap();
    let base_reply = {
        let _rng = global_rng_lock();
        expected(&small_model().unwrap())
    };
    let (reply_a, reply_b) = (expected(&adapted_model(&first)), expected(&adapted_model(&second)));
    assert!(base_reply != reply_a && reply_a != reply_b, "the adapters change the model: {base_reply:?} {reply_a:?}");
    for _ in 0..2 {
        assert_eq!(reply(&url, None, instruction), base_reply);
        assert_eq!(reply(&url, Some("tuned-a"), instruction), reply_a);
        assert_eq!(reply(&url, Some("base"), instruction), base_reply);
        assert_eq!(reply(&url, Some("tuned-b"), instruction), reply_b);
        assert_eq!(reply(&url, Some("other"), instruction), base_reply);
    }
    // All at once: batches hold one model's requests, and each gets its own reply.
    let asked = ["tuned-a", "base", "tuned-b", "tuned-a", "other", "tuned-b", "base"];
    let replies: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            asked.iter().map(|&model| scope.spawn(|| reply(&url, Some(model), instruction))).collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    });
    for (model, text) in asked.iter().zip(&replies) {
        let wanted = match *model {
            "tuned-a" => &reply_a,
            "tuned-b" => &reply_b,
            _ => &base_reply,
        };
        assert_eq!(text, wanted, "{model}");
    }

    // An unknown model is a 404 in OpenAI's shape, wherever a model is named.
    let unknown = json!({ "model": "gpt-4", "messages": [{ "role": "user", "content": "Hi" }] });
    for (path, body) in [
        ("/v1/chat/completions", unknown.clone()),
        ("/v1/completions", json!({ "model": "gpt-4", "prompt": "Hi" })),
        ("/tokenize", json!({ "model": "gpt-4", "content": "Hi" })),
    ] {
        let (status, error) = post(&url, path, &body);
        assert_eq!((status, &error["error"]["code"]), (404, &json!("model_not_found")), "{path}: {error}");
        assert!(error["error"]["message"].as_str().unwrap().contains("base, tuned-a, other, tuned-b"), "{error}");
    }
    assert_eq!(get(&url, "/v1/models/gpt-4").0, 404);

    // Memory: the adapters' own weights are a few kilobytes beside their base's.
    let (_, health) = get(&url, "/health");
    let bytes: Vec<i64> =
        health["models"].as_array().unwrap().iter().map(|m| m["weight_bytes"].as_i64().unwrap()).collect();
    let adapter_bytes = finetune::load_adapters(&first, Device::Cpu).unwrap().0.bytes();
    assert_eq!((bytes[1], bytes[3]), (adapter_bytes, adapter_bytes));
    assert_eq!(bytes[0], bytes[2], "two copies of the same model");
    assert!(bytes[0] > 20 * adapter_bytes, "{bytes:?}");
    assert_eq!(health["memory"]["weight_bytes"], bytes.iter().sum::<i64>());
    assert!(health["memory"]["resident_bytes"].as_u64().unwrap() > bytes[0] as u64);
    assert_eq!(health["stats"]["completed"], 10 + asked.len());
    server.stop().unwrap();
}

#[test]
fn model_lists_that_cannot_be_served_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let adapters = adapter_file(dir.path(), 1);
    let start = |entries: Vec<ModelEntry>| {
        let _rng = global_rng_lock();
        serve::start_models(entries, ServeOptions::local(0)).err().map(|err| format!("{err:#}")).unwrap()
    };
    let twice = start(vec![ModelEntry::model("base", small_model), ModelEntry::model("base", small_model)]);
    assert!(twice.contains("two models are named 'base'"), "{twice}");
    let orphan =
        start(vec![ModelEntry::model("base", small_model), ModelEntry::adapter("tuned", "other", adapter(&adapters))]);
    assert!(orphan.contains("over 'other', which is not a model of its own here"), "{orphan}");
    let stacked = start(vec![
        ModelEntry::model("base", small_model),
        ModelEntry::adapter("tuned", "base", adapter(&adapters)),
        ModelEntry::adapter("twice", "tuned", adapter(&adapters)),
    ]);
    assert!(stacked.contains("over 'tuned', which is not a model of its own"), "{stacked}");
    let missing = start(vec![
        ModelEntry::model("base", small_model),
        ModelEntry::adapter("tuned", "base", adapter(&dir.path().join("none.safetensors"))),
    ]);
    assert!(missing.contains("none.json"), "{missing}");
    // Adapters trained on another model's shapes.
    let config = dir.path().join("narrow.json");
    std::fs::write(&config, std::fs::read_to_string(common::model::CONFIG).unwrap().replace("64", "32")).unwrap();
    let narrow = move || {
        let loaded = shared::app::model_source::Init::Random(config.to_string_lossy().into_owned())
            .load(&shared::app::cli::RunContext::for_tests(), Some(0.0))?;
        InstructionModel::new(loaded, Some(TemplateKind::Alpaca))
    };
    let misfit =
        start(vec![ModelEntry::model("narrow", narrow), ModelEntry::adapter("tuned", "narrow", adapter(&adapters))]);
    assert!(misfit.contains("does not fit") && misfit.contains("trained on another model"), "{misfit}");
}
