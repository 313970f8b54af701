//! Chapter 21's exercises, and the README rows that list them.

use ch21_advanced::exercises::{
    self, foundations::ex21_1, foundations::ex21_10, foundations::ex21_11, foundations::ex21_12, foundations::ex21_13,
    foundations::ex21_14, foundations::ex21_15, foundations::ex21_16, foundations::ex21_2, foundations::ex21_3,
    foundations::ex21_4, foundations::ex21_5, foundations::ex21_6, foundations::ex21_7, foundations::ex21_8,
    foundations::ex21_9,
};
use shared::app::cli::RunContext;

#[test]
fn exercise_21_8_reads_the_cache_sizes_off_real_caches() {
    let result = ex21_8::run().unwrap();
    let f32_batch1 = &result.caches[0];
    assert_eq!((f32_batch1.dtype.as_str(), f32_batch1.batch, f32_batch1.bytes), ("float32", 1, 75_497_472));
    for cache in &result.caches {
        assert_eq!(cache.bytes, cache.formula_bytes, "{cache:?}");
    }
    assert_eq!(result.caches[3].bytes, 8 * 75_497_472 / 2, "float16, batch 8");
    // The sums against closed forms: sum of L^2 and of L over the sequence lengths.
    let cfg = ex21_8::config();
    let per = 4 * 12 * 12 * 64;
    let squares = |n: i64| n * (n + 1) * (2 * n + 1) / 6;
    assert_eq!(result.flops_without_cache, per * (squares(767) - squares(255)));
    let with = per * 256 * 256 + per * ((257..=767).sum::<i64>());
    assert_eq!(result.flops_with_cache, with);
    assert_eq!(ex21_8::attention_flops(&cfg, 1, 10), per * 10);
}

#[test]
fn exercise_21_9_computes_the_perplexities() {
    let result = ex21_9::run();
    assert!((result.loss_nats - 3.2189).abs() < 1e-4);
    assert!((result.uniform_loss - 50_000f64.ln()).abs() < 1e-4, "{}", result.uniform_loss);
    assert!((result.uniform_perplexity - 50_000.0).abs() < 5.0, "{}", result.uniform_perplexity);
}

#[test]
fn exercise_21_5_counts_the_saving_and_trains_both() {
    let dir = tempfile::tempdir().unwrap();
    let context = RunContext { out_dir: dir.path().to_path_buf(), ..RunContext::for_tests() };
    let result = {
        let _rng = shared::core::device::global_rng_lock();
        ex21_5::run(&context, 20).unwrap()
    };
    assert_eq!(result.saved, 50_257 * 768);
    assert_eq!(result.untied, 163_009_536);
    let text: String = ch21_advanced::minigpt::corpus(&context).unwrap().chars().take(200_000).collect();
    let vocab = text.chars().collect::<std::collections::BTreeSet<_>>().len() as i64;
    let [(true, tied, tied_loss), (false, untied, untied_loss)] = result.runs[..] else { panic!("{:?}", result.runs) };
    assert_eq!(untied - tied, vocab * 64, "the head's own matrix");
    assert!(tied_loss < 4.0 && untied_loss < 4.0, "both learned something: {tied_loss} {untied_loss}");
}

#[test]
fn exercise_21_12_equals_the_shared_attention_with_one_head() {
    let result = ex21_12::run(7).unwrap();
    assert_eq!(result.above_diagonal, 0.0);
    assert!(result.row_sum_error < 1e-6);
    // The same projections in the book's MultiHeadAttention (one head, identity output).
    let _rng = shared::core::device::global_rng_lock();
    tch::manual_seed(11);
    let ours = ex21_12::SingleHeadAttention::new(8, 4);
    let x = tch::Tensor::randn([2, 5, 8], (tch::Kind::Float, tch::Device::Cpu));
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let mha = shared::model::attention::MultiHeadAttention::new(vs.root(), 8, 4, 5, 0.0, 1, false).unwrap();
    tch::no_grad(|| {
        mha.w_query.ws().shallow_clone().copy_(&ours.w_q.tr());
        mha.w_key.ws().shallow_clone().copy_(&ours.w_k.tr());
        mha.w_value.ws().shallow_clone().copy_(&ours.w_v.tr());
        mha.out_proj.ws().shallow_clone().copy_(&tch::Tensor::eye(4, (tch::Kind::Float, tch::Device::Cpu)));
        let _ = mha.out_proj.bias.as_ref().unwrap().shallow_clone().zero_();
    });
    let (output, _) = ours.forward(&x);
    assert!(output.allclose(&mha.forward_t(&x, false), 1e-5, 1e-6, false));
}

#[test]
fn exercise_21_6_temperature_and_entropy() {
    let dir = tempfile::tempdir().unwrap();
    let result = ex21_6::run(&RunContext { out_dir: dir.path().to_path_buf(), ..RunContext::for_tests() }).unwrap();
    // softmax(z / 1) by hand
    let exps: Vec<f64> = ex21_6::LOGITS.iter().map(|&z| f64::from(z).exp()).collect();
    let total: f64 = exps.iter().sum();
    for (p, e) in result.rows[1].probabilities.iter().zip(&exps) {
        assert!((p - e / total).abs() < 1e-6);
    }
    let entropies: Vec<f64> = result.rows.iter().map(|r| r.entropy).collect();
    assert!(entropies.windows(2).all(|w| w[0] < w[1]), "hotter is flatter: {entropies:?}");
    assert!((result.uniform_entropy - 4f64.ln()).abs() < 1e-12);
    let at = ex21_6::at(result.near_uniform_tau);
    assert!((at.entropy - 0.99 * 4f64.ln()).abs() < 1e-4, "the bisection found the 1 % point");
    assert!(ex21_6::at(result.near_uniform_tau * 0.9).entropy < 0.99 * 4f64.ln());
    assert!(result.cold.probabilities[0] > 0.999 && (result.hot.entropy - 4f64.ln()).abs() < 1e-5);
    assert!(result.figure.is_file());
}

#[test]
fn exercise_21_7_truncation_sets() {
    let result = ex21_7::run().unwrap();
    assert_eq!(result.top_k.kept, [0, 1, 2]);
    for (p, want) in result.top_k.renormalised.iter().zip([0.35 / 0.7, 0.2 / 0.7, 0.15 / 0.7]) {
        assert!((p - want).abs() < 1e-6);
    }
    assert_eq!(result.top_p.kept, [0, 1, 2, 3, 4, 5], "0.88 after five tokens, 0.93 after six");
    assert!((result.top_p.renormalised[0] - 0.35 / 0.93).abs() < 1e-6);
    assert_eq!(result.peaked_top_k.kept.len(), 5);
    assert!(result.peaked_top_k.renormalised[1..].iter().all(|&p| p < 0.013));
    assert_eq!(result.peaked_top_p.kept, [0]);
}

#[test]
fn exercise_21_11_masks_the_future() {
    let result = ex21_11::run(123).unwrap();
    let shared_mask = shared::model::attention::causal_mask(4, tch::Device::Cpu);
    let flat: Vec<bool> = result.mask.concat();
    assert_eq!(flat, Vec::<bool>::try_from(shared_mask.view([-1])).unwrap());
    assert_eq!(result.future_weight, 0.0);
    assert!(result.row_sums.iter().all(|s| (s - 1.0).abs() < 1e-6));
    assert!(result.weights_before[0][1] > 0.0, "unmasked, the first token sees the second");
    assert_eq!(result.weights_after[0][0], 1.0);
}

/// Every exercise has a README row whose id links to its file.
#[test]
fn every_exercise_has_a_readme_row_linking_to_its_file() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(crate_dir.join("README.md")).unwrap();
    for exercise in exercises::ALL {
        let start = format!("| [{}](", exercise.id);
        let row = readme.lines().find(|line| line.starts_with(&start));
        let row = row.unwrap_or_else(|| panic!("no README row for {}", exercise.id));
        let path = &row[start.len()..row.find(") |").unwrap()];
        let file = format!("/ex{}.rs", exercise.id.replace('.', "_"));
        assert!(path.ends_with(&file) && crate_dir.join(path).is_file(), "{} links to {path}", exercise.id);
    }
}

#[test]
fn exercise_21_13_draws_follow_the_target_distributions() {
    use ex21_13::{distribution, draw, Setting};
    let dir = tempfile::tempdir().unwrap();
    let context = RunContext { out_dir: dir.path().to_path_buf(), ..RunContext::for_tests() };
    let result = {
        let _rng = shared::core::device::global_rng_lock();
        ex21_13::run(&context, 1000).unwrap()
    };
    for h in &result.histograms {
        assert_eq!(h.counts.iter().sum::<usize>(), 1000);
        assert!(h.chi_square < h.critical, "{h:?}");
        // The exact distribution, computed independently: softmax(z / tau) over the top k.
        let z: Vec<f64> = ex21_13::LOGITS.iter().map(|z| z / h.setting.temperature).collect();
        let mut order: Vec<usize> = (0..z.len()).collect();
        order.sort_by(|&a, &b| z[b].partial_cmp(&z[a]).unwrap());
        let keep = &order[..h.setting.top_k.unwrap_or(z.len())];
        let total: f64 = keep.iter().map(|&i| z[i].exp()).sum();
        for (i, e) in h.expected.iter().enumerate() {
            let want = if keep.contains(&i) { z[i].exp() / total } else { 0.0 };
            assert!((e - want).abs() < 1e-12, "{i}: {e} vs {want}");
            if want == 0.0 {
                assert_eq!(h.counts[i], 0, "top-k never draws a masked id");
            }
        }
    }
    // A sampler that ignored the temperature would fail the test at tau 0.5.
    let wrong = distribution(&ex21_13::LOGITS, Setting { temperature: 1.0, top_k: None }).unwrap();
    let cold = &result.histograms[0];
    let chi: f64 = wrong.iter().zip(&cold.counts).map(|(p, &c)| (c as f64 - 1000.0 * p).powi(2) / (1000.0 * p)).sum();
    assert!(chi > cold.critical, "{chi}");
    assert!(result.figure.exists());
    assert_eq!(draw(&[0.0, 0.5, 0.5], 0.0), 1);
    assert_eq!(draw(&[0.0, 0.5, 0.5], 0.999_999_999), 2);
    assert!(distribution(&[1.0], Setting { temperature: 0.0, top_k: None }).is_err());
}

#[test]
fn exercise_21_14_matches_the_shared_top_p() {
    let result = ex21_14::run(300).unwrap();
    assert_eq!(result.comparison.different_sets, 0, "{:?}", result.comparison);
    assert!(result.comparison.max_probability_difference < 1e-5, "{:?}", result.comparison);
    // The example: 0.9 of the mass needs the five most likely of the eight ids.
    let n = &result.example;
    assert_eq!(n.order[..5], [0, 4, 1, 7, 2]);
    assert_eq!(n.kept, 5);
    assert!(n.cumulative[3] < 0.9 && n.cumulative[4] >= 0.9);
    assert!((n.probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    // Ties at the cutoff keep the later ids, as the shared processor does.
    let tied = ex21_14::nucleus(&[0.0; 4], 0.5).unwrap();
    assert_eq!(tied.probabilities, [0.0, 0.0, 0.5, 0.5]);
    assert_eq!(ex21_14::shared_top_p(&[0.0; 4], 0.5), [0.0, 0.0, 0.5, 0.5]);
    assert_eq!(ex21_14::nucleus(&[3.0, 1.0], 0.001).unwrap().kept, 1);
    assert_eq!(ex21_14::nucleus(&[3.0, -60.0], 1.0).unwrap().kept, 2);
    assert!(ex21_14::nucleus(&[1.0], 0.0).is_err());
    // Inverting the cumulative distribution of the nucleus: u below the first share draws id 2.
    assert_eq!(ex21_14::sample(&[0.0; 4], 0.5, 0.25).unwrap(), 2);
    assert_eq!(ex21_14::sample(&[0.0; 4], 0.5, 0.75).unwrap(), 3);
}

#[test]
fn exercise_21_16_cached_generation_gives_the_same_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let context = RunContext { out_dir: dir.path().to_path_buf(), ..RunContext::for_tests() };
    let result = ex21_16::run(&context, &[8, 24]).unwrap();
    for t in &result.timings {
        assert!(t.same_tokens, "{t:?}");
        assert!(t.speedup.is_finite() && t.speedup > 0.0);
    }
    assert!(result.figure.exists());
    assert!(ex21_16::run(&context, &[2000]).is_err(), "past the context");
}

fn context_in(dir: &tempfile::TempDir) -> RunContext {
    RunContext { out_dir: dir.path().to_path_buf(), ..RunContext::for_tests() }
}

#[test]
fn exercise_21_1_sums_the_conditionals() {
    let dir = tempfile::tempdir().unwrap();
    let result = {
        let _rng = shared::core::device::global_rng_lock();
        ex21_1::run(&context_in(&dir), 30).unwrap()
    };
    assert_eq!(result.word_conditionals, 6);
    assert_eq!(result.terms[2].conditional, "P(sat | The cat)");
    assert_eq!(result.char_conditionals, "The cat sat on the mat".len());
    let chars: usize = result.terms.iter().map(|t| t.char_log_probs.len()).sum();
    assert_eq!(chars, result.char_conditionals, "every character belongs to one word");
    assert!(result.terms.iter().all(|t| t.log_prob < 0.0));
    // The per-character terms add up to the loss the training code computes.
    assert!((result.joint_log_prob - result.joint_from_loss).abs() < 1e-3, "{result:?}");
    // Better than uniform over the 65 characters after a little training.
    assert!(result.joint_log_prob > -(65f64.ln()) * 22.0);
}

#[test]
fn exercise_21_2_mask_row_sums_and_the_bidirectional_model() {
    let mask = ex21_2::mask(8);
    assert!(mask[0][1] && !mask[7][0] && !mask[3][3]);
    assert_eq!(mask.concat().iter().filter(|b| !**b).count(), 36, "8 * 9 / 2 visible pairs");
    let dir = tempfile::tempdir().unwrap();
    let result = {
        let _rng = shared::core::device::global_rng_lock();
        ex21_2::run(&context_in(&dir), 100).unwrap()
    };
    assert_eq!((result.weights_zero_based, result.weights_one_based), (6, 5));
    assert!(result.max_row_sum_error < 1e-5 && result.rows_checked == 2 * 4 * 32, "{result:?}"); // layers x heads x rows
    let [causal, bidirectional] = &result.runs[..] else { panic!() };
    assert!(bidirectional.train_loss < causal.train_loss, "{result:?}");
    assert!(bidirectional.causal_val_loss > causal.causal_val_loss, "{result:?}");
    assert!(causal.sample.starts_with("ROMEO:"));
}

#[test]
fn exercise_21_3_counts_every_model_from_its_configuration() {
    let result = ex21_3::run();
    let computed: Vec<i64> = result.rows.iter().map(|r| r.computed_parameters).collect();
    // GPT-2 small (tied, with QKV biases): the released checkpoint's 124,439,808 parameters.
    assert_eq!(computed[1], 124_439_808);
    assert_eq!(result.rows[1].head_size, 64);
    assert_eq!(result.rows[5].head_size, 128);
    for row in &result.rows {
        assert!(row.difference.abs() < 0.07, "{} is {:+.3} off", row.model.name, row.difference);
    }
    assert!(computed[5] > 174_000_000_000 && computed[5] < 176_000_000_000);
}

#[test]
fn exercise_21_4_gradient_norms_and_training_in_both_placements() {
    let dir = tempfile::tempdir().unwrap();
    let result = {
        let _rng = shared::core::device::global_rng_lock();
        ex21_4::run(&context_in(&dir), 8, 10).unwrap()
    };
    let [pre, post] = &result.placements[..] else { panic!() };
    for p in [pre, post] {
        assert_eq!(p.layer_grad_norms.len(), 8);
        assert!(p.layer_grad_norms.iter().all(|g| g.is_finite() && *g > 0.0), "{p:?}");
        assert!(!p.train_losses.is_empty());
    }
    let spread = |g: &[f64]| g.iter().cloned().fold(f64::MIN, f64::max) / g.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread(&post.layer_grad_norms) > spread(&pre.layer_grad_norms), "{pre:?} {post:?}");
    assert!(result.figure.exists());
}

#[test]
fn exercise_21_10_dependencies_follow_the_masks() {
    let result = ex21_10::run().unwrap();
    let [causal, bidirectional, prefix] = &result.masks[..] else { panic!() };
    for i in 0..6 {
        for j in 0..6 {
            assert_eq!(causal.depends[i][j], j <= i, "causal {i} {j}");
            assert!(bidirectional.depends[i][j], "bidirectional {i} {j}");
            assert_eq!(prefix.depends[i][j], j <= i || j < 3, "prefix {i} {j}");
        }
    }
    assert_eq!((causal.see_everything, bidirectional.see_everything, prefix.see_everything), (1, 6, 1));
}

#[test]
fn exercise_21_15_reports_losses_and_samples_per_round() {
    let dir = tempfile::tempdir().unwrap();
    let context = context_in(&dir);
    let text: String = ch21_advanced::minigpt::corpus(&context).unwrap().chars().take(20_000).collect();
    let options = ch21_advanced::minigpt::MiniGptOptions {
        iters: 30,
        eval_interval: 10,
        eval_iters: 2,
        samples: true,
        ..ch21_advanced::minigpt::MiniGptOptions::small(30)
    };
    let result = {
        let _rng = shared::core::device::global_rng_lock();
        ex21_15::run(&context, &text, &options).unwrap()
    };
    assert_eq!(result.samples.iter().map(|s| s.after_steps).collect::<Vec<_>>(), [10, 20, 30]);
    assert!(result.samples.iter().all(|s| s.text.starts_with("ROMEO:")));
    assert!(result.evaluations.len() >= 3);
    assert!(result.evaluations.last().unwrap().train_loss < result.evaluations[0].train_loss);
    assert!(result.loss_curve.exists() && result.checkpoint.exists());
}
