//! The analysis exercises (21.17-21.24) on the two kinds of model they study: a tiny model
//! pretrained here (the project's recipe at test size) and the tiny Hugging Face GPT-2
//! fixture loaded as `--weights` would load it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ch21_advanced::exercises::analysis::ex21_17::{self, uniform_attention, Attention};
use ch21_advanced::exercises::{
    analysis::ex21_20, analysis::ex21_21, analysis::ex21_22, analysis::ex21_23, analysis::ex21_24,
};
use ch21_advanced::models::{self, Model, ModelFlags};
use ch21_advanced::pretrained::Pretraining;
use ch21_advanced::quality::token_log_probs;
use shared::app::cli::RunContext;
use shared::core::device::global_rng_lock;
use shared::model::positions::sinusoidal_table;
use tch::{Device, Kind, Tensor};

fn context() -> RunContext {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    RunContext { out_dir: dir.path().to_path_buf(), ..RunContext::for_tests() }
}

fn fixture() -> PathBuf {
    shared::workspace_root().join("shared/tests/fixtures/gpt2-tiny-hf")
}

/// The tiny pretrained model (trained once, then read from the output folder) and the
/// fixture; callers hold the RNG lock.
fn both_models() -> [Model; 2] {
    let pretrained = Pretraining::tiny(30).model(&context()).unwrap();
    let flags = ModelFlags { weights: Some(fixture().display().to_string()), ..ModelFlags::default() };
    let gpt2 = models::from_flags(&context(), &flags).unwrap().unwrap();
    assert!(pretrained.name.starts_with("the project's pretrained GPT (2 layers"), "{}", pretrained.name);
    assert!(gpt2.name.starts_with("GPT-2 weights"), "{}", gpt2.name);
    [pretrained, gpt2]
}

/// The committed tiny Llama 3, Qwen3 and Gemma 3 checkpoints, loaded as `--weights DIR`.
fn family_models() -> Vec<Model> {
    ["llama", "qwen3", "gemma3"]
        .iter()
        .map(|family| {
            let dir = shared::workspace_root().join("shared/tests/fixtures/hf").join(family);
            let flags = ModelFlags { weights: Some(dir.display().to_string()), ..ModelFlags::default() };
            models::from_flags(&context(), &flags).unwrap().unwrap()
        })
        .collect()
}

/// The models every analysis runs on: [`both_models`] and [`family_models`].
fn all_models() -> Vec<Model> {
    both_models().into_iter().chain(family_models()).collect()
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|_| panic!("{} was not written", path.display()));
    assert!(bytes.starts_with(b"\x89PNG"), "{} is not a PNG", path.display());
}

/// Attention that goes entirely to `key(query)`.
fn pointing(tokens: usize, key: impl Fn(usize) -> usize) -> Attention {
    (0..tokens).map(|q| (0..tokens).map(|k| if k == key(q) { 1.0 } else { 0.0 }).collect()).collect()
}

#[test]
fn head_scores_measure_what_they_name() {
    let previous = pointing(6, |q| q.saturating_sub(1));
    assert_eq!(ex21_17::previous_token_score(&previous), 1.0);
    assert_eq!(ex21_17::first_token_score(&previous), 1.0 / 5.0, "only query 1's previous token is the first");
    let first = pointing(6, |_| 0);
    assert_eq!((ex21_17::first_token_score(&first), ex21_17::previous_token_score(&first)), (1.0, 0.2));
    // Uniform attention: query t gives 1 / (t + 1) to each visible token.
    let even = uniform_attention(4);
    let expected = (1.0 / 2.0 + 1.0 / 3.0 + 1.0 / 4.0) / 3.0;
    assert!((ex21_17::previous_token_score(&even) - expected).abs() < 1e-12);
    // Punctuation at 2: queries 2 and 3 see it, with 1/3 and 1/4 of their attention.
    let punctuation = [false, false, true, false];
    assert!((ex21_17::punctuation_score(&even, &punctuation) - (1.0 / 3.0 + 1.0 / 4.0) / 2.0).abs() < 1e-12);
    // Prefix 1, then 3 tokens twice: the repeat's query 4 + j looks at 2 + j in an induction head.
    let induction = pointing(7, |q| if q >= 4 { q - 2 } else { 0 });
    assert_eq!(ex21_17::induction_score(&induction, 1, 3), 1.0);
    assert_eq!(ex21_17::induction_score(&pointing(7, |q| q.saturating_sub(1)), 1, 3), 0.0);
    assert_eq!(ex21_17::spread(12, 4), [0, 4, 7, 11]);
    assert_eq!(ex21_17::spread(2, 4), [0, 1]);
}

#[test]
fn exercise_21_17_draws_and_scores_every_head() {
    let _rng = global_rng_lock();
    for model in all_models() {
        let result = ex21_17::run(&context(), &model).unwrap();
        let cfg = &model.gpt().cfg;
        assert_eq!(result.model, model.name);
        assert_eq!(result.sentences.len(), ex21_17::SENTENCES.len());
        for sentence in &result.sentences {
            assert_png(&sentence.figure);
            assert!(sentence.tokens.len() <= cfg.context_length as usize);
        }
        assert_png(&result.scores_figure);
        for kind in &result.scores {
            assert_eq!((kind.scores.len(), kind.scores[0].len()), (cfg.n_layers as usize, cfg.n_heads as usize));
            assert!(kind.scores.iter().flatten().all(|s| (0.0..=1.0 + 1e-9).contains(s)), "{kind:?}");
            assert!(kind.top.windows(2).all(|w| w[0].2 >= w[1].2));
            assert_eq!(kind.top[0].2, kind.scores.iter().flatten().copied().fold(f64::MIN, f64::max));
        }
        let r = &result.repetition;
        assert!(r.first_copy_loss.is_finite() && r.second_copy_loss.is_finite() && r.length >= 2);
        assert!(result.to_string().contains(&model.name));
    }
}

#[test]
fn position_analysis_finds_the_structure_it_is_given() {
    // Cosine similarity: 1 on the diagonal; a sinusoidal table's depends on distance alone.
    let similarity = ex21_20::cosine_similarities(&sinusoidal_table(40, 16, Device::Cpu));
    let at = |i: i64, j: i64| similarity.double_value(&[i, j]);
    assert!((0..40).all(|i| (at(i, i) - 1.0).abs() < 1e-5));
    assert!((0..30).all(|i| (at(i, i + 7) - at(0, 7)).abs() < 1e-4));
    // Points on a circle in a rotated plane of 6 dimensions: 2 components hold everything, and
    // the projection keeps the distances.
    let angles = Tensor::arange(24, (Kind::Double, Device::Cpu)) * (std::f64::consts::TAU / 24.0);
    let circle = Tensor::stack(&[angles.cos() * 3.0, angles.sin() * 3.0], 1);
    let (rotation, _) = Tensor::linalg_qr(&Tensor::randn([6, 6], (Kind::Double, Device::Cpu)), "reduced");
    let table = circle.matmul(&rotation.narrow(0, 0, 2)) + 5.0;
    let (projected, explained) = ex21_20::principal_components(&table);
    assert!((explained[0] + explained[1] - 1.0).abs() < 1e-9, "{explained:?}");
    let distance = |x: &Tensor, i: i64, j: i64| (x.get(i) - x.get(j)).norm().double_value(&[]);
    assert!((distance(&projected, 0, 5) - distance(&table, 0, 5)).abs() < 1e-9);
    assert!((ex21_20::pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 7.0]) - 0.9934).abs() < 1e-4);
}

#[test]
fn exercise_21_20_compares_the_learned_table_with_sinusoids() {
    let _rng = global_rng_lock();
    for model in both_models() {
        let result = ex21_20::run(&context(), &model).unwrap();
        assert_eq!(result.positions, model.gpt().cfg.context_length);
        assert_eq!(result.tables.len(), 2);
        for table in &result.tables {
            assert_png(&table.figure);
            assert_eq!(table.similarity_by_distance.len(), (result.positions as f64).log2().ceil() as usize);
            let explained = table.explained_variance;
            assert!(explained[0] >= explained[1] && explained[0] + explained[1] <= 1.0 + 1e-9);
        }
        let sinusoidal = &result.tables[1].similarity_by_distance;
        assert!(sinusoidal[0].1 > sinusoidal.last().unwrap().1, "near positions are more alike: {sinusoidal:?}");
        assert_png(&result.distance_figure);
    }
}

#[test]
fn exercise_21_21_fine_tuning_lowers_the_held_out_perplexity() {
    let _rng = global_rng_lock();
    let default = ex21_21::domain_documents(&context()).unwrap();
    assert_eq!(default.1.len(), 1100, "the instruction data's responses");
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("recipes.txt");
    let recipes: Vec<String> = (0..30)
        .map(|i| {
            format!("Recipe {i}: mix the flour with {} eggs, add sugar, and bake for {} minutes.", i % 4 + 1, 20 + i)
        })
        .collect();
    std::fs::write(&corpus, recipes.join("\n\n")).unwrap();
    let context = RunContext { data: shared::data::DataLocator::from_env(Some(corpus)), ..context() };
    let settings = ex21_21::FineTuning {
        epochs: 2,
        lr: 1e-3,
        batch_size: 4,
        window: 32,
        samples: 2,
        new_tokens: 6,
        old_domain_tokens: 200,
    };
    for model in all_models() {
        let probe: Vec<u32> = (100..120).collect();
        let before = token_log_probs(model.gpt(), &probe).unwrap();
        let result = ex21_21::run(&context, &model, &settings).unwrap();
        assert_eq!((result.train_documents, result.test_documents), (27, 3));
        assert_eq!(result.epochs.len(), 2);
        let p = result.held_out_perplexity;
        assert!(p.after < p.before, "{}: {p:?}", model.name);
        assert_eq!(result.samples.len(), 2);
        assert!(result.samples.iter().all(|s| s.before.starts_with(&s.prompt) && s.after.starts_with(&s.prompt)));
        // The model studied is left as it was (a copy was fine-tuned).
        assert_eq!(token_log_probs(model.gpt(), &probe).unwrap(), before);
    }
}

#[test]
fn exercise_21_22_trains_each_size_and_counts_its_parameters() {
    let _rng = global_rng_lock();
    let study = ex21_22::SizeStudy::tiny();
    let [_, gpt2] = both_models();
    let result = ex21_22::run(&context(), &study, Some(&gpt2)).unwrap();
    assert_eq!(result.rows.len(), 2);
    for row in &result.rows {
        let (dim, context_length) = (row.size.emb_dim, study.block_size);
        // Tied: the token and position tables are all the embedding parameters.
        assert_eq!(row.parameters.embeddings, 50257 * dim + context_length * dim);
        assert!(row.parameters.total > row.parameters.embeddings);
        assert!(row.validation_loss < (50257f64).ln(), "{row:?}");
        assert_eq!(row.curve.len(), 4 * study.epochs);
        assert!(row.seconds_per_epoch > 0.0);
    }
    assert!(result.rows[1].parameters.total > result.rows[0].parameters.total);
    // The reference (`--weights`) is scored on the same validation text.
    let reference = result.reference.as_ref().unwrap();
    assert_eq!(reference.model, gpt2.name);
    assert!(
        reference.parameters.embeddings >= 50257 * 8 && reference.parameters.total > reference.parameters.embeddings
    );
    assert!(reference.validation_perplexity.is_finite() && reference.validation_perplexity > 1.0);
    assert!(result.to_string().contains(&format!("| reference: {}", gpt2.name)));
    assert_png(&result.figure);
}

#[test]
fn exercise_21_23_counts_tokens_under_three_tokenizers() {
    let _rng = global_rng_lock();
    for model in both_models() {
        let result = ex21_23::run(&context(), &model).unwrap();
        let [chars, bpe, words] = &result.rows[..] else { panic!("three rows") };
        assert_eq!(chars.paragraph_tokens, result.paragraph.chars().count());
        assert_eq!(chars.chars_per_token, 1.0);
        assert_eq!(chars.window_chars, model.gpt().cfg.context_length as f64);
        assert!(bpe.out_of_vocabulary.is_empty() && bpe.vocabulary == 50257);
        assert!(bpe.paragraph_tokens < chars.paragraph_tokens && words.paragraph_tokens < bpe.paragraph_tokens);
        assert!(words.out_of_vocabulary.contains(&"Gisburn".to_string()), "{:?}", words.out_of_vocabulary);
        assert_eq!(bpe.relative_output_work, 1.0);
        assert!(result.split_words.iter().any(|(word, pieces)| word == "Gisburn" && pieces.len() >= 3));
    }
}

#[test]
fn the_position_and_tokenizer_analyses_of_rope_models() {
    let _rng = global_rng_lock();
    for model in family_models() {
        // RoPE models have no position table to compare: a clear error.
        let err = ex21_20::run(&context(), &model).unwrap_err().to_string();
        assert!(err.contains(&model.name) && err.contains("no learned position embeddings"), "{err}");
        // The BPE row is the model's own tokenizer's, counted without the BOS it adds.
        let result = ex21_23::run(&context(), &model).unwrap();
        let tokenizer = model.gpt().cfg.tokenizer.build().unwrap();
        let bpe = &result.rows[1];
        assert_eq!(bpe.vocabulary, tokenizer.vocab_size(), "{}", model.name);
        assert_eq!(bpe.paragraph_tokens, tokenizer.encode_fragment(&result.paragraph).unwrap().len());
        assert!(bpe.paragraph_tokens < result.rows[0].paragraph_tokens, "{}", model.name);
        // 21.22's reference must count GPT-2's tokens, as the sizes it trains do.
        let err = ex21_22::run(&context(), &ex21_22::SizeStudy::tiny(), Some(&model)).unwrap_err().to_string();
        assert!(err.contains("cannot be compared") && err.contains("huggingface"), "{err}");
    }
}

#[test]
fn token_kinds_and_sentence_positions() {
    let tokens: Vec<String> = ["The", " king", " is", " dead", ";", " Gis", "burn", " thou", ".", "\n", "Long", "!"]
        .map(String::from)
        .to_vec();
    use ex21_24::TokenKind::*;
    assert_eq!(
        ex21_24::token_kinds(&tokens),
        [
            FunctionWord,
            ContentWord,
            FunctionWord,
            ContentWord,
            Punctuation,
            ContentWord,
            LaterPiece,
            FunctionWord,
            Punctuation,
            LineBreak,
            ContentWord,
            Punctuation
        ]
    );
    let positions =
        [Some(0), Some(1), Some(2), Some(3), Some(4), Some(5), Some(6), Some(7), Some(8), None, Some(0), Some(1)];
    assert_eq!(ex21_24::sentence_positions(&tokens), positions);
}

#[test]
fn exercise_21_24_scores_every_token_of_the_passage() {
    let _rng = global_rng_lock();
    for model in all_models() {
        let result = ex21_24::run(&context(), &model, 400).unwrap();
        let n = result.tokens.len();
        assert_eq!(n + 1, (model.gpt().cfg.context_length as usize).min(400));
        // The losses are the model's own log-probabilities of the passage.
        let tokenizer = model.gpt().cfg.tokenizer.build().unwrap();
        let text = ch21_advanced::analysis::held_out_text(&context()).unwrap();
        let start = text.find("\n\n").unwrap() + 2;
        let ids = tokenizer.encode(&text[start..]).unwrap()[..n + 1].to_vec();
        let idx = Tensor::from_slice(&ids.iter().map(|&id| i64::from(id)).collect::<Vec<_>>()).unsqueeze(0);
        let log_probs = tch::no_grad(|| model.gpt().forward_t(&idx, false).log_softmax(-1, Kind::Double));
        for (i, token) in result.tokens.iter().enumerate() {
            let expected = -log_probs.double_value(&[0, i as i64, i64::from(ids[i + 1])]);
            assert!((token.loss - expected).abs() < 1e-4, "{token:?} against {expected}");
        }
        assert!(result.highest.windows(2).all(|w| w[0].loss >= w[1].loss));
        assert!(result.lowest.windows(2).all(|w| w[0].loss <= w[1].loss));
        assert!(result.highest[0].loss >= result.tokens.iter().map(|t| t.loss).fold(f64::MIN, f64::max));
        // Every scored token is in exactly one group of the kinds, and of the positions unless it
        // is only spaces or line breaks.
        let counted = |t: &&ex21_24::ScoredToken| t.sentence_position.is_some();
        let positioned = result.tokens.iter().filter(counted).count();
        let positioned_mean = result.tokens.iter().filter(counted).map(|t| t.loss).sum::<f64>() / positioned as f64;
        for (groups, count, mean) in
            [(&result.by_position, positioned, positioned_mean), (&result.by_kind, n, result.mean_loss)]
        {
            assert_eq!(groups.iter().map(|g| g.tokens).sum::<usize>(), count);
            let total: f64 = groups.iter().filter(|g| g.tokens > 0).map(|g| g.mean_loss * g.tokens as f64).sum();
            assert!((total / count as f64 - mean).abs() < 1e-9);
        }
        assert_png(&result.figure);
    }
}
