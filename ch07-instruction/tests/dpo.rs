//! DPO against the companion notebook's functions run on the same models (tiny, and GPT-2
//! small's shape) and batches
//! (`tests/fixtures/dpo-reference.json`, written by `scripts/reference/dpo.py`): the collated
//! batch, the response log-probabilities, the loss and rewards, and five optimizer steps.

use ch07_instruction::dpo::{dpo_loss_batch, sequence_logprobs};
use ch07_instruction::dpo_run::{self, DpoOptions};
use ch07_instruction::finetune::InstructionModel;
use ch07_instruction::preference::{
    self, collate, PreferenceBatch, PreferenceCollate, PreferenceDataset, PreferenceExample,
};
use ch07_instruction::template::{Alpaca, TemplateKind};
use serde_json::Value;
use shared::app::cli::RunContext;
use shared::app::model_source::Init;
use shared::core::device::{global_rng_lock, seed_everything};
use shared::model::{GptConfig, GptModel};
use shared::tokenizer::Gpt2Tokenizer;
use shared::train::{AdamW, AdamWConfig};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn reference() -> Value {
    serde_json::from_str(include_str!("fixtures/dpo-reference.json")).unwrap()
}

fn close(what: &str, ours: f64, theirs: &Value) {
    let theirs = theirs.as_f64().unwrap();
    assert!((ours - theirs).abs() < 1e-5, "{what}: {ours} vs PyTorch {theirs}");
}

fn close_all(what: &str, ours: &Tensor, theirs: &Value) {
    let ours = Vec::<f64>::try_from(ours.to_kind(Kind::Double)).unwrap();
    let theirs = theirs.as_array().unwrap();
    assert_eq!(ours.len(), theirs.len(), "{what}");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        close(&format!("{what}[{i}]"), *a, b);
    }
}

fn model(config: &GptConfig, seed: u64) -> (VarStore, GptModel) {
    seed_everything(seed);
    let vs = VarStore::new(Device::Cpu);
    let model = GptModel::new(&vs.root(), config).unwrap();
    (vs, model)
}

#[test]
fn dpo_matches_the_notebook_step_by_step() {
    let reference = reference();
    let config: GptConfig = serde_json::from_value(reference["config"].clone()).unwrap();
    let path = preference::locate(&RunContext::for_tests().data).unwrap();
    let records = preference::load(&path).unwrap();
    assert_eq!(records.len(), 1100);
    let dataset = PreferenceDataset::new(&records[..8], &Alpaca, &Gpt2Tokenizer::new()).unwrap();
    let options = PreferenceCollate { allowed_max_length: Some(config.context_length as usize), mask_prompt: true };
    let batch = |first: usize| {
        let examples: Vec<&PreferenceExample> = dataset.examples[first..first + 4].iter().collect();
        collate(&examples, options, dataset.pad_id)
    };
    let batches = [batch(0), batch(4)];
    for key in ["chosen", "rejected", "chosen_mask", "rejected_mask"] {
        let ours = match key {
            "chosen" => &batches[0].chosen,
            "rejected" => &batches[0].rejected,
            "chosen_mask" => &batches[0].chosen_mask,
            _ => &batches[0].rejected_mask,
        };
        let ours = Vec::<Vec<i64>>::try_from(ours.to_kind(Kind::Int64)).unwrap();
        let theirs: Vec<Vec<i64>> = serde_json::from_value(reference["first_batch"][key].clone()).unwrap();
        assert_eq!(ours, theirs, "{key}");
    }

    check_steps(&reference, &batches);
    check_steps(&reference["gpt2_small_shape"], &batches);
}

/// The log-probabilities, loss and rewards of the first batch, five AdamW steps and the loss
/// after them, for the models (seeds 123 and 456) of `reference`'s config.
fn check_steps(reference: &Value, batches: &[PreferenceBatch; 2]) {
    let config: GptConfig = serde_json::from_value(reference["config"].clone()).unwrap();
    let (beta, lr) = (reference["beta"].as_f64().unwrap(), reference["lr"].as_f64().unwrap());
    let _rng = global_rng_lock();
    let (vs, policy) = model(&config, 123);
    let (_reference_vs, frozen) = model(&config, 456);
    let before = &reference["before"];
    let first = &batches[0];
    tch::no_grad(|| {
        for (name, model, rows, mask) in [
            ("policy_chosen", &policy, &first.chosen, &first.chosen_mask),
            ("policy_rejected", &policy, &first.rejected, &first.rejected_mask),
            ("reference_chosen", &frozen, &first.chosen, &first.chosen_mask),
            ("reference_rejected", &frozen, &first.rejected, &first.rejected_mask),
        ] {
            close_all(name, &sequence_logprobs(&model.forward_t(rows, false), rows, Some(mask)), &before[name]);
        }
        let result = dpo_loss_batch(first, &policy, &frozen, beta, Device::Cpu, false);
        close("loss", result.loss.double_value(&[]), &before["loss"]);
        close("chosen reward", result.chosen_rewards.mean(Kind::Float).double_value(&[]), &before["chosen_reward"]);
        close(
            "rejected reward",
            result.rejected_rewards.mean(Kind::Float).double_value(&[]),
            &before["rejected_reward"],
        );
    });

    // Five AdamW steps on the policy, the reference frozen.
    let mut optimizer = AdamW::new(&vs, AdamWConfig { lr, weight_decay: 0.01, ..AdamWConfig::default() }).unwrap();
    for (step, expected) in reference["steps"].as_array().unwrap().iter().enumerate() {
        optimizer.zero_grad();
        let result = dpo_loss_batch(&batches[step % 2], &policy, &frozen, beta, Device::Cpu, true);
        close(&format!("loss at step {step}"), result.loss.double_value(&[]), &expected["loss"]);
        let rewards = (result.chosen_rewards.mean(Kind::Float), result.rejected_rewards.mean(Kind::Float));
        close(&format!("chosen reward at step {step}"), rewards.0.double_value(&[]), &expected["chosen_reward"]);
        close(&format!("rejected reward at step {step}"), rewards.1.double_value(&[]), &expected["rejected_reward"]);
        result.loss.backward();
        optimizer.step();
    }
    let after =
        tch::no_grad(|| dpo_loss_batch(first, &policy, &frozen, beta, Device::Cpu, false).loss.double_value(&[]));
    close("loss after five steps", after, &reference["after_loss"]);
    assert!(after < before["loss"].as_f64().unwrap(), "the steps lower the loss on the first batch");
}

#[test]
fn a_preference_record_needs_both_responses() {
    let err = preference::parse(
        r#"[{"instruction": "a", "input": "", "output": "b", "chosen": "c"},
        {"instruction": "a", "input": "", "output": "b", "chosen": 1, "rejected": "d"}]"#,
    )
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("record 0: the field 'rejected' is missing"), "{text}");
    assert!(text.contains("record 1: the field 'chosen' is a number, not a string"), "{text}");
}

fn small_model() -> anyhow::Result<InstructionModel> {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/small.json");
    InstructionModel::new(Init::Random(config.into()).load(&RunContext::for_tests(), Some(0.0))?, None)
}

#[test]
fn a_dpo_run_prefers_the_chosen_responses_and_writes_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let context = RunContext { out_dir: dir.path().to_path_buf(), ..RunContext::for_tests() };
    let options = DpoOptions {
        lr: 1e-3,
        batch_size: 4,
        eval_freq: 4,
        eval_iter: 2,
        limit: Some(60),
        max_new_tokens: 4,
        verbose: false,
        ..DpoOptions::default()
    };
    // Every model here is built from the global generator.
    let _rng = global_rng_lock();
    let report = dpo_run::run(&context, &options, small_model).unwrap();
    assert_eq!(report.splits, (51, 6, 3));
    // The policy starts as the reference: no margin; training opens one on held-out pairs.
    assert_eq!((report.val_before.loss, report.val_before.margin), (2f64.ln() as f32 as f64, 0.0));
    assert!(report.val_after.margin > 0.0 && report.val_after.loss < report.val_before.loss, "{:?}", report.val_after);
    assert_eq!(report.history.evaluations.len(), 3, "steps 0, 4 and 8 of 12");
    assert_eq!(report.responses.len(), 3);
    for file in [&report.checkpoint, &report.plot, &dir.path().join("metrics.json")] {
        assert!(file.is_file(), "{} was not written", file.display());
    }
    // The tuned checkpoint loads as an instruction model in its template.
    let tuned = ch07_instruction::finetune::load_model(&report.checkpoint, None, &context).unwrap();
    assert_eq!(tuned.template, ch07_instruction::template::TemplateKind::Alpaca);

    // LoRA-only: only the adapters train, merged into the saved model.
    let lora_dir = tempfile::tempdir().unwrap();
    let lora_context = RunContext { out_dir: lora_dir.path().to_path_buf(), ..RunContext::for_tests() };
    let lora = Some(shared::model::lora::LoraConfig { rank: 4, alpha: 8.0 });
    let with_lora = DpoOptions { lora, epochs: 1, limit: Some(30), ..options.clone() };
    let adapted = dpo_run::run(&lora_context, &with_lora, small_model).unwrap();
    assert!(adapted.trainable_parameters < report.trainable_parameters / 2, "{}", adapted.trainable_parameters);
    assert!(adapted.val_after.margin != 0.0, "the adapters moved the policy");
    ch07_instruction::finetune::load_model(&adapted.checkpoint, None, &lora_context).unwrap();

    // Bad settings and a reference of another model are clear errors.
    let bad = DpoOptions { beta: 0.0, ..options.clone() };
    let err = dpo_run::run(&context, &bad, small_model).unwrap_err().to_string();
    assert!(err.contains("--beta must be positive"), "{err}");
    let other = dir.path().join("other");
    let (other_vs, other_model) = model(&GptConfig::tiny(), 1);
    let progress = shared::train::TrainProgress::default();
    let meta = shared::train::CheckpointMeta::new(&other_model.cfg, &progress, AdamWConfig::default(), 123, None);
    shared::train::Checkpoint::at(&other).save(&other_vs, None, &meta).unwrap();
    let with_other = DpoOptions { reference: Some(other.with_extension("safetensors")), ..options };
    let err = dpo_run::run(&context, &with_other, small_model).unwrap_err().to_string();
    assert!(err.contains("configs differ"), "{err}");
}

/// DPO from pretrained weights as `--init gpt2 --weights DIR` loads them: the tiny Llama 3.2
/// fixture in its own chat template, and the tiny GPT-2 fixture in OpenAI's layout with the
/// Phi-3 template (it reads 32 tokens; the short records fit). Each run opens a margin on
/// the training pairs. With Alpaca's longer prompts no record fits GPT-2's fixture: a clear
/// error that says so.
#[test]
fn dpo_runs_from_pretrained_weights() {
    let fixtures = shared::workspace_root().join("shared/tests/fixtures");
    let options = DpoOptions {
        lr: 1e-3,
        batch_size: 4,
        eval_freq: 2,
        eval_iter: 1,
        epochs: 1,
        limit: Some(24),
        max_new_tokens: 2,
        verbose: false,
        ..DpoOptions::default()
    };
    let weights = |dir: &str, template: Option<TemplateKind>| {
        let dir = fixtures.join(dir).to_str().unwrap().to_string();
        move || InstructionModel::new(Init::Gpt2(dir.clone()).load(&RunContext::for_tests(), Some(0.0))?, template)
    };
    let out = tempfile::tempdir().unwrap();
    let context = RunContext { out_dir: out.path().to_path_buf(), ..RunContext::for_tests() };
    let _rng = global_rng_lock();
    for (dir, template) in [("hf/llama", None), ("gpt2-tiny-hf", Some(TemplateKind::Phi3))] {
        let report = dpo_run::run(&context, &options, weights(dir, template)).unwrap();
        let margins: Vec<f64> = report.history.evaluations.iter().map(|e| e.train.margin).collect();
        assert!(margins.iter().any(|&m| m > 0.0), "{dir}: {margins:?}");
        assert!(report.checkpoint.is_file());
    }
    let err = dpo_run::run(&context, &options, weights("gpt2-tiny-hf", Some(TemplateKind::Alpaca))).unwrap_err();
    assert!(err.to_string().contains("left out: their prompts fill the model's context of 32 tokens"), "{err}");
}
