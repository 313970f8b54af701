//! The faster inference paths compute what the plain ones compute: batched decoding gives
//! every prompt the tokens it gets alone, and int8 weights stay close to float32.

use shared::core::device::{global_rng_lock, seed_everything};
use shared::data::dataset::{DataLoader, GptDataset};
use shared::data::{DataLocator, THE_VERDICT};
use shared::generate::batch::{generate_batch, BatchDecoder};
use shared::generate::{generate_cached, Sampler, Sampling};
use shared::model::positions::PosEncoding;
use shared::model::{GptConfig, GptModel};
use shared::train::{
    calc_loss_loader, perplexity, train_model_simple, AdamW, AdamWConfig, TrainProgress, TrainSettings,
};
use tch::{nn::VarStore, Device, Kind, Tensor};

/// The Verdict's first 90 % for training, the rest held out, in windows of 16 tokens.
fn verdict_loaders() -> (DataLoader, DataLoader) {
    let text = DataLocator::from_env(None).read_to_string(&THE_VERDICT).unwrap();
    let split = text.char_indices().nth(text.chars().count() * 9 / 10).unwrap().0;
    let loader =
        |part: &str, shuffle| DataLoader::new(GptDataset::from_text(part, 16, 16).unwrap(), 8, shuffle, shuffle);
    (loader(&text[..split], true).unwrap(), loader(&text[split..], false).unwrap())
}

/// A tiny model trained for one epoch on The Verdict: weights with some structure, not the
/// initial noise, and a held-out perplexity far below the vocabulary's size.
fn trained_tiny(pos_encoding: PosEncoding) -> (VarStore, GptModel, DataLoader) {
    seed_everything(123);
    let cfg = GptConfig { drop_rate: 0.0, pos_encoding, ..GptConfig::tiny() };
    let vs = VarStore::new(Device::Cpu);
    let model = GptModel::new(&vs.root(), &cfg).unwrap();
    let (train, val) = verdict_loaders();
    let mut optimizer = AdamW::new(&vs, AdamWConfig { lr: 2e-3, ..AdamWConfig::default() }).unwrap();
    let settings = TrainSettings {
        num_epochs: 1,
        eval_freq: 1000,
        eval_iter: 1,
        start_context: None,
        epoch_seed: None,
        verbose: false,
        mode: shared::train::TrainMode::Book,
        schedule: Default::default(),
    };
    let mut progress = TrainProgress::default();
    train_model_simple(&model, &mut optimizer, &train, &val, &settings, &mut progress, Device::Cpu, &mut |_, _| Ok(()))
        .unwrap();
    (vs, model, val)
}

fn prompts() -> Vec<Vec<i64>> {
    // Lengths 1 to 6, from The Verdict's first sentence.
    let ids = [40i64, 367, 2885, 1464, 1807, 3619, 402, 271];
    (1..=6).map(|n| ids[8 - n..].to_vec()).collect()
}

#[test]
fn batched_decoding_gives_each_prompt_its_own_tokens() {
    let _rng = global_rng_lock();
    for pos_encoding in [PosEncoding::Learned, PosEncoding::Sinusoidal, PosEncoding::Rope] {
        let (_vs, model, _) = trained_tiny(pos_encoding);
        let prompts = prompts();
        // Without a stop, then stopping at a token the rows reach at different steps.
        let alone: Vec<Vec<i64>> = prompts
            .iter()
            .map(|p| {
                let idx = Tensor::from_slice(p).view([1, -1]);
                let out = generate_cached(&model, &idx, 10, &mut Sampler::new(&Sampling::GREEDY).unwrap()).unwrap();
                Vec::<i64>::try_from(out.view([-1]).narrow(0, p.len() as i64, 10)).unwrap()
            })
            .collect();
        let together = generate_batch(&model, &prompts, 10, &mut Sampler::new(&Sampling::GREEDY).unwrap()).unwrap();
        assert_eq!(together, alone, "{pos_encoding:?}");
        let eos = alone[2][3];
        let stopping = Sampling { eos_id: Some(eos), ..Sampling::GREEDY };
        let stopped = generate_batch(&model, &prompts, 10, &mut Sampler::new(&stopping).unwrap()).unwrap();
        for (row, full) in stopped.iter().zip(&alone) {
            let end = full.iter().position(|&t| t == eos).unwrap_or(full.len());
            assert_eq!(row, &full[..end], "{pos_encoding:?}");
        }
        // Rows that leave the batch midway do not change the others' tokens.
        let mut decoder = BatchDecoder::new(&model, &prompts, 10).unwrap();
        let mut rows: Vec<usize> = (0..prompts.len()).collect();
        let mut kept: Vec<Vec<i64>> = vec![Vec::new(); prompts.len()];
        for step in 0..10 {
            let next = decoder.logits().argmax(-1, true);
            for (&row, id) in rows.iter().zip(Vec::<i64>::try_from(next.view([-1])).unwrap()) {
                kept[row].push(id);
            }
            if step == 9 {
                break;
            }
            decoder.step(&next).unwrap();
            if step == 3 || step == 6 {
                // Drop the second row of the batch, then keep the rest in reverse order.
                let keep: Vec<i64> = (0..rows.len() as i64).filter(|&r| r != 1).rev().collect();
                decoder.keep_rows(&keep).unwrap();
                rows = keep.iter().map(|&r| rows[r as usize]).collect();
            }
        }
        assert_eq!(decoder.rows(), 4);
        for (row, tokens) in kept.iter().enumerate() {
            assert_eq!(tokens[..], alone[row][..tokens.len()], "{pos_encoding:?}, row {row}");
        }
        assert!(decoder.keep_rows(&[]).is_err() && decoder.keep_rows(&[4]).is_err());
    }
}

#[test]
fn a_resumed_cache_gives_the_logits_of_a_fresh_prompt() {
    let _rng = global_rng_lock();
    for pos_encoding in [PosEncoding::Learned, PosEncoding::Rope] {
        let (_vs, model, _) = trained_tiny(pos_encoding);
        let first: Vec<i64> = vec![40, 367, 2885, 1464, 1807, 3619, 402];
        // A first request, decoded for three tokens; its cache is kept.
        let mut decoder = BatchDecoder::new(&model, std::slice::from_ref(&first), 3).unwrap();
        for _ in 0..3 {
            let next = decoder.logits().argmax(-1, true);
            decoder.step(&next).unwrap();
        }
        let (cache, cached) = decoder.into_cache().unwrap();
        assert_eq!(cached.len(), first.len() + 3);
        // A next prompt that shares the first five tokens, then goes elsewhere.
        let next: Vec<i64> = [&first[..5], &[11, 262, 1110, 13]].concat();
        let (mut resumed, reused) = BatchDecoder::resume(&model, cache, &cached, &next, 4).unwrap();
        assert_eq!(reused, 5);
        let mut fresh = BatchDecoder::new(&model, std::slice::from_ref(&next), 4).unwrap();
        for step in 0..4 {
            let difference = (resumed.logits() - fresh.logits()).abs().max().double_value(&[]);
            assert!(difference < 1e-4, "{pos_encoding:?}, step {step}: logits differ by {difference}");
            let token = fresh.logits().argmax(-1, true);
            assert!(token.equal(&resumed.logits().argmax(-1, true)));
            if step < 3 {
                resumed.step(&token).unwrap();
                fresh.step(&token).unwrap();
            }
        }
        // A prompt equal to the cached tokens still computes its last one.
        let (cache, cached) = resumed.into_cache().unwrap();
        let (_, reused) = BatchDecoder::resume(&model, cache, &cached, &cached.clone(), 1).unwrap();
        assert_eq!(reused, cached.len() - 1);
        // Several rows give no cache back.
        let batch = BatchDecoder::new(&model, &[first.clone(), next.clone()], 1).unwrap();
        assert!(batch.into_cache().is_none());
    }
}

#[test]
fn batched_decoding_refuses_what_it_cannot_do() {
    let _rng = global_rng_lock();
    seed_everything(1);
    let vs = VarStore::new(Device::Cpu);
    let model = GptModel::new(&vs.root(), &GptConfig::tiny()).unwrap();
    let greedy = || Sampler::new(&Sampling::GREEDY).unwrap();
    let error = |prompts: &[Vec<i64>], n| generate_batch(&model, prompts, n, &mut greedy()).unwrap_err().to_string();
    assert!(error(&[], 3).contains("at least one prompt"));
    assert!(error(&[vec![1], vec![]], 3).contains("at least one token"));
    assert!(error(&[vec![1; 10]], 7).contains("exceed the model's 16"), "{}", error(&[vec![1; 10]], 7));
    assert!(error(&[vec![50257]], 1).contains("invalid prompt"));
    assert_eq!(generate_batch(&model, &[vec![1; 10]], 6, &mut greedy()).unwrap()[0].len(), 6);
}

#[test]
fn int8_weights_stay_close_to_float32() {
    let _rng = global_rng_lock();
    let (_vs, mut model, val) = trained_tiny(PosEncoding::Learned);
    let float_loss = calc_loss_loader(&model, &val, None, Device::Cpu);
    let batch = val.iter().next().unwrap();
    let float_logits = tch::no_grad(|| model.forward_t(&batch.inputs, false));
    let float_bytes = model.parameter_bytes();
    model.use_int8_kernels().unwrap();
    let int8_loss = calc_loss_loader(&model, &val, None, Device::Cpu);
    let int8_logits = tch::no_grad(|| model.forward_t(&batch.inputs, false));
    // The trained model is far from uniform (perplexity ~50,000 at the start).
    assert!(perplexity(float_loss) < 10_000.0, "{}", perplexity(float_loss));
    let relative = perplexity(int8_loss) / perplexity(float_loss) - 1.0;
    assert!(relative.abs() < 0.01, "int8 perplexity is {:.3} % off float32's", 100.0 * relative);
    // Stated tolerance: every logit within 2 % of the largest logit magnitude.
    let error = (&int8_logits - &float_logits).abs().max().double_value(&[]);
    let scale = float_logits.abs().max().double_value(&[]);
    assert!(error < 0.02 * scale, "largest logit error {error} against logits up to {scale}");
    assert!(error > 0.0, "the int8 kernels ran");
    assert!(model.parameter_bytes() < float_bytes);
    assert_eq!(int8_logits.kind(), Kind::Float);
}
