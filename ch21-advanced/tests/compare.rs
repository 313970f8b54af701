//! `compare`'s studies on small settings.

use ch21_advanced::compare::{self, Comparison, CopyTask, StreamMode, Study};
use ch21_advanced::minigpt::{self, MiniGptOptions};
use shared::app::cli::RunContext;
use shared::app::model_source::ModelSource;
use shared::model::attention::AttentionMask;
use tch::{Device, Tensor};

fn small() -> MiniGptOptions {
    MiniGptOptions {
        n_layers: 1,
        emb_dim: 32,
        block_size: 16,
        batch_size: 4,
        iters: 4,
        eval_interval: 2,
        eval_iters: 2,
        final_eval_batches: 2,
        warmup_steps: 0,
        samples: false,
        verbose: false,
        ..MiniGptOptions::default()
    }
}

/// `study` on the small settings and the first 20,000 characters, in `dir`.
fn run(study: Study, dir: &tempfile::TempDir) -> Comparison {
    let context = RunContext { out_dir: dir.path().to_path_buf(), ..RunContext::for_tests() };
    let text: String = minigpt::corpus(&context).unwrap().chars().take(20_000).collect();
    let _rng = shared::core::device::global_rng_lock();
    let result = compare::run(&context, &text, study, &small()).unwrap();
    assert!(result.charts.iter().all(|chart| chart.is_file()), "{:?}", result.charts);
    assert!(result.rows.iter().all(|row| row.measurements.len() == result.columns.len()));
    result
}

#[test]
fn gqa_shrinks_the_cache_and_the_key_value_weights() {
    let dir = tempfile::tempdir().unwrap();
    let result = run(Study::Gqa, &dir);
    let kv_heads = [8, 4, 2, 1];
    let head_dim = 32 / 8;
    for (row, kv) in result.rows.iter().zip(kv_heads) {
        // 1 layer x (key + value) x KV heads x head size x 4 bytes.
        assert_eq!(row.kv_cache_bytes_per_token, 2 * kv * head_dim * 4, "{row:?}");
        // Each KV head fewer removes a key and a value projection of 32 x 4 weights.
        assert_eq!(result.rows[0].parameters - row.parameters, (8 - kv) * 2 * 32 * head_dim, "{row:?}");
        assert!(row.final_val_loss.is_finite() && row.measurements[0] > Some(0.0) && row.curve.len() == 2, "{row:?}");
    }
    assert!(result.notes[0].contains("75497472 bytes (72 MiB)"), "GPT-2 small's cache: {:?}", result.notes);
    assert!(result.notes[3].contains("6291456"), "{:?}", result.notes);
}

#[test]
fn rope_and_nope_run_past_the_trained_length_and_learned_positions_say_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let result = run(Study::Rope, &dir);
    let [learned, rope, nope] = &result.rows[..] else { panic!("three variants") };
    assert!(learned.measurements[0].is_some_and(f64::is_finite));
    assert_eq!(learned.measurements[1..], [None, None]);
    for row in [rope, nope] {
        assert!(row.measurements.iter().all(|m| m.is_some_and(|loss| loss.is_finite() && loss > 0.0)), "{row:?}");
    }
    let notes = result.notes.join("\n");
    assert!(notes.contains("p=1: (0.540, 0.841)"), "cos 1, sin 1: {notes}");
    assert!(
        notes.contains("not measurable at 2x and 4x") && notes.contains("more than the model's context length of 16")
    );
    // The scores after shifting every position agree to float rounding (below 1e-4 of the largest).
    let shift = notes.split("at most ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap();
    assert!(shift.parse::<f64>().unwrap() < 1e-4, "{notes}");
}

#[test]
fn window_costs_and_the_copy_tasks_reach() {
    // 4 queries, window 2: 1 + 2 + 2 + 2 visible pairs; 4 x 7 x 8 wide FLOPs for 2 heads of 4.
    let cost = compare::attention_cost(4, 2, 2, 4);
    assert_eq!((cost.visible_pairs, cost.score_bytes, cost.flops), (7, 2 * 7 * 4, 4 * 7 * 8));
    assert_eq!(compare::attention_cost(64, 64, 1, 1).visible_pairs, 64 * 65 / 2);

    let dir = tempfile::tempdir().unwrap();
    let result = run(Study::Window, &dir);
    let names: Vec<&str> = result.rows.iter().map(|r| r.variant.as_str()).collect();
    assert_eq!(names, ["window 2", "window 4", "window 8", "window 16 (full causal)"]);
    let kib: Vec<f64> = result.rows.iter().map(|r| r.measurements[0].unwrap()).collect();
    assert!(kib.windows(2).all(|w| w[0] < w[1]), "{kib:?}");
    assert!(result.notes.iter().any(|n| n.starts_with("| 3 | 21 |")), "{:?}", result.notes);

    // One layer with a window of 4 reads 3 positions back: period 4 is copied, period 6 is not.
    let _rng = shared::core::device::global_rng_lock();
    let task = |distance| CopyTask { vocab: 16, length: 16, distance, layers: 1, window: 4, steps: 150 };
    let within = compare::copy_task(&task(4), Device::Cpu, 1).unwrap();
    let beyond = compare::copy_task(&task(6), Device::Cpu, 1).unwrap();
    assert!(within > 0.9 && beyond < 0.2, "within reach {within}, beyond {beyond}");
}

#[test]
fn streaming_numbers_positions_inside_the_cache_and_sinks_are_measured() {
    let dir = tempfile::tempdir().unwrap();
    let result = run(Study::Sinks, &dir);
    for row in &result.rows {
        let mass = row.measurements[0].unwrap();
        assert!((0.0..=1.0).contains(&mass), "{row:?}");
        assert!(row.measurements[1..].iter().all(|ppl| ppl.is_some_and(|p| p > 1.0 && p.is_finite())), "{row:?}");
    }
    // The small model has one layer, so a key depends on its token alone: window attention
    // numbered inside the cache is then recomputation over the window exactly, at every
    // position, evictions included. Sinks agree until the cache is full, then keep other keys.
    let model = ModelSource::checkpoint(dir.path().join("compare-sinks-0/minigpt.safetensors"))
        .load(Device::Cpu, 1)
        .unwrap()
        .model;
    assert_eq!((model.cfg.n_layers, model.cfg.context_length), (1, 16));
    let tokens: Vec<i64> = (0..40).map(|i| (i * 7) % model.cfg.vocab_size).collect();
    let [window, sinks, recompute] = StreamMode::ALL.map(|mode| compare::stream(&model, &tokens, mode).unwrap());
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4);
    assert_eq!((window.losses.len(), sinks.losses.len()), (39, 39));
    assert!(close(&window.losses, &recompute.losses));
    assert!(close(&sinks.losses[..15], &recompute.losses[..15]));
    assert!(!close(&sinks.losses[16..], &recompute.losses[16..]));
    // So greedy generation through a window cache, far past the context, is greedy
    // generation by recomputation over the window.
    let streamed = compare::generate_streaming(&model, &tokens[..5], 40, 0).unwrap();
    let mut recomputed = tokens[..5].to_vec();
    for _ in 0..40 {
        let window = &recomputed[recomputed.len().saturating_sub(16)..];
        let logits = model.forward_t(&Tensor::from_slice(window).view([1, -1]), false);
        recomputed.push(logits.select(1, -1).argmax(-1, false).int64_value(&[0]));
    }
    assert_eq!(streamed, recomputed[5..]);
}

#[test]
fn prefix_lm_sees_its_prompt_both_ways_and_is_scored_on_the_completion() {
    let dir = tempfile::tempdir().unwrap();
    let result = run(Study::Prefix, &dir);
    assert_eq!(result.rows.len(), 3);
    assert!(result.rows.iter().all(|r| r.measurements[0].is_some_and(|loss| loss.is_finite() && loss > 0.0)));
    assert!(result.notes.iter().any(|n| n.contains("prefix LM, loss on the completion: \"")), "{:?}", result.notes);
    let load = |i| {
        ModelSource::checkpoint(dir.path().join(format!("compare-prefix-{i}/minigpt.safetensors")))
            .load(Device::Cpu, 1)
            .unwrap()
            .model
    };
    let (causal, prefix) = (load(1), load(2));
    assert_eq!(prefix.cfg.attention_mask, AttentionMask::Prefix(8));
    // Changing prompt token 5 changes the prefix LM's output at position 2 (it sees the whole
    // prompt), not the causal model's; neither output at position 7 sees the completion token 8.
    let tokens = Tensor::from_slice(&(0..16i64).map(|i| i % 10).collect::<Vec<_>>()).view([1, 16]);
    let changed = |at: i64| {
        let other = tokens.copy();
        let _ = other.narrow(1, at, 1).fill_(11);
        other
    };
    let moves = |model: &shared::model::GptModel, at: i64, position: i64| {
        let before = model.forward_t(&tokens, false).select(1, position);
        let after = model.forward_t(&changed(at), false).select(1, position);
        !before.allclose(&after, 1e-6, 1e-6, false)
    };
    assert!(moves(&prefix, 5, 2) && !moves(&causal, 5, 2));
    assert!(!moves(&prefix, 8, 7) && !moves(&causal, 8, 7));
}

#[test]
fn multi_token_heads_draft_and_decoding_stays_greedy() {
    let dir = tempfile::tempdir().unwrap();
    let result = run(Study::Mtp, &dir);
    let heads = [1, 2, 4, 8];
    for (row, heads) in result.rows.iter().zip(heads) {
        // Each extra head is one more 32 x vocabulary projection.
        let vocabulary = (result.rows[1].parameters - result.rows[0].parameters) / 32;
        assert_eq!(row.parameters - result.rows[0].parameters, (heads - 1) * 32 * vocabulary, "{row:?}");
        let per_pass = row.measurements[0].unwrap();
        assert!((1.0..=heads as f64).contains(&per_pass), "{row:?}");
        assert!(row.measurements[1].unwrap() > 0.0);
    }
    assert_eq!(result.rows[0].measurements[0], Some(1.0));
    let identical = result.notes.iter().filter(|n| n.contains("for 8 of 8 prompts")).count();
    assert_eq!(identical, 4, "{:?}", result.notes);
}
