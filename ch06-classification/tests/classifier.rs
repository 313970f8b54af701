//! Chapter 6's pieces: padding and truncation, the head and the freezing, the accuracy
//! function, and a short fine-tuning of a small random model on the real data.

use shared::app::cli::RunContext;
use shared::app::finetune::{self, FinetuneOptions};
use shared::app::model_source::Init;
use shared::app::recipe::TrainFlags;
use shared::core::device::global_rng_lock;
use shared::data::classification;
use shared::data::classification::{ClassificationDataset, ClassificationLoader};
use shared::data::dataset::BatchSource;
use shared::data::spam::Message;
use shared::model::classifier::{freeze, replace_head, TokenPosition, Trainable};
use shared::model::{GptConfig, GptModel};
use shared::train::classifier::calc_accuracy_loader;
use tch::{nn, Device, Kind, Tensor};

fn message(label: i64, text: &str) -> Message {
    Message { label, text: text.to_string() }
}

#[test]
fn texts_are_padded_to_the_longest_or_cut_to_max_length() {
    let messages = [message(0, "Hi"), message(1, "Win a free prize now")];
    let padded = ClassificationDataset::new(&messages, None).unwrap();
    assert_eq!(padded.max_length, 5); // "Win a free prize now" is 5 tokens
    assert_eq!(padded.inputs[0], [17250, 50256, 50256, 50256, 50256]);
    assert_eq!(padded.labels, [0, 1]);
    let cut = ClassificationDataset::new(&messages, Some(2)).unwrap();
    assert_eq!(cut.inputs[1].len(), 2);
    assert_eq!(cut.inputs[1], padded.inputs[1][..2]);
    // Batches: inputs (B, max_length), targets the labels.
    let loader = ClassificationLoader::new(padded, 2, false, false).unwrap();
    let batch = loader.batches().next().unwrap();
    assert_eq!((batch.inputs.size(), batch.targets.size()), (vec![2, 5], vec![2]));
}

#[test]
fn the_head_is_replaced_and_only_the_chosen_parameters_train() {
    let _rng = global_rng_lock();
    let cfg = GptConfig { n_layers: 3, ..GptConfig::tiny() };
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = GptModel::new(&vs.root(), &cfg).unwrap();
    replace_head(&vs, &mut model, 2);
    let variables = vs.variables();
    assert_eq!(variables["out_head.weight"].size(), [2, 32]);
    assert_eq!(variables["out_head.bias"].size(), [2]);
    assert_eq!(model.forward_t(&Tensor::from_slice(&[1i64, 2, 3]).view([1, 3]), false).size(), [1, 3, 2]);
    let trainable = freeze(&vs, &model, Trainable::LastBlock);
    assert!(trainable
        .iter()
        .all(|n| n.starts_with("trf_blocks.2.") || n.starts_with("final_norm.") || n.starts_with("out_head.")));
    assert_eq!(trainable.len(), 13 + 2 + 2); // the block's 13 tensors, the norm's 2, the head's 2
    for (name, tensor) in vs.variables() {
        assert_eq!(tensor.requires_grad(), trainable.contains(&name), "{name}");
    }
    assert_eq!(freeze(&vs, &model, Trainable::All).len(), vs.variables().len());
}

#[test]
fn accuracy_counts_correct_predictions_at_the_chosen_position() {
    let _rng = global_rng_lock();
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = GptModel::new(&vs.root(), &GptConfig::tiny()).unwrap();
    replace_head(&vs, &mut model, 2);
    let messages: Vec<Message> = (0..6).map(|i| message(i % 2, &format!("message number {i}"))).collect();
    let loader =
        ClassificationLoader::new(ClassificationDataset::new(&messages, None).unwrap(), 4, false, false).unwrap();
    for position in [TokenPosition::Last, TokenPosition::First] {
        // The same count by hand, batch by batch.
        let mut correct = Vec::new();
        for batch in loader.batches() {
            let logits =
                model.forward_t(&batch.inputs, false).select(1, if position == TokenPosition::Last { -1 } else { 0 });
            correct.push(logits.argmax(-1, false).eq_tensor(&batch.targets).sum(Kind::Int64).int64_value(&[]));
        }
        let accuracy = calc_accuracy_loader(&model, &loader, None, position, Device::Cpu);
        assert_eq!(accuracy, correct.iter().sum::<i64>() as f64 / 6.0);
        // The first batch alone: its 4 examples only.
        let first = calc_accuracy_loader(&model, &loader, Some(1), position, Device::Cpu);
        assert_eq!(first, correct[0] as f64 / 4.0);
    }
    // Labels the model cannot predict all at once: flipping them changes the count.
    let flipped: Vec<Message> = messages.iter().map(|m| message(1 - m.label, &m.text)).collect();
    let flipped =
        ClassificationLoader::new(ClassificationDataset::new(&flipped, None).unwrap(), 4, false, false).unwrap();
    let (a, b) = (
        calc_accuracy_loader(&model, &loader, None, TokenPosition::Last, Device::Cpu),
        calc_accuracy_loader(&model, &flipped, None, TokenPosition::Last, Device::Cpu),
    );
    assert_eq!(a + b, 1.0, "with two classes, every example is right under exactly one labelling");
}

#[test]
fn a_small_random_model_learns_to_tell_spam_from_ham() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.json");
    let small = GptConfig { context_length: 128, emb_dim: 64, n_heads: 4, n_layers: 2, ..GptConfig::gpt2_small() };
    small.save(&config).unwrap();
    let context = RunContext { out_dir: dir.path().join("run"), ..RunContext::for_tests() };
    let options = FinetuneOptions {
        init: Init::Random(config.to_string_lossy().into_owned()),
        trainable: Trainable::All,
        train: TrainFlags { lr: Some(5e-4), epochs: 3, eval_freq: 40, ..TrainFlags::defaults() },
        verbose: false,
        ..FinetuneOptions::default()
    };
    let report = {
        let _rng = global_rng_lock();
        finetune::run(&context, &options).unwrap()
    };
    assert_eq!(
        (report.loaders.train_batches, report.loaders.validation_batches, report.loaders.test_batches),
        (130, 19, 38)
    );
    assert_eq!(report.loaders.max_length, 120); // the longest training message, as in the book
    assert!(report.accuracies.test >= 0.85, "test accuracy {}", report.accuracies.test);
    for file in ["train.csv", "validation.csv", "test.csv", "metrics.json", "loss-plot.png", "accuracy-plot.png"] {
        assert!(context.out_dir.join(file).is_file(), "{file} was not written");
    }
    // The checkpoint reads back with the same accuracies (the training split's depends on
    // which 5 messages the shuffled, drop_last loader leaves out).
    let classifier = finetune::load_classifier(&report.checkpoint, Device::Cpu).unwrap();
    let again = finetune::evaluate(&classifier, &context).unwrap();
    assert_eq!((again.validation, again.test), (report.accuracies.validation, report.accuracies.test));
    let splits = classification::prepare(&context.data).unwrap();
    assert_eq!(shared::data::spam::read_csv(&context.out_dir.join("test.csv")).unwrap(), splits.test);
}

#[test]
fn every_exercise_has_a_readme_row() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let missing = shared::app::exercise::missing_readme_rows(ch06_classification::exercises::ALL, &readme);
    assert!(missing.is_empty(), "README rows missing: {missing:?}");
}
