//! Appendix E: the book's parameter counts, and a LoRA fine-tuning that learns and whose
//! adapters alone rebuild the classifier.

use std::process::Command;

use appendix_e_lora::counts;
use shared::app::cli::RunContext;
use shared::app::finetune::{self, FinetuneOptions};
use shared::app::model_source::Init;
use shared::app::recipe::TrainFlags;
use shared::core::device::global_rng_lock;
use shared::model::lora::LoraConfig;
use shared::model::GptConfig;

#[test]
fn counts_json_prints_the_books_numbers() {
    let output = Command::new(env!("CARGO_BIN_EXE_appendix-e-lora")).args(["counts", "--json"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let counts: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(counts["trainable_before"], 124_441_346);
    assert_eq!(counts["trainable_after_freezing"], 0);
    assert_eq!(counts["lora_parameters"], 2_666_528);
    let smaller = {
        let _rng = global_rng_lock();
        counts::run(&counts::book_classifier_config(), "GPT-2 124M", LoraConfig { rank: 8, alpha: 16.0 }).unwrap()
    };
    assert_eq!(smaller.lora_parameters, 2_666_528 / 2);
}

#[test]
fn lora_fine_tuning_learns_and_the_adapters_alone_rebuild_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.json");
    let small = GptConfig { context_length: 128, emb_dim: 64, n_heads: 4, n_layers: 2, ..GptConfig::gpt2_small() };
    small.save(&config).unwrap();
    let init = Init::Random(config.to_string_lossy().into_owned());
    let context = RunContext { out_dir: dir.path().join("run"), ..RunContext::for_tests() };
    let options = FinetuneOptions {
        init: init.clone(),
        lora: Some(LoraConfig { rank: 16, alpha: 16.0 }),
        train: TrainFlags { epochs: 2, lr: Some(1e-3), eval_freq: 100, ..TrainFlags::defaults() },
        verbose: false,
        ..FinetuneOptions::default()
    };
    let _rng = global_rng_lock();
    let report = finetune::run(&context, &options).unwrap();
    // Only the adapters trained: 2 blocks x (4 x 16 x (64 + 64) + 16 x (64 + 256) x 2) + the head 16 x (64 + 2).
    assert_eq!(report.trainable_parameters, 2 * (4 * 16 * 128 + 2 * 16 * 320) + 16 * 66);
    assert!(report.accuracies.test >= 0.8, "test accuracy {}", report.accuracies.test);
    let adapters = finetune::adapters_path(&context.out_dir);
    let full = std::fs::metadata(&report.checkpoint).unwrap().len();
    assert!(std::fs::metadata(&adapters).unwrap().len() * 20 < full, "the adapters file is small");
    // The saved classifier, and the base plus the adapters alone, score the same.
    let saved = finetune::load_classifier(&report.checkpoint, tch::Device::Cpu).unwrap();
    let rebuilt = finetune::classifier_from_adapters(&init, &adapters, saved.meta.clone(), &context).unwrap();
    for classifier in [&saved, &rebuilt] {
        let accuracies = finetune::evaluate(classifier, &context).unwrap();
        assert_eq!((accuracies.validation, accuracies.test), (report.accuracies.validation, report.accuracies.test));
    }
}

/// Every command's flags and defaults, as `--help` prints them, equal the committed snapshot.
#[test]
fn help_is_unchanged() {
    shared::reference::assert_help_unchanged(env!("CARGO_BIN_EXE_appendix-e-lora"), env!("CARGO_MANIFEST_DIR"));
}
