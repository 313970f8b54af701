//! Chapter 7's pieces against the book's PyTorch code (`tests/fixtures/pytorch-reference.json`,
//! written by `scripts/reference/ch07_instruction.py`): templates, the split, the collate
//! function and its masking, and a short fine-tuning of a small random model on the real data.

use ch07_instruction::collate::{collate, CollateOptions, Example, InstructionDataset, InstructionLoader};
use ch07_instruction::exercises::{self, ex7_4};
use ch07_instruction::finetune::{self, FinetuneOptions, InstructionModel, RESPONSES_FILE};
use ch07_instruction::records::{self, InstructionRecord, Splits};
use ch07_instruction::respond::respond;
use ch07_instruction::template::{Alpaca, Phi3, PromptTemplate, TemplateKind};
use serde_json::Value;
use shared::app::cli::RunContext;
use shared::app::model_source::Init;
use shared::app::recipe::TrainFlags;
use shared::core::device::global_rng_lock;
use shared::data::dataset::BatchSource;
use shared::data::INSTRUCTION_DATA;
use shared::reference::assert_close;
use shared::tokenizer::ChatMessage;
use shared::train::{cross_entropy, IGNORE_INDEX};
use tch::{Kind, Tensor};

fn reference() -> Value {
    serde_json::from_str(include_str!("fixtures/pytorch-reference.json")).unwrap()
}

fn book_records() -> Vec<InstructionRecord> {
    let path = RunContext::for_tests().data.locate(&INSTRUCTION_DATA).unwrap_or_else(|err| {
        panic!("these tests need the book's instruction data; set LLMS_DATA_DIR or allow the download: {err}")
    });
    records::load(&path).unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<i64>> {
    Vec::<Vec<i64>>::try_from(t).unwrap()
}

fn as_rows(v: &Value) -> Vec<Vec<i64>> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn alpaca_and_phi3_prompts_with_and_without_input() {
    let with_input = InstructionRecord::new("Edit the sentence.", "He go home.", "He goes home.");
    let without = InstructionRecord::new("Name a planet.", "", "Mars.");
    let preamble =
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.";
    assert_eq!(
        Alpaca.format_input(&with_input),
        format!("{preamble}\n\n### Instruction:\nEdit the sentence.\n\n### Input:\nHe go home.")
    );
    assert_eq!(Alpaca.format_input(&without), format!("{preamble}\n\n### Instruction:\nName a planet."));
    assert_eq!(
        Alpaca.format_example(&without),
        format!("{preamble}\n\n### Instruction:\nName a planet.\n\n### Response:\nMars.")
    );
    assert_eq!(Phi3.format_input(&with_input), "<|user|>\nEdit the sentence.\nHe go home.");
    assert_eq!(Phi3.format_example(&without), "<|user|>\nName a planet.\n<|assistant|>:\nMars.");

    let reference = reference();
    let records = book_records();
    let splits = Splits::new(records.clone());
    assert_eq!(Alpaca.format_input(&splits.validation[0]), reference["first_validation_prompt"]);
    assert_eq!(Phi3.format_input(&records[0]), reference["phi3_prompt_of_record_0"]);
}

#[test]
fn responses_are_cut_after_the_prompt_without_the_marker() {
    let prompt = "<|user|>\nName a planet.";
    assert_eq!(Phi3.extract_response(&format!("{prompt}\n<|assistant|>:\nMars.\n"), prompt), "Mars.");
    let prompt = Alpaca.format_input(&InstructionRecord::new("Name a planet.", "", ""));
    assert_eq!(Alpaca.extract_response(&format!("{prompt}\n\n### Response:\n Mars. "), &prompt), "Mars.");
    // When the decoded text does not start with the prompt, the book's character count cuts it.
    assert_eq!(Alpaca.extract_response("ééé### Response: yes", "abc"), "yes");
    assert_eq!(Alpaca.extract_response("ab", "abc"), "");
}

#[test]
fn the_book_data_splits_into_935_110_and_55() {
    let records = book_records();
    assert_eq!(records.len(), 1100);
    let splits = Splits::new(records.clone());
    let sizes = [splits.train.len(), splits.test.len(), splits.validation.len()];
    assert_eq!(sizes, [935, 110, 55]);
    assert_eq!(serde_json::to_value(sizes).unwrap(), reference()["splits"]);
    // In file order.
    assert_eq!(splits.train[0], records[0]);
    assert_eq!(splits.test[0], records[935]);
    assert_eq!(splits.validation[54], records[1099]);
}

#[test]
fn token_counts_of_both_templates_match_the_book_code() {
    let splits = Splits::new(book_records());
    let expected = &reference()["train_tokens"];
    let alpaca = InstructionDataset::new(&splits.train, &Alpaca).token_stats();
    let phi3 = InstructionDataset::new(&splits.train, &Phi3).token_stats();
    assert_eq!((alpaca.total, alpaca.longest), (52760, 91));
    assert_eq!(alpaca.total as u64, expected["alpaca"].as_u64().unwrap());
    assert_eq!((phi3.total as u64, phi3.longest as u64), (expected["phi3"].as_u64().unwrap(), 75));
}

fn example(tokens: &[i64], prompt_len: usize) -> Example {
    Example { tokens: tokens.to_vec(), prompt_len }
}

#[test]
fn collate_pads_shifts_and_ignores_padding_after_the_first() {
    let examples = [example(&[0, 1, 2, 3, 4], 3), example(&[5, 6], 1), example(&[7, 8, 9], 2)];
    let batch: Vec<&Example> = examples.iter().collect();
    let plain = CollateOptions { allowed_max_length: None, mask_instructions: false };
    let out = collate(&batch, plain);
    // The book's printed example.
    assert_eq!(rows(&out.inputs), [vec![0, 1, 2, 3, 4], vec![5, 6, 50256, 50256, 50256], vec![7, 8, 9, 50256, 50256]]);
    assert_eq!(
        rows(&out.targets),
        [vec![1, 2, 3, 4, 50256], vec![6, 50256, -100, -100, -100], vec![8, 9, 50256, -100, -100]]
    );
    let reference = reference();
    assert_eq!(rows(&out.inputs), as_rows(&reference["collate"][0]));
    assert_eq!(rows(&out.targets), as_rows(&reference["collate"][1]));

    let cut = collate(&batch, CollateOptions { allowed_max_length: Some(3), ..plain });
    assert_eq!(rows(&cut.inputs), as_rows(&reference["collate_max_3"][0]));
    assert_eq!(rows(&cut.targets), as_rows(&reference["collate_max_3"][1]));

    // Exercise 7.2: the first prompt_len - 1 targets (those predicting prompt tokens) are -100.
    let masked = collate(&batch, CollateOptions { mask_instructions: true, ..plain });
    assert_eq!(
        rows(&masked.targets),
        [vec![-100, -100, 3, 4, 50256], vec![6, 50256, -100, -100, -100], vec![-100, 9, 50256, -100, -100]]
    );
    assert_eq!(rows(&masked.targets), as_rows(&reference["collate_masked"][1]));
    assert!(masked.inputs.equal(&out.inputs));
}

#[test]
fn masking_a_real_example_leaves_only_the_response() {
    let splits = Splits::new(book_records());
    let dataset = InstructionDataset::new(&splits.train[..1], &Alpaca);
    let masked = collate(&[dataset.get(0)], CollateOptions { allowed_max_length: None, mask_instructions: true });
    let targets = rows(&masked.targets).remove(0);
    assert_eq!(serde_json::to_value(&targets).unwrap(), reference()["first_example_masked_targets"]);
    let kept = targets.iter().filter(|&&t| t != IGNORE_INDEX).count();
    let response_tokens = dataset.get(0).tokens.len() - dataset.get(0).prompt_len;
    assert_eq!(kept, response_tokens + 1, "the response and its end-of-text token");
}

#[test]
fn the_loss_ignores_the_minus_100_targets() {
    let examples = [example(&[0, 1, 2, 3, 4], 3), example(&[5, 6], 1)];
    let batch = collate(
        &examples.iter().collect::<Vec<_>>(),
        CollateOptions { allowed_max_length: None, mask_instructions: false },
    );
    let _rng = global_rng_lock();
    tch::manual_seed(0);
    let logits = Tensor::randn([2, 5, 50257], (Kind::Float, tch::Device::Cpu));
    let loss = cross_entropy(&logits, &batch.targets).double_value(&[]);
    // The mean over the 7 targets that are not -100, by hand.
    let log_probs = logits.log_softmax(-1, Kind::Float);
    let targets = rows(&batch.targets);
    let mut kept = Vec::new();
    for (b, row) in targets.iter().enumerate() {
        for (t, &target) in row.iter().enumerate() {
            if target != IGNORE_INDEX {
                kept.push(-log_probs.double_value(&[b as i64, t as i64, target]));
            }
        }
    }
    assert_eq!(kept.len(), 7);
    let expected = kept.iter().sum::<f64>() / 7.0;
    assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
    // Whatever the model says at ignored positions does not matter.
    let changed = logits.copy();
    let _ = changed.get(1).narrow(0, 2, 3).fill_(7.0);
    assert_eq!(cross_entropy(&changed, &batch.targets).double_value(&[]), loss);
}

#[test]
fn the_loader_batches_like_pytorch_and_drops_the_last_partial_batch() {
    let splits = Splits::new(book_records());
    let options = CollateOptions { allowed_max_length: Some(1024), mask_instructions: false };
    let loader = |shuffle| InstructionLoader {
        dataset: InstructionDataset::new(&splits.train, &Alpaca),
        batch_size: 8,
        shuffle,
        drop_last: shuffle,
        collate: options,
    };
    assert_eq!(loader(true).batch_count(), 116); // 935 // 8: the book logs steps 0-115 in epoch 1
    assert_eq!(loader(false).batch_count(), 117);
    let first = loader(false).batches().next().unwrap();
    let longest = (0..8).map(|i| loader(false).dataset.get(i).tokens.len()).max().unwrap();
    assert_eq!(first.inputs.size(), [8, longest as i64]);
}

fn small_config(dir: &std::path::Path) -> Init {
    let config = dir.join("small.json");
    let reference = reference();
    std::fs::write(&config, reference["tiny_config"].to_string()).unwrap();
    Init::Random(config.to_string_lossy().into_owned())
}

fn test_context(dir: &std::path::Path, name: &str) -> RunContext {
    RunContext { out_dir: dir.join(name), ..RunContext::for_tests() }
}

#[test]
fn a_small_fine_tune_matches_the_book_code_and_lowers_the_validation_loss() {
    let dir = tempfile::tempdir().unwrap();
    let options = FinetuneOptions {
        init: small_config(dir.path()),
        limit: Some(120),
        max_new_tokens: 20,
        verbose: false,
        ..FinetuneOptions::default()
    };
    let context = test_context(dir.path(), "run");
    let report = {
        let _rng = global_rng_lock();
        finetune::run(&context, &options).unwrap()
    };
    let expected = &reference()["tiny_run"];
    assert_eq!(
        serde_json::to_value([report.splits.train, report.splits.test, report.splits.validation]).unwrap(),
        expected["splits"]
    );
    assert_eq!(report.response_before, expected["response_before"]);
    assert_close(
        "initial losses",
        [report.initial_train_loss, report.initial_val_loss],
        &serde_json::json!([expected["initial_train_loss"], expected["initial_val_loss"]]),
        1e-5,
    );
    let evaluations = expected["evaluations"].as_array().unwrap();
    assert_eq!(report.history.evaluations.len(), evaluations.len());
    for (ours, theirs) in report.history.evaluations.iter().zip(evaluations) {
        assert_eq!(ours.step, theirs["step"].as_i64().unwrap());
        assert_eq!(ours.tokens_seen, theirs["tokens_seen"].as_i64().unwrap());
        assert_close(
            &format!("losses at step {}", ours.step),
            [ours.train_loss, ours.val_loss],
            &serde_json::json!([theirs["train_loss"], theirs["val_loss"]]),
            1e-4,
        );
    }
    assert_eq!(serde_json::to_value(&report.history.samples).unwrap(), expected["samples"]);
    let (first, last) = (&report.history.evaluations[0], report.history.evaluations.last().unwrap());
    assert!(
        last.val_loss < first.val_loss,
        "fine-tuning lowers the validation loss: {} -> {}",
        first.val_loss,
        last.val_loss
    );

    // The outputs: the splits, the responses (the book code's, for the first three), the plot.
    let answered = records::load(&context.out_dir.join(RESPONSES_FILE)).unwrap();
    assert_eq!(answered.len(), 12);
    let responses: Vec<&str> = answered.iter().take(3).map(|r| r.model_response.as_deref().unwrap()).collect();
    assert_eq!(serde_json::to_value(&responses).unwrap(), expected["test_responses"]);
    assert_eq!(records::load(&context.out_dir.join("validation.json")).unwrap().len(), 6);
    assert!(context.out_dir.join("loss-plot.png").is_file());

    // The checkpoint answers as the run did.
    let model = {
        let _rng = global_rng_lock(); // building the model draws its initial weights
        finetune::load_model(&report.checkpoint, None, &context).unwrap()
    };
    assert_eq!(model.template, TemplateKind::Alpaca);
    // The run answered 8 records at a time; one at a time gives every response again.
    for record in &answered {
        let again = respond(&model.loaded.model, &Alpaca, record, 20, context.device).unwrap();
        assert_eq!(Some(again), record.model_response);
    }
}

/// One epoch on the first 40 records, no responses: for comparing settings.
fn quick_options(dir: &std::path::Path) -> FinetuneOptions {
    FinetuneOptions {
        init: small_config(dir),
        limit: Some(40),
        train: TrainFlags { epochs: 1, ..TrainFlags::defaults() },
        responses: false,
        verbose: false,
        ..FinetuneOptions::default()
    }
}

#[test]
fn lora_trains_only_the_adapters_and_saves_a_plain_model() {
    let dir = tempfile::tempdir().unwrap();
    let base = quick_options(dir.path());
    let context = test_context(dir.path(), "ex7_4");
    let comparison = {
        let _rng = global_rng_lock();
        exercises::compare(&context, &base, "LoRA", |o| o.lora = Some(ex7_4::LORA)).unwrap()
    };
    let (full, lora) = (&comparison.runs[0], &comparison.runs[1]);
    assert_eq!(full.trainable_parameters, full.total_parameters);
    // Rank 16 on every linear layer of 2 blocks (4 attention 32x32, 32->128, 128->32) and the head (32->50257).
    let per_block = 4 * 16 * (32 + 32) + 16 * (32 + 128) + 16 * (128 + 32);
    assert_eq!(lora.trainable_parameters, 2 * per_block + 16 * (32 + 50257));
    assert_eq!(lora.total_parameters, full.total_parameters);
    assert!(lora.final_val_loss.is_finite());
    assert!(comparison.to_string().contains("LoRA"));
    // Merged: the checkpoint holds the plain model's tensors only.
    let _rng = global_rng_lock(); // building a model draws its initial weights
    let model = finetune::load_model(&lora.out_dir.join("sft"), None, &context).unwrap();
    assert!(model.loaded.vs.variables().keys().all(|name| !name.contains("lora")));
    // The adapters alone, attached to the base the run started from, compute what the
    // merged model computes.
    let (adapters, template) =
        finetune::load_adapters(&lora.out_dir.join(finetune::ADAPTERS_FILE), tch::Device::Cpu).unwrap();
    assert_eq!((adapters.config, template), (ex7_4::LORA, TemplateKind::Alpaca));
    let mut start = base.init.load(&context, Some(0.0)).unwrap().model;
    let ids = tch::Tensor::from_slice(&[15496i64, 11, 314, 716]).view([1, 4]);
    let logits = |model: &shared::model::GptModel| tch::no_grad(|| model.forward_t(&ids, false));
    let base_logits = logits(&start);
    adapters.attach(&mut start).unwrap();
    let (adapted, merged) = (logits(&start), logits(&model.loaded.model));
    assert!(adapted.allclose(&merged, 1e-4, 1e-4, false), "{}", (&adapted - &merged).abs().max());
    assert!(!adapted.allclose(&base_logits, 1e-4, 1e-4, false), "the adapters changed the model");
}

#[test]
fn the_phi3_and_masked_variants_train_on_their_own_examples() {
    let dir = tempfile::tempdir().unwrap();
    let base = quick_options(dir.path());
    let context = test_context(dir.path(), "variants");
    let _rng = global_rng_lock();
    let phi3 = exercises::compare(&context, &base, "Phi-3", |o| o.template = TemplateKind::Phi3).unwrap();
    assert!(phi3.runs[1].train_tokens.total < phi3.runs[0].train_tokens.total, "Phi-3 prompts are shorter");
    let saved = std::fs::read_to_string(phi3.runs[1].out_dir.join("sft.instruction.json")).unwrap();
    assert!(saved.contains("\"phi3\""), "{saved}");
    // The masked variant against the same base run (trained once).
    let masked_context = RunContext { out_dir: context.out_dir.join("masked"), ..context.clone() };
    let masked_options = FinetuneOptions { mask_instructions: true, ..base.clone() };
    let report = finetune::run(&masked_context, &masked_options).unwrap();
    let masked = exercises::RunSummary::new("masked", &report, masked_context.out_dir);
    // The same examples, but the loss covers the responses only: a different number.
    assert_eq!(phi3.runs[0].train_tokens, masked.train_tokens);
    assert_ne!(phi3.runs[0].final_val_loss, masked.final_val_loss);
}

#[test]
fn malformed_records_are_reported_with_their_index() {
    let err = records::parse(r#"[{"instruction": "a", "input": "", "output": "b"}, {"instruction": "a", "input": ""}, {"instruction": 3, "input": "", "output": "b"}, 7]"#).unwrap_err().to_string();
    assert!(err.contains("3 of 4 records are malformed"), "{err}");
    assert!(err.contains("record 1: the field 'output' is missing"), "{err}");
    assert!(err.contains("record 2: the field 'instruction' is a number, not a string"), "{err}");
    assert!(err.contains("record 3: expected an object, found a number"), "{err}");
    let err = records::parse(r#"{"instruction": "a"}"#).unwrap_err().to_string();
    assert!(err.contains("expected a JSON array"), "{err}");
    assert!(records::parse("[]").unwrap_err().to_string().contains("no records"));
    assert!(records::parse("[{").unwrap_err().to_string().contains("invalid JSON"));
    // Extra fields are ignored; a response is kept.
    let parsed =
        records::parse(r#"[{"instruction": "a", "input": "", "output": "b", "id": 4, "model_response": "c"}]"#)
            .unwrap();
    assert_eq!(parsed[0].model_response.as_deref(), Some("c"));
}

#[test]
fn data_names_resolve_to_alpaca_a_url_or_the_book_data() {
    use shared::data::{DataLocator, ALPACA_DATA};
    let cache = tempfile::tempdir().unwrap();
    let locator = |explicit: Option<&str>| DataLocator {
        explicit: explicit.map(Into::into),
        data_dir: None,
        bundled_dir: None,
        cache_dir: cache.path().to_path_buf(),
        allow_download: false,
    };
    // Offline, each names the file it needs and where it comes from.
    let err = records::locate(&locator(Some("alpaca"))).unwrap_err().to_string();
    assert!(err.contains("alpaca_data.json") && err.contains(ALPACA_DATA.url), "{err}");
    let err = records::locate(&locator(Some("https://example.org/data/mine.json"))).unwrap_err().to_string();
    assert!(err.contains("mine.json") && err.contains("https://example.org/data/mine.json"), "{err}");
    let err = records::locate(&locator(None)).unwrap_err().to_string();
    assert!(err.contains("instruction-data.json") && err.contains("LLMS_DATA_DIR"), "{err}");
    // With the project's bundled copies, the book's data needs no network.
    let bundled = DataLocator { bundled_dir: Some(shared::data::bundled_dir()), ..locator(None) };
    assert_eq!(records::locate(&bundled).unwrap(), shared::data::bundled_dir().join("instruction-data.json"));
    // Alpaca's file is not pinned to a checksum: a copy in the cache is used as it is.
    let cached = cache.path().join("alpaca_data.json");
    std::fs::write(&cached, r#"[{"instruction": "a", "input": "", "output": "b"}]"#).unwrap();
    assert_eq!(records::locate(&locator(Some("alpaca"))).unwrap(), cached);
    assert_eq!(records::load(&cached).unwrap().len(), 1);
    // Anything else is a file.
    assert_eq!(records::locate(&locator(Some(cached.to_str().unwrap()))).unwrap(), cached);
}

#[test]
fn llama_qwen3_and_gemma3_fine_tune_with_their_own_tokenizers() {
    let lora = Some(shared::model::lora::LoraConfig { rank: 4, alpha: 8.0 });
    // Llama and Gemma learn their own chat templates, with the prompt masked out of the loss.
    let chat = TemplateKind::Model;
    for (family, lora, template) in
        [("llama", None, chat), ("qwen3", lora, TemplateKind::Alpaca), ("gemma3", None, chat)]
    {
        let dir = tempfile::tempdir().unwrap();
        let options = FinetuneOptions {
            init: Init::Gpt2(family_dir(family)),
            limit: Some(40),
            lora,
            template,
            mask_instructions: template == chat,
            train: TrainFlags { epochs: 2, lr: Some(2e-3), eval_freq: 1, eval_iter: 2, ..TrainFlags::defaults() },
            responses: false,
            verbose: false,
            ..FinetuneOptions::default()
        };
        let context = test_context(dir.path(), family);
        let report = {
            let _rng = global_rng_lock();
            finetune::run(&context, &options).unwrap()
        };
        let evaluations = &report.history.evaluations;
        let (first, last) = (evaluations.first().unwrap(), evaluations.last().unwrap());
        assert!(last.train_loss < first.train_loss, "{family}: {} -> {}", first.train_loss, last.train_loss);
        if lora.is_some() {
            assert!(report.trainable_parameters < report.total_parameters / 2, "{family}: only the adapters train");
        }
        // The saved model names its tokenizer and template: it reloads and answers in them.
        let _rng = global_rng_lock(); // building the model draws its initial weights
        let reloaded = finetune::load_model(&report.checkpoint, None, &context).unwrap();
        assert_eq!(reloaded.loaded.model.cfg.tokenizer.name(), "huggingface", "{family}");
        assert_eq!(reloaded.template, template, "{family}");
        let record = InstructionRecord::new("Name a colour.", "", "");
        respond(&reloaded.loaded.model, &*reloaded.prompt_template().unwrap(), &record, 4, tch::Device::Cpu).unwrap();
    }
}

/// A committed tiny Hugging Face checkpoint (`scripts/reference/hf_families.py`).
fn family_dir(family: &str) -> String {
    shared::workspace_root().join("shared/tests/fixtures/hf").join(family).to_string_lossy().into_owned()
}

fn family_model(family: &str) -> InstructionModel {
    let _rng = global_rng_lock();
    let loaded = Init::Gpt2(family_dir(family)).load(&RunContext::for_tests(), Some(0.0)).unwrap();
    InstructionModel::new(loaded, None).unwrap()
}

#[test]
fn a_model_s_chat_template_prompts_as_the_model_was_tuned() {
    let record = InstructionRecord::new("Rewrite the sentence.", "The cat sat.", "The cat was sitting.");
    let user = ChatMessage::new("user", "Rewrite the sentence.\n\nThe cat sat.");
    let assistant = ChatMessage::new("assistant", "The cat was sitting.");
    for family in ["llama", "qwen3", "gemma3"] {
        // A Hugging Face instruction model is prompted in its own template unless told otherwise.
        let model = family_model(family);
        assert_eq!(model.template, TemplateKind::Model, "{family}");
        let tokenizer = model.loaded.model.cfg.tokenizer.build().unwrap();
        let chat = tokenizer.chat_template().unwrap().unwrap();
        let template = model.prompt_template().unwrap();
        let prompt = template.format_input(&record);
        let example = template.format_example(&record);
        assert_eq!(prompt, chat.render(std::slice::from_ref(&user), true).unwrap(), "{family}");
        assert_eq!(example, chat.render(&[user.clone(), assistant.clone()], false).unwrap(), "{family}");
        assert_eq!(prompt.clone() + &template.format_response(&record.output), example, "{family}");
        // Encoded as written: the template's BOS, not a second one from the tokenizer.
        let ids = template.encode(&*tokenizer, &example).unwrap();
        let bos = tokenizer.encode("").unwrap();
        assert!(ids.starts_with(&bos) && ids.iter().filter(|id| bos.contains(id)).count() == bos.len(), "{family}");
        // The reply ends its turn with one of the model's stop tokens, which fine-tuning teaches.
        let prompt_len = template.encode(&*tokenizer, &prompt).unwrap().len();
        assert!(ids[prompt_len..].iter().any(|id| tokenizer.stop_ids().contains(id)), "{family}: {example:?}");
    }
    // GPT-2 has no chat template: the book's Alpaca, and a clear error when asked for one.
    let gpt2 = shared::tokenizer::Gpt2Tokenizer::new();
    assert_eq!(TemplateKind::default_for(&gpt2).unwrap(), TemplateKind::Alpaca);
    let err = TemplateKind::Model.template(&gpt2).err().unwrap().to_string();
    assert!(err.contains("no chat template") && err.contains("alpaca"), "{err}");
}

#[test]
fn a_response_in_a_chat_template_is_the_new_tokens_decoded() {
    let record = InstructionRecord::new("Name a colour.", "", "");
    for family in ["llama", "qwen3", "gemma3"] {
        let model = family_model(family);
        let (gpt, template) = (&model.loaded.model, model.prompt_template().unwrap());
        let response = respond(gpt, &*template, &record, 12, tch::Device::Cpu).unwrap();
        // By hand: the prompt as the template writes it, 12 greedy tokens without a cache,
        // cut before the first stop token, decoded without special tokens, trimmed.
        let tokenizer = gpt.cfg.tokenizer.build().unwrap();
        let prompt: Vec<i64> =
            tokenizer.encode_fragment(&template.format_input(&record)).unwrap().into_iter().map(i64::from).collect();
        let idx = Tensor::from_slice(&prompt).view([1, -1]);
        let out = shared::generate::generate_text_simple(gpt, &idx, 12, gpt.cfg.context_length).unwrap();
        let new: Vec<u32> = Vec::<i64>::try_from(out.get(0)).unwrap()[prompt.len()..]
            .iter()
            .map(|&id| id as u32)
            .take_while(|id| !tokenizer.stop_ids().contains(id))
            .collect();
        assert_eq!(response, tokenizer.decode_lossy(&new).unwrap().trim(), "{family}");
    }
}
