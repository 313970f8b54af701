//! The mini-GPT walk-through at small settings: it learns, saves a checkpoint with its
//! vocabulary, resumes exactly, and generates from the checkpoint.

use ch21_advanced::minigpt::{self, MiniGptOptions, TokenizerChoice};
use shared::app::cli::RunContext;
use shared::core::device::global_rng_lock;
use shared::data::TINY_SHAKESPEARE;
use shared::generate::{Decoding, Sampler, Sampling};

fn text() -> String {
    let full = RunContext::for_tests().data.read_to_string(&TINY_SHAKESPEARE).unwrap();
    full.chars().take(20_000).collect()
}

fn small(iters: usize) -> MiniGptOptions {
    MiniGptOptions {
        n_layers: 2,
        n_heads: 2,
        emb_dim: 32,
        block_size: 16,
        batch_size: 8,
        iters,
        eval_interval: 20,
        eval_iters: 4,
        final_eval_batches: 10,
        warmup_steps: 5,
        peak_lr: 3e-3,
        verbose: false,
        ..MiniGptOptions::default()
    }
}

fn context(dir: &std::path::Path) -> RunContext {
    RunContext { out_dir: dir.to_path_buf(), ..RunContext::for_tests() }
}

#[test]
fn the_mini_gpt_learns_and_its_checkpoint_resumes_exactly() {
    let _rng = global_rng_lock();
    let (full_dir, part_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let text = text();
    let full = minigpt::run(&context(full_dir.path()), &text, &small(60)).unwrap();
    let (first, last) = (&full.history.evaluations[0], full.history.evaluations.last().unwrap());
    assert!(last.val_loss < first.val_loss - 0.5, "{first} -> {last}");
    assert_eq!(full.config.vocab_size as usize, text.chars().collect::<std::collections::BTreeSet<_>>().len());
    assert!(!full.config.tie_embeddings && full.config.bias && full.history.samples.len() == 3, "the defaults");
    assert!(full.metrics.is_file() && full.plot.is_file() && full.checkpoint.is_file());

    // 40 steps of the same schedule, then 20 more from the checkpoint: the 60-step run's losses.
    let first_part = MiniGptOptions { decay_steps: Some(60), ..small(40) };
    let part = minigpt::run(&context(part_dir.path()), &text, &first_part).unwrap();
    let resumed_options = MiniGptOptions { resume: Some(part.checkpoint.clone()), ..small(60) };
    let resumed = minigpt::run(&context(part_dir.path()), &text, &resumed_options).unwrap();
    assert_eq!(resumed.history.evaluations, full.history.evaluations[2..]);
    assert_eq!(resumed.final_val_loss, full.final_val_loss);
    let err = minigpt::run(&context(part_dir.path()), &text, &resumed_options).unwrap_err().to_string();
    assert!(err.contains("already ran 60 of the 60 steps"), "{err}");

    // The checkpoint generates with its own character vocabulary.
    let mut greedy = Decoding::Sample(Sampler::new(&Sampling::GREEDY).unwrap());
    let sample =
        minigpt::generate(&full.checkpoint, "ROMEO:", 30, &mut greedy, false, &RunContext::for_tests()).unwrap();
    assert!(sample.starts_with("ROMEO:") && sample.chars().count() == 36, "{sample:?}");
    // Beam search of width 1 is the same greedy decoding.
    let mut beam = Decoding::Beam(shared::generate::beam::BeamSearch::new(1));
    let beamed = minigpt::generate(&full.checkpoint, "ROMEO:", 30, &mut beam, false, &RunContext::for_tests()).unwrap();
    assert_eq!(beamed, sample);
}

#[test]
fn other_tokenizers_and_bad_settings() {
    let _rng = global_rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let word = MiniGptOptions { tokenizer: TokenizerChoice::Word, ..small(20) };
    let report = minigpt::run(&context(dir.path()), &text(), &word).unwrap();
    assert_eq!(report.config.tokenizer.name(), "word");
    let bad = MiniGptOptions { iters: 30, ..small(30) };
    let err = minigpt::run(&context(dir.path()), &text(), &bad).unwrap_err().to_string();
    assert!(err.contains("multiple of --eval-interval"), "{err}");
    let err = minigpt::run(&context(dir.path()), "too short", &small(20)).unwrap_err();
    assert!(format!("{err:#}").contains("too few for windows"), "{err:#}");
}
