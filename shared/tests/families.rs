//! Llama 3, Qwen3 and Gemma 3 through the one `GptModel`: tiny random checkpoints that
//! transformers wrote (`scripts/reference/hf_families.py`; Llama sharded with a 4.x config,
//! Qwen3 with an untied head, Gemma 3 in bfloat16), and transformers' logits and greedy
//! tokens for them (eager attention, float32), for prompts longer than Gemma's window.

use std::path::{Path, PathBuf};

use serde_json::Value;
use shared::generate::{generate_greedy_cached, Decoding, Sampler, Sampling};
use shared::model::GptModel;
use shared::tokenizer::{ChatMessage, ChatTemplate, HfTokenizer, TokenId, Tokenizer};
use shared::weights::families::{family_config, Family};
use shared::weights::Pretrained;
use tch::{nn, Device, Tensor};

const FAMILIES: [&str; 3] = ["llama", "qwen3", "gemma3"];

fn fixture(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf").join(family)
}

fn reference(family: &str) -> Value {
    let text = std::fs::read_to_string(fixture(family).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load(family: &str) -> (nn::VarStore, GptModel) {
    let weights = Pretrained::open(&fixture(family)).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = GptModel::new(&vs.root(), weights.config()).unwrap();
    weights.load_into(&vs).unwrap();
    (vs, model)
}

fn ids(value: &Value) -> Vec<i64> {
    value.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

fn floats(value: &Value) -> Tensor {
    Tensor::from_slice(&value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect::<Vec<_>>())
}

#[test]
fn every_family_gives_transformers_logits() {
    for family in FAMILIES {
        let (_, model) = load(family);
        for prompt in reference(family)["prompts"].as_array().unwrap() {
            let ids = ids(&prompt["ids"]);
            assert!(ids.len() > 8, "{family}: the prompt must be longer than Gemma's window of 8");
            let logits = tch::no_grad(|| model.forward_t(&Tensor::from_slice(&ids).view([1, -1]), false));
            for (position, key) in [(ids.len() as i64 - 1, "last_logits"), (0, "first_logits")] {
                let ours = logits.get(0).get(position);
                let worst = (&ours - floats(&prompt[key])).abs().max().double_value(&[]);
                assert!(worst < 1e-4, "{family}: {key} differ by up to {worst}");
            }
        }
    }
}

#[test]
fn greedy_decoding_gives_transformers_tokens_with_and_without_the_cache() {
    for family in FAMILIES {
        let (_, model) = load(family);
        for prompt in reference(family)["prompts"].as_array().unwrap() {
            let (ids, expected) = (ids(&prompt["ids"]), ids(&prompt["greedy"]));
            let mut context = ids.clone();
            for _ in 0..16 {
                let logits = tch::no_grad(|| model.forward_t(&Tensor::from_slice(&context).view([1, -1]), false));
                context.push(logits.get(0).get(-1).argmax(-1, false).int64_value(&[]));
            }
            assert_eq!(context[ids.len()..], expected, "{family}: uncached");
            let cached = generate_greedy_cached(&model, &Tensor::from_slice(&ids).view([1, -1]), 16, None).unwrap();
            let cached = Vec::<i64>::try_from(cached.view([-1])).unwrap();
            assert_eq!(cached[ids.len()..], expected, "{family}: cached");
        }
    }
}

#[test]
fn configs_map_onto_the_model_options() {
    let (_, llama) = load("llama");
    let cfg = &llama.cfg;
    assert!(cfg.tie_embeddings && cfg.n_kv_heads == Some(2) && cfg.head_dim.is_none() && !cfg.qk_norm);
    assert!(matches!(cfg.rope_scaling, Some(shared::model::positions::RopeScaling::Llama3 { .. })));
    let (_, qwen) = load("qwen3");
    assert!(!qwen.cfg.tie_embeddings && qwen.cfg.qk_norm && qwen.cfg.head_dim == Some(16));
    let (_, gemma) = load("gemma3");
    let local = gemma.cfg.local_attention.as_ref().unwrap();
    assert_eq!((local.window, local.rope_theta, local.layers.clone()), (8, 10_000.0, vec![0, 1, 3]));
    assert!(gemma.cfg.sandwich_norms && gemma.cfg.scale_embeddings && gemma.cfg.final_logit_softcap == Some(5.0));

    // Gemma 3's config as transformers 4.x wrote it gives the same model.
    let text = std::fs::read_to_string(fixture("gemma3").join("config.json")).unwrap();
    let mut json: Value = serde_json::from_str(&text).unwrap();
    let object = json.as_object_mut().unwrap();
    object.remove("rope_parameters");
    object.remove("layer_types");
    object.insert("rope_theta".into(), 1_000_000.0.into());
    object.insert("rope_local_base_freq".into(), 10_000.0.into());
    object.insert("rope_scaling".into(), serde_json::json!({"rope_type": "linear", "factor": 4.0}));
    object.insert("sliding_window_pattern".into(), 3.into());
    let (family, config) = family_config(&json).unwrap();
    assert_eq!(family, Family::Gemma3);
    assert_eq!(config.local_attention.as_ref().unwrap().layers, [0, 1, 3], "every third layer is global");
    assert_eq!(shared::model::GptConfig { tokenizer: gemma.cfg.tokenizer.clone(), ..config }, gemma.cfg);
}

#[test]
fn bad_family_checkpoints_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("qwen3").join(file), dir.path().join(file)).unwrap();
    }
    let config_path = dir.path().join("config.json");
    let original: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let error_with = |change: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut json = original.clone();
        change(json.as_object_mut().unwrap());
        std::fs::write(&config_path, json.to_string()).unwrap();
        format!("{:#}", Pretrained::open(dir.path()).unwrap_err())
    };
    let err = error_with(&|c| _ = c.insert("model_type".into(), "mistral".into()));
    assert!(err.contains("model_type mistral is not one this project reads"), "{err}");
    let err = error_with(&|c| _ = c.insert("attention_bias".into(), true.into()));
    assert!(err.contains("biases"), "{err}");
    let err = error_with(&|c| _ = c.insert("hidden_act".into(), "relu".into()));
    assert!(err.contains("activation relu"), "{err}");
    let err = error_with(&|c| _ = c.insert("rope_parameters".into(), serde_json::json!({"rope_type": "yarn"})));
    assert!(err.contains("RoPE scaling yarn is not supported"), "{err}");
    // A model of other sizes than the file's: every mismatch named.
    std::fs::write(&config_path, original.to_string()).unwrap();
    let mut json = original.clone();
    json["intermediate_size"] = 48.into();
    std::fs::write(&config_path, json.to_string()).unwrap();
    let weights = Pretrained::open(dir.path()).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = GptModel::new(&vs.root(), weights.config()).unwrap();
    let err = format!("{:#}", weights.load_into(&vs).unwrap_err());
    assert!(err.contains("trf_blocks.0.ff.fc1.weight (from model.layers.0.mlp.gate_proj.weight): [64, 32] in the file, [48, 32] in the model"), "{err}");
    // A folder without a config, and a sharded checkpoint missing a shard.
    let err = format!("{:#}", Pretrained::open(&dir.path().join("nowhere")).unwrap_err());
    assert!(err.contains("has no config.json"), "{err}");
    let sharded = tempfile::tempdir().unwrap();
    for file in ["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors"] {
        std::fs::copy(fixture("llama").join(file), sharded.path().join(file)).unwrap();
    }
    let err = format!("{:#}", Pretrained::open(sharded.path()).unwrap_err());
    assert!(err.contains("lists model-00002-of-00002.safetensors, which is missing"), "{err}");
}

#[test]
fn tokenizers_give_the_python_packages_ids() {
    for family in FAMILIES {
        let tokenizer = HfTokenizer::open(&fixture(family)).unwrap();
        for case in reference(family)["tokenizer"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let ids: Vec<TokenId> = ids(&case["ids"]).into_iter().map(|id| id as TokenId).collect();
            assert_eq!(tokenizer.encode(text).unwrap(), ids, "{family}: {text:?}");
            assert_eq!(tokenizer.decode_with(&ids, true).unwrap(), case["decoded"].as_str().unwrap(), "{family}");
        }
        // The model's config names the tokenizer, so a checkpoint carries it.
        let (_, model) = load(family);
        let built = model.cfg.tokenizer.build().unwrap();
        assert!(built.vocab_size() as i64 <= model.cfg.vocab_size, "{family}");
        assert_eq!(built.encode("It had always").unwrap(), tokenizer.encode("It had always").unwrap());
        assert!(tokenizer.decode(&[model.cfg.vocab_size as TokenId + 5]).is_err(), "{family}: outside the vocabulary");
    }
    // A fragment of a text gets no BOS.
    let llama = HfTokenizer::open(&fixture("llama")).unwrap();
    assert_eq!(llama.encode("It had").unwrap()[1..], llama.encode_fragment("It had").unwrap()[..]);
    // Generation stops at every EOS id generation_config.json names.
    assert_eq!(llama.stop_ids(), [1, 4]);
    assert_eq!(llama.end_of_text(), Some(1));
}

#[test]
fn generation_stops_at_any_of_the_model_s_stop_tokens() {
    let (_, model) = load("llama");
    let prompt = &reference("llama")["prompts"][0];
    let (ids, greedy) = (ids(&prompt["ids"]), ids(&prompt["greedy"]));
    // transformers' greedy continuation reaches <|eot_id|> (4), the second stop id, at its
    // fifth token.
    assert_eq!(greedy[4], 4);
    let mut decoding = Decoding::Sample(Sampler::new(&Sampling::GREEDY).unwrap());
    decoding.stop_at_model_stops(&model).unwrap();
    let out = decoding.generate(&model, &Tensor::from_slice(&ids).view([1, -1]), 16).unwrap();
    assert_eq!(Vec::<i64>::try_from(out.view([-1])).unwrap()[ids.len()..], greedy[..4]);
    // Batched decoding stops each row there too.
    let Decoding::Sample(sampler) = &mut decoding else { unreachable!() };
    let batched = shared::generate::batch::generate_batch(&model, std::slice::from_ref(&ids), 16, sampler).unwrap();
    assert_eq!(batched[0], greedy[..4]);
}

#[test]
fn chat_templates_render_as_transformers_does() {
    for family in FAMILIES {
        let tokenizer = HfTokenizer::open(&fixture(family)).unwrap();
        let template = tokenizer.chat_template().unwrap().expect("every fixture has a template");
        let reference = reference(family);
        let conversation: Vec<ChatMessage> = serde_json::from_value(reference["conversation"].clone()).unwrap();
        assert_eq!(conversation.len(), 3);
        for (generation_prompt, key) in [(false, "without_generation_prompt"), (true, "with_generation_prompt")] {
            let expected = &reference["chat"][key];
            let rendered = template.render(&conversation, generation_prompt).unwrap();
            assert_eq!(rendered, expected["text"].as_str().unwrap(), "{family}: {key}");
            let ids: Vec<i64> = tokenizer.encode_with(&rendered, false).unwrap().into_iter().map(i64::from).collect();
            assert_eq!(ids, self::ids(&expected["ids"]), "{family}: {key}");
        }
    }
    // A template that raises is an error that says why.
    let raising = ChatTemplate {
        source: "{{ raise_exception('roles must alternate') }}".into(),
        bos_token: None,
        eos_token: None,
    };
    let err = raising.render(&[ChatMessage::new("user", "hi")], true).unwrap_err().to_string();
    assert!(err.contains("roles must alternate"), "{err}");
}

/// The Jinja constructs of the real Llama 3.2, Qwen3 and Gemma 3 templates (`strftime_now`,
/// `tools` none, slices, a namespace set in a reversed loop, `is string`, Python's string
/// methods, inline `if`, `raise_exception`, `break`) render as transformers renders them
/// (`scripts/reference/chat_template_features.py`).
#[test]
fn the_constructs_of_real_chat_templates_render_as_transformers_does() {
    let path = shared::workspace_root().join("shared/tests/fixtures/hf/template-features.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let template = ChatTemplate {
        source: reference["template"].as_str().unwrap().to_string(),
        bos_token: reference["bos_token"].as_str().map(str::to_string),
        eos_token: None,
    };
    // strftime_now is today's date, as Python's datetime.now().strftime gives it.
    let today = chrono::Local::now().format("%d %b %Y").to_string();
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let rendered = template.render(&messages, case["add_generation_prompt"].as_bool().unwrap());
        match (case["text"].as_str(), case["error"].as_str()) {
            (Some(text), _) => {
                let expected = text.replace(reference["date"].as_str().unwrap(), &today);
                assert_eq!(rendered.unwrap(), expected, "{messages:?}");
            }
            (None, Some(error)) => {
                let err = rendered.unwrap_err().to_string();
                assert!(err.contains(error), "{err}");
            }
            _ => panic!("a case has text or an error: {case}"),
        }
    }
}

/// Streamed text joins to the whole decoding with each family's tokenizer, special tokens
/// left out, characters split between byte-level tokens included.
#[test]
fn generated_ids_stream_as_text() {
    for family in FAMILIES {
        let tokenizer = HfTokenizer::open(&fixture(family)).unwrap();
        let ids = tokenizer.encode("Héllo wörld — ünïcödé ✓ 日本語 🦀, said Gisburn.").unwrap();
        assert!(ids.len() > 10);
        let mut stream = shared::tokenizer::TextStream::new(&tokenizer);
        let mut pieces: Vec<String> = ids.iter().map(|&id| stream.push(id).unwrap()).collect();
        pieces.push(stream.finish().unwrap());
        assert_eq!(pieces.concat(), tokenizer.decode_lossy(&ids).unwrap(), "{family}");
        assert!(pieces.iter().filter(|p| p.is_empty()).count() >= 1, "{family}: some piece waits for a character");
    }
}
