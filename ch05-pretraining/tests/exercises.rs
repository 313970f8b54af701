//! Exercises 5.1-5.6, and the README rows that list them.

use std::path::Path;

use ch05_pretraining::exercises::{self, ex5_1, ex5_2, ex5_3, ex5_4, ex5_5, ex5_6};
use ch05_pretraining::pretrain;
use serde_json::Value;
use shared::app::cli::RunContext;
use shared::app::model_source::ModelSource;
use shared::core::device::global_rng_lock;
use shared::data::THE_VERDICT;
use shared::generate::Sampling;
use shared::model::GptConfig;

fn reference() -> Value {
    serde_json::from_str(include_str!("fixtures/pytorch-reference.json")).unwrap()
}

fn fixture(name: &str) -> String {
    shared::workspace_root().join("shared/tests/fixtures").join(name).to_string_lossy().into_owned()
}

fn verdict() -> String {
    RunContext::for_tests().data.read_to_string(&THE_VERDICT).expect("The Verdict (set LLMS_DATA_DIR or go online)")
}

#[test]
fn exercise_5_1_counts_match_the_book() {
    let result = {
        let _rng = global_rng_lock();
        ex5_1::run(123).unwrap()
    };
    let reference = reference();
    for run in &result.runs {
        let key = if run.temperature == 1.0 { "1".to_string() } else { run.temperature.to_string() };
        for count in &run.counts {
            assert_eq!(count.count as i64, reference["toy_counts"][&key][&count.word].as_i64().unwrap(), "T={key}");
        }
    }
    let pizza: Vec<(usize, f64)> = result.runs.iter().map(|r| (r.pizza_count, r.pizza_probability)).collect();
    assert_eq!(pizza.iter().map(|p| p.0).collect::<Vec<_>>(), [0, 0, 32]);
    assert!((pizza[2].1 - 0.0430).abs() < 1e-4 && pizza[0].1 < 2e-4 && pizza[1].1 < 1e-30, "{pizza:?}");
}

fn tiny_model() -> shared::app::model_source::LoadedModel {
    ModelSource::Fresh(GptConfig { context_length: 64, ..GptConfig::tiny() }).load(tch::Device::Cpu, 123).unwrap()
}

#[test]
fn exercise_5_2_sweeps_every_setting_and_greedy_ignores_top_k() {
    let _rng = global_rng_lock();
    let loaded = tiny_model();
    let sweep =
        ex5_2::sweep(&loaded.model, "tiny", "Every effort moves you", 8, &[0.0, 1.0, 5.0], &[Some(3), None], 123)
            .unwrap();
    assert_eq!(sweep.rows.len(), 6);
    // Greedy decoding picks the top token, which any top-k keeps.
    assert_eq!(sweep.rows[0].text, sweep.rows[1].text);
    // A high temperature over the whole vocabulary strays from greedy.
    assert_ne!(sweep.rows[5].text, sweep.rows[0].text);
    assert!(sweep.rows.iter().all(|row| row.text.starts_with("Every effort moves you")));
}

#[test]
fn exercise_5_3_deterministic_settings_equal_generate_text_simple() {
    let _rng = global_rng_lock();
    let loaded = tiny_model();
    let result = ex5_3::run(&loaded.model, "Every effort moves you", 10).unwrap();
    let by_name = |prefix: &str| result.settings.iter().find(|s| s.name.starts_with(prefix)).unwrap();
    for name in ["temperature 0 (greedy)", "temperature 0 with top-k", "top-k 1"] {
        let setting = by_name(name);
        assert!(setting.deterministic && setting.equals_generate_text_simple, "{name}");
        assert!(setting.sampling.is_deterministic());
    }
    let random = by_name("temperature 1.4, top-k 25");
    assert!(!random.deterministic && !random.equals_generate_text_simple && !random.sampling.is_deterministic());
}

#[test]
fn exercise_5_4_resuming_equals_an_uninterrupted_run() {
    let text = verdict();
    let out = tempfile::tempdir().unwrap();
    let context = RunContext { out_dir: out.path().to_path_buf(), ..RunContext::for_tests() };
    let config = GptConfig { context_length: 32, emb_dim: 32, n_heads: 4, n_layers: 1, ..GptConfig::gpt2_small() };
    let check = {
        let _rng = global_rng_lock();
        ex5_4::resume_check(&context, &text, &config, out.path()).unwrap()
    };
    assert_eq!(check.uninterrupted_steps, check.resumed_steps);
    assert!(check.weights_identical, "weights differ after resuming");
    assert!(check.optimizer_identical, "optimizer state differs after resuming");
    // The negative control: the same resume with the second epoch shuffled from another seed
    // parts ways with the uninterrupted run, and the comparison sees it.
    let other_seed = ex5_4::check_options(&config, 1, context.seed + 1, Some(&out.path().join("first-epoch")));
    let context = RunContext { out_dir: out.path().join("other-seed"), ..context };
    {
        let _rng = global_rng_lock();
        pretrain::run(&context, &text, &other_seed).unwrap();
    }
    let a = out.path().join("two-epochs/checkpoint.safetensors");
    let b = out.path().join("other-seed/checkpoint.safetensors");
    assert!(!ex5_4::same_tensors(&a, &b).unwrap(), "a differently shuffled second epoch must give other weights");
}

#[test]
fn exercise_5_5_losses_of_gpt2_weights_match_pytorch() {
    let dir = fixture("gpt2-tiny-hf");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&dir).join("expected.json")).unwrap()).unwrap();
    let losses = &expected["verdict_losses"];
    let result = {
        let _rng = global_rng_lock();
        ex5_5::run(&ModelSource::Weights(dir.clone()), &verdict(), 32, tch::Device::Cpu, 123).unwrap()
    };
    assert!((result.losses.train_loss - losses["train"].as_f64().unwrap()).abs() < 1e-5, "{}", result.losses);
    assert!((result.losses.val_loss - losses["val"].as_f64().unwrap()).abs() < 1e-5, "{}", result.losses);
    assert!((result.losses.train_perplexity - result.losses.train_loss.exp()).abs() < 1e-9);
}

#[test]
fn exercise_5_6_runs_models_side_by_side() {
    let sources = [ModelSource::Weights(fixture("gpt2-tiny-hf")), ModelSource::Fresh(GptConfig::tiny())];
    let result = {
        let _rng = global_rng_lock();
        ex5_6::run(&sources, "Hello, I am", 5, &Sampling::GREEDY, tch::Device::Cpu, 123).unwrap()
    };
    assert_eq!(result.outputs.len(), 2);
    assert_eq!(result.outputs[1].parameters, shared::model::ParameterCounts::from_config(&GptConfig::tiny()).total());
    // The fixture's greedy continuation of "Hello, I am" is token 49764, five times over.
    let expected =
        shared::tokenizer::Gpt2Tokenizer::new().decode(&[15496, 11, 314, 716, 49764, 49764, 49764, 49764, 49764]);
    assert_eq!(result.outputs[0].text, expected.unwrap());
}

#[test]
fn every_exercise_has_a_readme_row() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let missing = shared::app::exercise::missing_readme_rows(exercises::ALL, &readme);
    assert!(missing.is_empty(), "README rows missing: {missing:?}");
}
