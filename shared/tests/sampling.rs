//! The sampler chain against Hugging Face's logits processors (`transformers`'
//! `generation/logits_process.py`), from `scripts/reference/logits_processors.py`.

use shared::app::model_source::ModelSource;
use shared::generate::{
    generate_cached, LogitsProcessor, RepetitionPenalty, Sampler, Sampling, Temperature, TopK, TopP,
};
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

/// A temperature so small that `logits / temperature` overflows decodes greedily (the
/// limit as the temperature goes to 0), row by row; before, `multinomial` panicked.
#[test]
fn an_underflowing_temperature_decodes_greedily() {
    let logits = Tensor::from_slice(&[1.0f32, 3.0, 2.0, -1.0, 0.5, 4.0, 0.0, -7.0]).view([2, 4]);
    let none = Tensor::zeros([2, 0], (tch::Kind::Int64, Device::Cpu));
    for temperature in [1e-40, 1e-300, f64::MIN_POSITIVE] {
        for top_p in [None, Some(0.9)] {
            let sampling = Sampling { temperature, ..Sampling::GREEDY };
            let mut sampler = Sampler::with_options(&sampling, top_p, None).unwrap();
            let next = sampler.next_token(&logits, &none).unwrap();
            assert_eq!(Vec::<i64>::try_from(next.view([-1])).unwrap(), [1, 1], "{temperature} {top_p:?}");
            let probabilities = sampler.probabilities(&logits, &none);
            assert_eq!(Vec::<f32>::try_from(probabilities.view([-1])).unwrap(), [0., 1., 0., 0., 0., 1., 0., 0.]);
        }
    }
}

/// NaN or infinite logits (a model with NaN weights) are an error that names the cause, at
/// every temperature; a distribution that is not one cannot be drawn from.
#[test]
fn non_finite_logits_are_a_clear_error() {
    let none = Tensor::zeros([1, 0], (tch::Kind::Int64, Device::Cpu));
    for (bad, name) in [(f32::NAN, "NaN"), (f32::INFINITY, "infinity")] {
        let logits = Tensor::from_slice(&[1.0f32, bad, 2.0]).view([1, 3]);
        for temperature in [0.0, 1.0] {
            let mut sampler = Sampler::new(&Sampling { temperature, ..Sampling::GREEDY }).unwrap();
            let err = sampler.next_token(&logits, &none).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains("not finite"), "{err}");
        }
    }
    let not_a_distribution = Tensor::from_slice(&[0.5f32, f32::NAN]).view([1, 2]);
    assert!(shared::generate::draw(&not_a_distribution).unwrap_err().to_string().contains("NaN"));
    assert!(shared::generate::draw(&Tensor::zeros([1, 2], (tch::Kind::Float, Device::Cpu))).is_err());
}
