//! The sampler chain against Hugging Face's logits processors (`transformers`'
//! `generation/logits_process.py`), from `scripts/reference/logits_processors.py`.

use shared::generate::{
    generate_cached, LogitsProcessor, RepetitionPenalty, Sampler, Sampling, Temperature, TopK, TopP,
};
use shared::model_source::ModelSource;
use tch::{Device, Tensor};

fn reference() -> serde_json::Value {
    serde_json::from_str(include_str!("fixtures/logits-processors.json")).unwrap()
}

fn matrix(value: &serde_json::Value, kind: tch::Kind) -> Tensor {
    let rows: Vec<Vec<f64>> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap_or(f64::NEG_INFINITY)).collect())
        .collect();
    let (n, m) = (rows.len() as i64, rows[0].len() as i64);
    Tensor::from_slice(&rows.concat()).view([n, m]).to_kind(kind)
}

#[test]
fn processors_match_hugging_face() {
    let reference = reference();
    let logits = matrix(&reference["logits"], tch::Kind::Float);
    let tokens = matrix(&reference["tokens"], tch::Kind::Int64);
    let mut cases: Vec<(&str, Box<dyn LogitsProcessor>)> = vec![
        ("repetition_penalty_1.3", Box::new(RepetitionPenalty(1.3))),
        ("repetition_penalty_0.7", Box::new(RepetitionPenalty(0.7))),
        ("top_k_5", Box::new(TopK(5))),
        ("temperature_0.7", Box::new(Temperature(0.7))),
        ("top_p_0.8", Box::new(TopP(0.8))),
        ("top_p_0.3", Box::new(TopP(0.3))),
    ];
    for (name, processor) in &mut cases {
        let ours = processor.process(&logits, &tokens);
        let theirs = matrix(&reference["processed"][*name], tch::Kind::Float);
        assert!(ours.isinf().equal(&theirs.isinf()), "{name}: the same tokens filtered out");
        let finite = theirs.isfinite();
        let difference = (ours.masked_select(&finite) - theirs.masked_select(&finite)).abs().max().double_value(&[]);
        assert!(difference <= 1e-6, "{name}: {difference}");
    }
}

#[test]
fn greedy_generation_with_a_repetition_penalty_matches_hugging_face() {
    let case = &reference()["greedy_repetition_penalty_1.5"];
    let fixture = shared::workspace_root().join("shared/tests/fixtures/gpt2-tiny-hf");
    let loaded = ModelSource::Weights(fixture.to_string_lossy().into_owned()).load(Device::Cpu, 0).unwrap();
    let prompt = matrix(&case["prompt"], tch::Kind::Int64);
    let expected = matrix(&case["ids"], tch::Kind::Int64);
    let mut sampler = Sampler::new(&Sampling::GREEDY).unwrap().with_repetition_penalty(1.5).unwrap();
    let ours = generate_cached(&loaded.model, &prompt, 12, &mut sampler).unwrap();
    assert!(ours.equal(&expected), "{ours:?} vs {expected:?}");
}
