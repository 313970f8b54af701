//! The chapter's numbers against the book's PyTorch code run on the CPU
//! (scripts/reference/ch05_pretraining.py → tests/fixtures/pytorch-reference.json).

use ch05_pretraining::appendix_d::{self, AppendixDOptions};
use ch05_pretraining::decode::generate_text;
use ch05_pretraining::pretrain::{self, book_config, PretrainOptions, START_CONTEXT};
use serde_json::Value;
use shared::app::cli::RunContext;
use shared::app::recipe::TrainFlags;
use shared::core::device::{global_rng_lock, seed_everything};
use shared::data::THE_VERDICT;
use shared::generate::{generate, generate_text_simple, Sampling};
use shared::model::{GptConfig, GptModel};
use shared::reference::assert_close;
use shared::train::{cross_entropy, perplexity};
use tch::{nn, Device, Kind, Tensor};

fn reference() -> Value {
    serde_json::from_str(include_str!("fixtures/pytorch-reference.json")).unwrap()
}

fn ids(value: &Value) -> Vec<i64> {
    value.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

fn verdict() -> String {
    RunContext::for_tests().data.read_to_string(&THE_VERDICT).expect("The Verdict (set LLMS_DATA_DIR or go online)")
}

/// Section 5.1: the untrained model's text, target probabilities, loss and perplexity.
#[test]
fn untrained_model_losses_and_sampling_match_pytorch() {
    let reference = reference();
    let _rng = global_rng_lock();
    seed_everything(123);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = GptModel::new(&vs.root(), &book_config()).unwrap();
    let generated = generate_text(&model, START_CONTEXT, 10, &Sampling::GREEDY).unwrap();
    assert_eq!(generated.ids, ids(&reference["untrained_sample_ids"]));

    let inputs = Tensor::from_slice(&[16833i64, 3626, 6100, 40, 1107, 588]).view([2, 3]);
    let targets = Tensor::from_slice(&[3626i64, 6100, 345, 1107, 588, 11311]).view([2, 3]);
    let logits = tch::no_grad(|| model.forward_t(&inputs, false));
    let probas = logits.softmax(-1, Kind::Float).gather(2, &targets.unsqueeze(-1), false).squeeze_dim(-1);
    assert_close("target probabilities", shared::core::tensors::rows_f32(&probas), &reference["target_probas"], 1e-9);
    let loss = cross_entropy(&logits, &targets).double_value(&[]);
    assert!((loss - reference["example_loss"].as_f64().unwrap()).abs() < 1e-5, "loss {loss}");
    let ppl = perplexity(loss);
    assert!((ppl - reference["example_perplexity"].as_f64().unwrap()).abs() < 0.5, "perplexity {ppl}");

    // Top-k 3 at temperature 1.5: the same draws as torch.multinomial after manual_seed(123).
    seed_everything(123);
    let prompt = Tensor::from_slice(&ids(&reference["untrained_sample_ids"])[..4]).view([1, 4]);
    let sampling = Sampling { temperature: 1.5, top_k: Some(3), eos_id: None };
    let out = generate(&model, &prompt, 12, 256, &sampling).unwrap();
    assert_eq!(Vec::<i64>::try_from(out.get(0)).unwrap(), ids(&reference["untrained_top_k_3_temperature_1.5"]));
    // Greedy decoding is generate_text_simple.
    let simple = generate_text_simple(&model, &prompt, 5, 256).unwrap();
    assert!(generate(&model, &prompt, 5, 256, &Sampling::GREEDY).unwrap().equal(&simple));
}

/// Section 5.2 on a tiny model: the initial losses, every logged loss and every epoch's
/// sample equal PyTorch's (same initialisation, shuffling, dropout and AdamW updates).
#[test]
fn a_short_training_run_matches_pytorch_and_lowers_the_loss() {
    let reference = &reference()["tiny_run"];
    let text = verdict();
    let config = GptConfig { context_length: 32, emb_dim: 32, n_heads: 4, n_layers: 2, ..GptConfig::gpt2_small() };
    let out = tempfile::tempdir().unwrap();
    let context = RunContext { out_dir: out.path().to_path_buf(), ..RunContext::for_tests() };
    let options = PretrainOptions {
        config: Some(config),
        train: TrainFlags { epochs: 2, batch_size: 4, eval_freq: 5, eval_iter: 2, ..TrainFlags::defaults() },
        verbose: false,
        ..PretrainOptions::default()
    };
    let report = {
        let _rng = global_rng_lock();
        pretrain::run(&context, &text, &options).unwrap()
    };
    assert_eq!(report.train_batches as i64, reference["train_batches"].as_i64().unwrap());
    assert_eq!(report.val_batches as i64, reference["val_batches"].as_i64().unwrap());
    let close = |name: &str, ours: f64, theirs: &Value| {
        let theirs = theirs.as_f64().unwrap();
        assert!((ours - theirs).abs() < 1e-5, "{name}: {ours} vs PyTorch {theirs}");
    };
    close("initial train loss", report.initial_train_loss.unwrap(), &reference["initial_train_loss"]);
    close("initial val loss", report.initial_val_loss.unwrap(), &reference["initial_val_loss"]);
    let evaluations = reference["evaluations"].as_array().unwrap();
    assert_eq!(report.history.evaluations.len(), evaluations.len());
    for (ours, theirs) in report.history.evaluations.iter().zip(evaluations) {
        assert_eq!(ours.step, theirs["step"].as_i64().unwrap());
        assert_eq!(ours.tokens_seen, theirs["tokens_seen"].as_i64().unwrap());
        close(&format!("train loss at step {}", ours.step), ours.train_loss, &theirs["train_loss"]);
        close(&format!("val loss at step {}", ours.step), ours.val_loss, &theirs["val_loss"]);
    }
    let samples: Vec<&str> = reference["samples"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(report.history.samples, samples);
    // Training lowers both losses, and the run wrote its outputs.
    let (first, last) = (&report.history.evaluations[0], report.history.evaluations.last().unwrap());
    assert!(last.train_loss < first.train_loss - 0.3 && last.val_loss < first.val_loss - 0.3, "{first} -> {last}");
    for file in [&report.checkpoint, &report.metrics, &report.plot] {
        assert!(file.is_file(), "{} was not written", file.display());
    }
    let metrics: Value = serde_json::from_str(&std::fs::read_to_string(&report.metrics).unwrap()).unwrap();
    assert_eq!(metrics["history"]["evaluations"].as_array().unwrap().len(), evaluations.len());
}

/// Appendix D's loop (warmup, cosine decay, clipping from the end of the warmup) on a tiny
/// model against the companion notebook's code run the same way
/// (`scripts/reference/appendix_d.py`): every step's learning rate, every logged loss and
/// every sample.
#[test]
fn appendix_d_matches_pytorch_step_by_step() {
    let reference: Value = serde_json::from_str(include_str!("fixtures/appendix-d-reference.json")).unwrap();
    let config: GptConfig = serde_json::from_value(reference["config"].clone()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let context = RunContext { out_dir: out.path().to_path_buf(), ..RunContext::for_tests() };
    let options = AppendixDOptions {
        config,
        epochs: reference["epochs"].as_u64().unwrap() as usize,
        batch_size: reference["batch_size"].as_u64().unwrap() as usize,
        verbose: false,
    };
    assert!(!options.is_the_appendix_run());
    let report = {
        let _rng = global_rng_lock();
        appendix_d::run(&context, &verdict(), &options, 1e-5).unwrap()
    };
    assert_eq!(report.warmup_steps, reference["warmup_steps"].as_i64().unwrap());
    assert_eq!(report.total_steps, report.run.history.learning_rates.len() as i64);
    let rates: Vec<f64> = serde_json::from_value(reference["learning_rates"].clone()).unwrap();
    assert_eq!(report.run.history.learning_rates.len(), rates.len());
    for (step, (ours, theirs)) in report.run.history.learning_rates.iter().zip(&rates).enumerate() {
        assert!((ours - theirs).abs() < 1e-12, "learning rate at step {step}: {ours} vs PyTorch {theirs}");
    }
    let evaluations = reference["evaluations"].as_array().unwrap();
    assert_eq!(report.run.history.evaluations.len(), evaluations.len());
    for (ours, theirs) in report.run.history.evaluations.iter().zip(evaluations) {
        let step = ours.step;
        assert_eq!(
            (step, ours.tokens_seen),
            (theirs["step"].as_i64().unwrap(), theirs["tokens_seen"].as_i64().unwrap())
        );
        for (name, ours, theirs) in
            [("train", ours.train_loss, &theirs["train_loss"]), ("val", ours.val_loss, &theirs["val_loss"])]
        {
            let theirs = theirs.as_f64().unwrap();
            assert!((ours - theirs).abs() < 1e-5, "{name} loss at step {step}: {ours} vs PyTorch {theirs}");
        }
    }
    let samples: Vec<String> = serde_json::from_value(reference["samples"].clone()).unwrap();
    assert_eq!(report.run.history.samples, samples);
    assert!(report.lr_plot.is_file() && report.run.plot.is_file());
    assert!(report.check.is_none(), "only the appendix's own run is compared with its reference");
}
