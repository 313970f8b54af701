//! The configurable model's variants (chapter 21's seams): properties that a wrong
//! implementation of positions, masks, key/value heads, norms, heads, caching or checkpoints
//! would break.

use shared::app::model_source::ModelSource;
use shared::core::device::{global_rng_lock, seed_everything};
use shared::data::dataset::{create_dataloader, Batch, LoaderConfig};
use shared::generate::{generate_cached, generate_greedy_cached, generate_text_simple, Decoder, Sampler, Sampling};
use shared::model::attention::{AttentionKernel, AttentionMask};
use shared::model::positions::{PosEncoding, RopeScaling};
use shared::model::{GptConfig, GptModel, LocalAttention, NormPlacement, ParameterCounts};
use shared::nn::{Activation, FeedForwardKind, NormKind};
use shared::tokenizer::{CharTokenizer, Tokenizer};
use shared::train::{
    calc_loss_batch, train_model, AdamW, AdamWConfig, Checkpoint, CheckpointMeta, MultiTokenLoss, StepSchedule,
    TrainHooks, TrainProgress, TrainSettings, TrainingLoss, WarmupCosine,
};
use tch::{nn, Device, Kind, Tensor};

/// The tiny test model (context 16, width 32, 4 heads, 2 layers) with `change` applied.
fn config(change: impl FnOnce(&mut GptConfig)) -> GptConfig {
    let mut cfg = GptConfig { drop_rate: 0.0, ..GptConfig::tiny() };
    change(&mut cfg);
    cfg
}

/// Builds `cfg` from seed 123 (holding the generator lock while drawing).
fn build(cfg: &GptConfig) -> (nn::VarStore, GptModel) {
    let _rng = global_rng_lock();
    seed_everything(123);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = GptModel::new(&vs.root(), cfg).unwrap();
    (vs, model)
}

/// Every variant the issues list, by name: chapter 21's, and the options that make the
/// model Llama 3, Qwen3 or Gemma 3.
fn variants() -> Vec<(&'static str, GptConfig)> {
    vec![
        ("learned", config(|_| {})),
        ("rope", config(|c| c.pos_encoding = PosEncoding::Rope)),
        ("sinusoidal", config(|c| c.pos_encoding = PosEncoding::Sinusoidal)),
        ("no positions", config(|c| c.pos_encoding = PosEncoding::None)),
        ("gqa", config(|c| c.n_kv_heads = Some(2))),
        ("mqa + rope", config(|c| (c.n_kv_heads, c.pos_encoding) = (Some(1), PosEncoding::Rope))),
        ("window 4", config(|c| c.attention_mask = AttentionMask::SlidingWindow(4))),
        (
            "window 3 + 2 sinks, rope",
            config(|c| {
                (c.attention_mask, c.sink_tokens, c.pos_encoding) =
                    (AttentionMask::SlidingWindow(3), 2, PosEncoding::Rope)
            }),
        ),
        ("prefix 5", config(|c| c.attention_mask = AttentionMask::Prefix(5))),
        ("post-norm", config(|c| c.norm_placement = NormPlacement::Post)),
        ("tied", config(|c| c.tie_embeddings = true)),
        ("3 heads", config(|c| c.n_future_heads = 3)),
        ("no biases, exact gelu", config(|c| (c.bias, c.activation) = (false, Activation::Gelu))),
        ("llama-like", config(llama_like)),
        ("qwen3-like", config(qwen3_like)),
        ("gemma3-like", config(gemma3_like)),
    ]
}

/// Llama 3's options: RMSNorm, SwiGLU, grouped-query attention, rotary positions with Llama
/// 3.1's frequency scaling, no biases, a tied head.
fn llama_like(c: &mut GptConfig) {
    (c.pos_encoding, c.n_kv_heads, c.bias, c.tie_embeddings) = (PosEncoding::Rope, Some(2), false, true);
    (c.norm, c.feed_forward, c.activation, c.hidden_dim) =
        (NormKind::RmsNorm, FeedForwardKind::Gated, Activation::Silu, Some(48));
    c.rope_scaling = Some(RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_context_length: 8,
    });
}

/// Qwen3's: Llama's without the scaling, with a head size of its own and norms on each
/// head's queries and keys.
fn qwen3_like(c: &mut GptConfig) {
    llama_like(c);
    (c.rope_scaling, c.tie_embeddings, c.head_dim, c.qk_norm, c.norm_eps) = (None, false, Some(16), true, Some(1e-6));
}

/// Gemma 3's: Qwen3's with `1 + weight` norms, GeGLU, local layers with their own RoPE base,
/// scaled embeddings, another score scale, four norms a block and soft-capped logits.
fn gemma3_like(c: &mut GptConfig) {
    qwen3_like(c);
    (c.norm, c.activation, c.tie_embeddings) = (NormKind::RmsNormPlusOne, Activation::GeluTanh, true);
    c.local_attention = Some(LocalAttention { window: 3, rope_theta: 10_000.0, layers: vec![0] });
    (c.rope_theta, c.rope_scaling) = (1e6, Some(RopeScaling::Linear { factor: 4.0 }));
    (c.scale_embeddings, c.query_pre_attn_scalar, c.sandwich_norms, c.final_logit_softcap) =
        (true, Some(12.0), true, Some(5.0));
}

fn prompt() -> Tensor {
    Tensor::from_slice(&[15496i64, 11, 314, 716, 40, 1101]).view([2, 3])
}

#[test]
fn defaults_are_the_book_model_bit_for_bit() {
    let spelled_out = config(|c| {
        c.n_kv_heads = Some(c.n_heads);
        c.attention_mask = AttentionMask::SlidingWindow(c.context_length);
    });
    let (_, book) = build(&config(|_| {}));
    let idx = Tensor::from_slice(&(0..16i64).map(|i| i * 997).collect::<Vec<_>>()).view([1, 16]);
    let logits = book.forward_t(&idx, false);
    for cfg in [spelled_out, config(|c| c.attention_mask = AttentionMask::Prefix(0))] {
        let (_, model) = build(&cfg);
        assert!(model.forward_t(&idx, false).equal(&logits), "{cfg:?}");
    }
    // An old config file without the new fields is the same config.
    let old = r#"{"vocab_size": 50257, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
                  "drop_rate": 0.0, "qkv_bias": false}"#;
    assert_eq!(serde_json::from_str::<GptConfig>(old).unwrap(), config(|_| {}));
}

#[test]
fn cached_decoding_equals_uncached_decoding_for_every_variant() {
    for (name, cfg) in variants() {
        let (_, model) = build(&cfg);
        // 3 + 20 tokens: past the context of 16 and every window.
        let simple = generate_text_simple(&model, &prompt(), 20, cfg.context_length).unwrap();
        let cached = generate_greedy_cached(&model, &prompt(), 20, None).unwrap();
        assert!(simple.equal(&cached), "{name}: {simple:?} vs {cached:?}");
        // The decoder's logits at each step are the uncached model's.
        let mut decoder = Decoder::new(&model, 2);
        let mut logits = decoder.prefill(&prompt()).unwrap();
        for step in 3..16 {
            let full = tch::no_grad(|| model.forward_t(&simple.narrow(1, 0, step), false)).select(1, -1);
            assert!(logits.allclose(&full, 1e-4, 1e-4, false), "{name}: step {step}");
            logits = decoder.step(&simple.narrow(1, step, 1)).unwrap();
        }
    }
}

#[test]
fn every_sampling_mode_runs_cached_and_reproducibly() {
    let (_, model) = build(&config(|c| c.pos_encoding = PosEncoding::Rope));
    let sampling = Sampling { temperature: 1.2, top_k: Some(20), eos_id: None };
    let run = |seed| {
        let _rng = global_rng_lock();
        seed_everything(seed);
        let mut sampler =
            Sampler::new(&sampling).unwrap().with_top_p(0.9).unwrap().with_repetition_penalty(1.3).unwrap();
        generate_cached(&model, &prompt(), 12, &mut sampler).unwrap()
    };
    assert!(run(7).equal(&run(7)), "the same seed gives the same tokens");
    assert!(!run(7).equal(&run(8)));
    // Book settings through the cached path draw what `generate` draws.
    let book = Sampling { temperature: 1.5, top_k: Some(3), eos_id: None };
    let _rng = global_rng_lock();
    seed_everything(5);
    let uncached = shared::generate::generate(&model, &prompt(), 10, 16, &book).unwrap();
    seed_everything(5);
    let cached = generate_cached(&model, &prompt(), 10, &mut Sampler::new(&book).unwrap()).unwrap();
    assert!(uncached.equal(&cached));
}

#[test]
fn gqa_shares_key_value_heads_and_shrinks_the_cache() {
    let (_, mha) = build(&config(|_| {}));
    for kv_heads in [2, 1] {
        let (gqa_vs, gqa) = build(&config(|c| c.n_kv_heads = Some(kv_heads)));
        assert_eq!(mha.new_cache(1).bytes(), gqa.new_cache(1).bytes() * (4 / kv_heads));
        // A multi-head model whose K/V weights repeat each group's gives the same output.
        let (twin_vs, twin) = build(&config(|_| {}));
        let groups = 4 / kv_heads;
        let twin_variables = twin_vs.variables();
        tch::no_grad(|| {
            for (name, tensor) in gqa_vs.variables() {
                let value = if name.contains(".W_key.") || name.contains(".W_value.") {
                    tensor.view([kv_heads, 8, 32]).repeat_interleave_self_int(groups, 0, None).view([32, 32])
                } else {
                    tensor
                };
                twin_variables[&name].shallow_clone().copy_(&value);
            }
        });
        let idx = prompt();
        let (a, b) = (gqa.forward_t(&idx, false), twin.forward_t(&idx, false));
        assert!(a.allclose(&b, 1e-5, 1e-5, false), "{kv_heads} key/value heads");
    }
}

#[test]
fn masks_see_what_they_should() {
    let idx = Tensor::from_slice(&(0..10i64).map(|i| 100 + i * 31).collect::<Vec<_>>()).view([1, 10]);
    let (_, prefix) = build(&config(|c| c.attention_mask = AttentionMask::Prefix(4)));
    for weights in prefix.attention_weights(&idx).unwrap() {
        let row = |i: i64| Vec::<f32>::try_from(weights.get(0).get(0).get(i)).unwrap();
        for i in 0..4 {
            assert!(row(i)[..4].iter().all(|&w| w > 0.0), "prefix row {i} sees the whole prefix");
            assert!(row(i)[4..].iter().all(|&w| w == 0.0), "and nothing after it");
        }
        assert!(row(6)[..7].iter().all(|&w| w > 0.0) && row(6)[7..].iter().all(|&w| w == 0.0), "causal after");
        assert!(weights.sum_dim_intlist(-1, false, Kind::Float).allclose(
            &weights.ones_like().select(-1, 0),
            1e-5,
            1e-5,
            false
        ));
    }
    let (_, window) = build(&config(|c| (c.attention_mask, c.sink_tokens) = (AttentionMask::SlidingWindow(3), 1)));
    let weights = &window.attention_weights(&idx).unwrap()[1];
    let seen: Vec<bool> =
        Vec::<f32>::try_from(weights.get(0).get(2).get(8)).unwrap().iter().map(|&w| w > 0.0).collect();
    // Position 8 sees the sink (0) and positions 6, 7, 8.
    assert_eq!(seen, [true, false, false, false, false, false, true, true, true, false]);
}

#[test]
fn a_streaming_cache_renumbers_positions_inside_the_cache() {
    // One layer: keys and values depend on their token alone, so each streamed step must be
    // the last position of a fresh pass over the tokens the cache holds (sinks, then the
    // window), numbered from 0. Three layers: before anything leaves, the plain forward pass.
    let tokens = Tensor::from_slice(&(0..40i64).map(|i| (i * 7919) % 50257).collect::<Vec<_>>()).view([1, 40]);
    for (sinks, window) in [(2, 5), (0, 6)] {
        let (_, model) = build(&config(|c| (c.n_layers, c.pos_encoding) = (1, PosEncoding::Rope)));
        let mut cache = model.new_streaming_cache(1, sinks, window).unwrap();
        let streamed = tch::no_grad(|| model.forward_cached(&tokens, &mut cache));
        assert_eq!(cache.len, 40);
        for p in [6, 20, 39] {
            let held: Vec<i64> = (0..sinks).chain((p + 1 - window).max(sinks)..=p).collect();
            let fresh = tch::no_grad(|| model.forward_t(&tokens.index_select(1, &Tensor::from_slice(&held)), false));
            let (expected, got) = (fresh.select(1, -1), streamed.select(1, p));
            assert!(got.allclose(&expected, 1e-4, 1e-4, false), "sinks {sinks}, window {window}, position {p}");
        }
    }
    let (_, deep) = build(&config(|c| (c.n_layers, c.pos_encoding) = (3, PosEncoding::Rope)));
    let mut cache = deep.new_streaming_cache(1, 4, 8).unwrap();
    let first = tokens.narrow(1, 0, 12);
    let streamed = tch::no_grad(|| deep.forward_cached(&first, &mut cache));
    assert!(streamed.allclose(&tch::no_grad(|| deep.forward_t(&first, false)), 1e-4, 1e-4, false));
    // Learned positions are baked into the keys: no renumbering.
    let (_, learned) = build(&config(|_| {}));
    let error = learned.new_streaming_cache(1, 4, 8).unwrap_err().to_string();
    assert!(error.contains("rotary or no position"), "{error}");
    assert!(deep.new_streaming_cache(1, 4, 16).is_err(), "more slots than the context");
}

#[test]
fn tied_embeddings_and_extra_heads() {
    let (vs, untied) = build(&config(|_| {}));
    let (tied_vs, tied) = build(&config(|c| c.tie_embeddings = true));
    assert_eq!(tied.out_head.ws().data_ptr(), tied.tok_emb.ws.data_ptr(), "one matrix");
    let count = |vs: &nn::VarStore| vs.variables().values().map(|t| t.numel() as i64).sum::<i64>();
    assert_eq!(count(&vs) - count(&tied_vs), 50257 * 32);
    assert_eq!(untied.cfg.n_future_heads, 1);

    // One head: the multi-token loss is the standard loss exactly.
    let batch = Batch { inputs: prompt(), targets: prompt().roll([-1], [1]) };
    let standard = calc_loss_batch(&untied, &batch, Device::Cpu, false);
    assert!(MultiTokenLoss.loss(&untied, &batch, Device::Cpu, false).equal(&standard));
    // Three heads: the first head's term is that loss, and the heads differ.
    let (_, three) = build(&config(|c| c.n_future_heads = 3));
    let hidden = three.hidden_states(&batch.inputs, false);
    let heads = three.all_head_logits(&hidden);
    assert_eq!(heads.len(), 3);
    assert!(heads[0].equal(&three.forward_t(&batch.inputs, false)));
    assert!(!heads[1].equal(&heads[0]));
    let loss = MultiTokenLoss.loss(&three, &batch, Device::Cpu, false).double_value(&[]);
    assert!(loss.is_finite() && loss > 0.0);
}

#[test]
fn the_cache_bytes_per_token_follow_every_variant() {
    for (name, cfg) in variants() {
        let (_, model) = build(&cfg);
        let cache = model.new_cache(3);
        let per_token = cfg.kv_cache_bytes_per_token(Kind::Float);
        assert_eq!(cache.bytes(), 3 * cache.capacity() * per_token, "{name}");
    }
    let gqa = config(|c| c.n_kv_heads = Some(1));
    assert_eq!(gqa.kv_cache_bytes_per_token(Kind::Half) * 4, config(|_| {}).kv_cache_bytes_per_token(Kind::Half));
}

#[test]
fn parameter_counts_follow_every_variant() {
    for (name, cfg) in variants() {
        let (vs, _) = build(&cfg);
        let variables = vs.variables();
        let named = ParameterCounts::from_named(variables.iter().map(|(n, t)| (n.as_str(), t.numel() as i64)));
        assert_eq!(named, ParameterCounts::from_config(&cfg), "{name}");
    }
}

#[test]
fn a_truncated_and_replayed_decoder_equals_a_fresh_one() {
    for (name, cfg) in variants() {
        let (_, model) = build(&cfg);
        let tokens = Tensor::from_slice(&(0..14i64).map(|i| 50 + i * 173).collect::<Vec<_>>()).view([1, 14]);
        let mut decoder = Decoder::new(&model, 1);
        let _ = decoder.prefill(&tokens.narrow(1, 0, 4)).unwrap();
        let _ = decoder.extend(&tokens.narrow(1, 4, 8)).unwrap(); // 12 tokens
        for keep in [11, 6] {
            let mut forked = decoder.clone();
            forked.truncate(keep).unwrap();
            let replayed = forked.extend(&tokens.narrow(1, keep, 14 - keep)).unwrap();
            let mut fresh = Decoder::new(&model, 1);
            let expected = fresh.prefill(&tokens).unwrap();
            assert!(replayed.select(1, -1).allclose(&expected, 1e-4, 1e-4, false), "{name}: keep {keep}");
            assert_eq!(forked.len(), 14);
        }
        assert_eq!(decoder.len(), 12, "{name}: the fork left the original alone");
    }
}

#[test]
fn every_variant_round_trips_through_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let idx = prompt();
    for (i, (name, cfg)) in variants().into_iter().enumerate() {
        let (vs, model) = build(&cfg);
        let path = dir.path().join(format!("variant{i}"));
        let meta = CheckpointMeta {
            format: shared::train::CHECKPOINT_FORMAT,
            config: cfg.clone(),
            epoch: 0,
            global_step: -1,
            tokens_seen: 0,
            optimizer: AdamWConfig::default(),
            seed: 1,
            epoch_seed: None,
        };
        Checkpoint::at(&path).save(&vs, None, &meta).unwrap();
        let loaded = ModelSource::checkpoint(&path).load(Device::Cpu, 99).unwrap();
        assert_eq!(loaded.model.cfg, cfg, "{name}");
        assert!(loaded.model.forward_t(&idx, false).equal(&model.forward_t(&idx, false)), "{name}");
        let (fresh_vs, fresh) = build(&GptConfig { drop_rate: 0.2, ..cfg.clone() }); // dropout may differ
        tch::no_grad(|| fresh_vs.variables().values().for_each(|t| _ = t.shallow_clone().fill_(0.5)));
        Checkpoint::at(&path).load_into(&fresh_vs, &fresh).unwrap();
        assert!(fresh.forward_t(&idx, false).equal(&model.forward_t(&idx, false)), "{name}");
    }
    // A config that differs in any one field is refused, the field named, whether the user
    // builds the model or names the config.
    let path = dir.path().join("variant0");
    let (post_vs, post_norm) = build(&config(|c| c.norm_placement = NormPlacement::Post));
    let err = Checkpoint::at(&path).load_into(&post_vs, &post_norm).unwrap_err().to_string();
    assert!(err.contains("differs from this one in norm_placement"), "{err}");
    for (field, other) in [
        ("tie_embeddings", config(|c| c.tie_embeddings = true)),
        ("pos_encoding", config(|c| c.pos_encoding = PosEncoding::Rope)),
        ("attention_mask", config(|c| c.attention_mask = AttentionMask::Prefix(3))),
        ("n_kv_heads", config(|c| c.n_kv_heads = Some(2))),
    ] {
        let source = ModelSource::Checkpoint { path: path.clone(), config: Some(other) };
        let err = source.load(Device::Cpu, 1).err().unwrap().to_string();
        assert!(err.contains("does not match") && err.contains(field), "{field}: {err}");
    }
}

#[test]
fn new_fields_are_validated_with_the_reason() {
    let bad = |change: fn(&mut GptConfig), needle: &str| {
        let err = config(change).validate().unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    };
    bad(|c| c.n_kv_heads = Some(3), "multiple of n_kv_heads");
    bad(|c| c.n_kv_heads = Some(0), "n_kv_heads");
    bad(|c| c.attention_mask = AttentionMask::SlidingWindow(0), "sliding window");
    bad(|c| c.attention_mask = AttentionMask::Prefix(17), "prefix");
    bad(|c| c.sink_tokens = 2, "sink_tokens needs a sliding_window");
    bad(|c| c.n_future_heads = 0, "n_future_heads");
    bad(|c| (c.pos_encoding, c.rope_theta) = (PosEncoding::Rope, f64::NAN), "rope_theta");
    bad(|c| (c.pos_encoding, c.emb_dim, c.n_heads) = (PosEncoding::Rope, 12, 4), "even head size");
    bad(|c| c.rope_scaling = Some(RopeScaling::Linear { factor: 2.0 }), "rope_scaling needs pos_encoding rope");
    bad(
        |c| {
            llama_like(c);
            c.rope_scaling = Some(RopeScaling::Linear { factor: -1.0 });
        },
        "factor must be a positive number",
    );
    bad(|c| c.head_dim = Some(0), "head_dim must be 1 to");
    bad(|c| c.norm_eps = Some(0.0), "norm_eps must be a positive number");
    bad(|c| c.final_logit_softcap = Some(f64::INFINITY), "final_logit_softcap");
    bad(
        |c| c.local_attention = Some(LocalAttention { window: 4, rope_theta: 1e4, layers: vec![2] }),
        "local_attention.layers must be layer numbers from 0 to 1",
    );
    bad(
        |c| (c.sandwich_norms, c.norm_placement) = (true, NormPlacement::Post),
        "sandwich_norms needs norm_placement pre",
    );
    let json = r#"{"vocab_size": 50257, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
                   "drop_rate": 0.0, "qkv_bias": false, "attention_mask": {"sliding_window": 4}, "pos_encoding": "rope"}"#;
    let cfg: GptConfig = serde_json::from_str(json).unwrap();
    assert_eq!((cfg.attention_mask, cfg.pos_encoding), (AttentionMask::SlidingWindow(4), PosEncoding::Rope));
    assert!(serde_json::from_str::<GptConfig>(&json.replace("\"rope\"", "\"alibi\"")).is_err());
}

#[test]
fn a_character_model_trains_with_hooks_and_keeps_its_tokenizer() {
    let text = "First Citizen: Before we proceed any further, hear me speak.\nAll: Speak, speak.\n".repeat(12);
    let tokenizer = CharTokenizer::from_text(&text);
    let cfg = config(|c| {
        c.vocab_size = tokenizer.vocab_size() as i64;
        c.tokenizer = tokenizer.spec();
        (c.pos_encoding, c.n_future_heads, c.tie_embeddings) = (PosEncoding::Rope, 2, true);
    });
    let (vs, model) = build(&cfg);
    let loader_config = LoaderConfig { batch_size: 4, max_length: 16, stride: 16, shuffle: false, drop_last: true };
    let loader = create_dataloader(&text, &tokenizer, loader_config).unwrap();
    let steps = 2 * loader.len() as i64;
    let schedule = WarmupCosine { initial_lr: 1e-4, peak_lr: 5e-3, min_lr: 1e-4, warmup_steps: 3, total_steps: steps };
    let settings = TrainSettings {
        num_epochs: 2,
        eval_freq: 4,
        eval_iter: 4,
        start_context: Some("First".to_string()),
        epoch_seed: None,
        verbose: false,
        mode: shared::train::TrainMode::Book,
        schedule: StepSchedule { lr: Some(schedule), max_grad_norm: Some(1.0) },
    };
    let mut optimizer = AdamW::new(&vs, AdamWConfig::default()).unwrap();
    let mut epoch_end_lrs = Vec::new();
    let mut record = |_: &TrainProgress, optimizer: &AdamW| {
        epoch_end_lrs.push(optimizer.config.lr);
        Ok(())
    };
    let hooks =
        TrainHooks { loss: &MultiTokenLoss, tokenizer: &tokenizer, on_epoch_end: &mut record, after_backward: None };
    let mut progress = TrainProgress::default();
    let history =
        train_model(&model, &mut optimizer, &loader, &loader, &settings, &mut progress, Device::Cpu, hooks).unwrap();
    let (first, last) = (&history.evaluations[0], history.evaluations.last().unwrap());
    assert!(last.train_loss < first.train_loss - 0.5, "{first:?} -> {last:?}");
    assert!(
        history.samples.iter().all(|s| s.starts_with("First") && s.len() == "First".len() + 50),
        "{:?}",
        history.samples
    );
    let half = loader.len() as i64;
    assert_eq!(epoch_end_lrs, [schedule.lr(half - 1), schedule.lr(2 * half - 1)]);
    assert_eq!(history.learning_rates, (0..2 * half).map(|step| schedule.lr(step)).collect::<Vec<_>>());

    // The checkpoint's config carries the tokenizer.
    let dir = tempfile::tempdir().unwrap();
    let meta = CheckpointMeta {
        format: shared::train::CHECKPOINT_FORMAT,
        config: cfg.clone(),
        epoch: 2,
        global_step: progress.global_step,
        tokens_seen: progress.tokens_seen,
        optimizer: optimizer.config,
        seed: 123,
        epoch_seed: None,
    };
    Checkpoint::at(&dir.path().join("char")).save(&vs, Some(&optimizer), &meta).unwrap();
    let loaded = ModelSource::checkpoint(dir.path().join("char")).load(Device::Cpu, 1).unwrap();
    let rebuilt = loaded.model.cfg.tokenizer.build().unwrap();
    assert_eq!(rebuilt.encode("Speak").unwrap(), tokenizer.encode("Speak").unwrap());
    let ids = Tensor::from_slice(&rebuilt.encode("All: ").unwrap().iter().map(|&id| id as i64).collect::<Vec<_>>());
    let out = generate_greedy_cached(&loaded.model, &ids.view([1, -1]), 8, None).unwrap();
    let out: Vec<u32> = Vec::<i64>::try_from(out.view([-1])).unwrap().iter().map(|&id| id as u32).collect();
    assert!(rebuilt.decode(&out).unwrap().starts_with("All: "));
}

#[test]
fn the_fused_kernels_compute_every_variant_and_its_gradients() {
    let gradients = |vs: &nn::VarStore, model: &GptModel| {
        let logits = model.forward_t(&prompt(), true);
        for (_, t) in vs.variables() {
            let mut grad = t.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
        }
        logits.square().mean(Kind::Float).backward();
        let mut grads: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| {
                let grad = t.grad();
                (n, if grad.defined() { grad.copy() } else { t.zeros_like() })
            })
            .collect();
        grads.sort_by(|a, b| a.0.cmp(&b.0));
        grads
    };
    for (name, cfg) in variants() {
        let (vs, mut model) = build(&cfg);
        let explicit = model.forward_t(&prompt(), false);
        let explicit_tokens = generate_greedy_cached(&model, &prompt(), 8, None).unwrap();
        let explicit_grads = gradients(&vs, &model);
        model.use_fused_kernels();
        assert!(model.trf_blocks.iter().all(|b| b.att.kernel == AttentionKernel::Sdpa));
        assert!(model.forward_t(&prompt(), false).allclose(&explicit, 1e-4, 1e-4, false), "{name}");
        assert!(generate_greedy_cached(&model, &prompt(), 8, None).unwrap().equal(&explicit_tokens), "{name}");
        for ((param, fused), (_, book)) in gradients(&vs, &model).iter().zip(&explicit_grads) {
            assert!(fused.allclose(book, 1e-3, 1e-5, false), "{name}: the gradient of {param}");
        }
    }
}
