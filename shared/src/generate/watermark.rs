//! A soft watermark for generated text (Kirchenbauer et al. 2023; chapter 21, exercise 21.32).
//!
//! Before each token, the previous token and a secret key seed a pseudo-random split of the
//! vocabulary: a "green list" of a fraction `gamma` of the ids and a red list of the rest.
//! The [`Watermark`] processor adds `delta` to the green logits, so the text leans green.
//! [`detect`] needs only the token ids (the tokenizer's, of the text) and the key: it counts
//! the green tokens and computes `z = (green - gamma T) / sqrt(T gamma (1 - gamma))` over the
//! `T` scored tokens; unwatermarked text has `z` near 0, and `z > 4` flags a watermark.
//!
//! The split is drawn with SplitMix64 (Steele et al. 2014) and a partial Fisher-Yates shuffle,
//! written out here so that a key gives the same lists on every machine and in every version.

use std::collections::HashMap;

use anyhow::{ensure, Result};
use serde::Serialize;
use tch::Tensor;

use super::LogitsProcessor;
use crate::tokenizer::Tokenizer;

/// The z-score above which [`detect`] flags text as watermarked (the paper's 4).
pub const Z_THRESHOLD: f64 = 4.0;

/// The secret and the split it makes: key, green fraction and vocabulary size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WatermarkKey {
    pub key: u64,
    /// The share of the vocabulary in each green list (the paper's default 0.25).
    pub gamma: f64,
    pub vocab_size: i64,
}

impl WatermarkKey {
    pub fn new(key: u64, gamma: f64, vocab_size: i64) -> Result<Self> {
        ensure!(gamma > 0.0 && gamma < 1.0, "gamma must be in (0, 1), got {gamma}");
        ensure!(vocab_size >= 2, "the vocabulary must have at least 2 ids, got {vocab_size}");
        let key = Self { key, gamma, vocab_size };
        ensure!(
            (1..vocab_size).contains(&(key.green_count() as i64)),
            "gamma {gamma} leaves no green or no red ids in a vocabulary of {vocab_size}"
        );
        Ok(key)
    }

    /// Ids in each green list: `gamma * vocab_size`, rounded.
    pub fn green_count(&self) -> usize {
        (self.gamma * self.vocab_size as f64).round() as usize
    }

    /// The exact green share (`green_count / vocab_size`): the chance that a token chosen
    /// without the key is green, which the z-score tests against.
    pub fn green_share(&self) -> f64 {
        self.green_count() as f64 / self.vocab_size as f64
    }

    /// The green list after token `previous`: the first `green_count` ids of a shuffle of
    /// the vocabulary seeded by the key and `previous`.
    pub fn green_list(&self, previous: i64) -> Vec<i64> {
        let mut state = self.key ^ (previous as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut ids: Vec<i64> = (0..self.vocab_size).collect();
        let n = ids.len();
        for i in 0..self.green_count() {
            // Lemire's multiply-shift maps the 64-bit draw to i..n without a division.
            let j = i + ((splitmix64(&mut state) as u128 * (n - i) as u128) >> 64) as usize;
            ids.swap(i, j);
        }
        ids.truncate(self.green_count());
        ids
    }

    /// Whether each id is green after `previous`, as a `(vocab_size,)` tensor of 0s and 1s.
    fn green_mask(&self, previous: i64) -> Tensor {
        let mut mask = vec![0f32; self.vocab_size as usize];
        for id in self.green_list(previous) {
            mask[id as usize] = 1.0;
        }
        Tensor::from_slice(&mask)
    }
}

/// SplitMix64: advances `state` and returns the next 64-bit draw.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The logits processor: adds `delta` to the green logits after each sequence's last token
/// (nothing before the first token).
pub struct Watermark {
    pub key: WatermarkKey,
    pub delta: f64,
    masks: HashMap<i64, Tensor>,
}

impl Watermark {
    pub fn new(key: WatermarkKey, delta: f64) -> Result<Self> {
        ensure!(delta >= 0.0 && delta.is_finite(), "delta must be 0 or positive, got {delta}");
        Ok(Self { key, delta, masks: HashMap::new() })
    }
}

impl LogitsProcessor for Watermark {
    fn process(&mut self, logits: &Tensor, tokens: &Tensor) -> Tensor {
        let length = tokens.size()[1];
        if length == 0 {
            return logits.shallow_clone();
        }
        let previous = Vec::<i64>::try_from(tokens.select(1, length - 1).to_device(tch::Device::Cpu))
            .expect("token ids are int64");
        let rows: Vec<Tensor> = previous
            .iter()
            .map(|&p| self.masks.entry(p).or_insert_with(|| self.key.green_mask(p)).shallow_clone())
            .collect();
        let bias = Tensor::stack(&rows, 0).to_device(logits.device()).to_kind(logits.kind()) * self.delta;
        logits + bias
    }
}

/// The outcome of a detection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    /// Tokens scored: every token after the first (the first has no previous token).
    pub scored: usize,
    pub green: usize,
    pub z: f64,
    /// `z > Z_THRESHOLD`.
    pub flagged: bool,
}

/// Counts the green tokens of `ids` under `key` and tests them against chance.
pub fn detect(key: &WatermarkKey, ids: &[i64]) -> Detection {
    let mut lists: HashMap<i64, Vec<i64>> = HashMap::new();
    let green = ids
        .windows(2)
        .filter(|pair| {
            let list = lists.entry(pair[0]).or_insert_with(|| {
                let mut list = key.green_list(pair[0]);
                list.sort_unstable();
                list
            });
            list.binary_search(&pair[1]).is_ok()
        })
        .count();
    let scored = ids.len().saturating_sub(1);
    let (t, gamma) = (scored as f64, key.green_share());
    let z = if scored == 0 { 0.0 } else { (green as f64 - gamma * t) / (t * gamma * (1.0 - gamma)).sqrt() };
    Detection { scored, green, z, flagged: z > Z_THRESHOLD }
}

/// [`detect`] on text: tokenizes it with `tokenizer` (the generating model's) and tests the
/// ids. No model is involved.
pub fn detect_text(text: &str, tokenizer: &dyn Tokenizer, key: &WatermarkKey) -> Result<Detection> {
    let ids: Vec<i64> = tokenizer.encode(text)?.into_iter().map(i64::from).collect();
    ensure!(
        ids.iter().all(|&id| id < key.vocab_size),
        "the tokenizer's ids go beyond the key's vocabulary of {}",
        key.vocab_size
    );
    Ok(detect(key, &ids))
}

/// The green share a watermark of strength `delta` gives text whose unbiased distribution is
/// spread evenly over many tokens: `gamma e^delta / (1 + (e^delta - 1) gamma)` (the paper's
/// bound for high-entropy text; peaked distributions give less).
pub fn expected_green_share(gamma: f64, delta: f64) -> f64 {
    let boost = delta.exp();
    gamma * boost / (1.0 + (boost - 1.0) * gamma)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::device::{global_rng_lock, seed_everything};
    use crate::generate::{generate_cached, Sampler, Sampling};
    use crate::model::{GptConfig, GptModel};
    use crate::tokenizer::CharTokenizer;
    use tch::{nn, Device, Kind};

    #[test]
    fn green_lists_are_a_fixed_share_chosen_by_key_and_previous_token() {
        let key = WatermarkKey::new(42, 0.25, 1000).unwrap();
        let list = key.green_list(7);
        assert_eq!(list.len(), 250);
        let mut unique = list.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 250, "no id twice");
        assert_eq!(key.green_list(7), list, "deterministic");
        let overlap = |a: &[i64], b: &[i64]| a.iter().filter(|x| b.contains(x)).count();
        // Another previous token or another key gives an unrelated list (about 62 shared by chance).
        assert!((30..100).contains(&overlap(&list, &key.green_list(8))));
        assert!((30..100).contains(&overlap(&list, &WatermarkKey { key: 43, ..key }.green_list(7))));
        assert!(WatermarkKey::new(1, 0.0, 100).is_err() && WatermarkKey::new(1, 0.25, 1).is_err());
        // The z-score by hand: 8 of 9 scored tokens green at gamma 0.25.
        let mut ids = vec![5i64];
        for i in 0..9 {
            let previous = *ids.last().unwrap();
            let list = key.green_list(previous);
            let red = (0..1000).find(|id| !list.contains(id)).unwrap();
            ids.push(if i < 8 { list[i % list.len()] } else { red });
        }
        let detection = detect(&key, &ids);
        assert_eq!((detection.scored, detection.green), (9, 8));
        let z = (8.0 - 0.25 * 9.0) / (9.0f64 * 0.25 * 0.75).sqrt();
        assert!((detection.z - z).abs() < 1e-12 && detection.flagged);
    }

    #[test]
    fn watermarked_generations_are_detected_and_others_are_not() {
        let _rng = global_rng_lock();
        let text = "the quick brown fox jumps over the lazy dog, then naps in the warm sun.";
        let tokenizer = CharTokenizer::from_text(text);
        seed_everything(11);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = GptConfig {
            vocab_size: tokenizer.vocab_size() as i64,
            context_length: 32,
            drop_rate: 0.0,
            tokenizer: tokenizer.spec(),
            ..GptConfig::tiny()
        };
        let model = GptModel::new(&vs.root(), &cfg).unwrap();
        let key = WatermarkKey::new(12345, 0.25, cfg.vocab_size).unwrap();
        let sampling = Sampling { temperature: 1.0, ..Sampling::GREEDY };
        // 12 sequences at once, each 200 tokens after the same first character.
        let generate = |watermark: bool| -> Vec<String> {
            let mut sampler = Sampler::new(&sampling).unwrap();
            if watermark {
                sampler = sampler.with_hook(Box::new(Watermark::new(key, 2.0).unwrap()));
            }
            let prompt = Tensor::ones([12, 1], (Kind::Int64, Device::Cpu));
            let ids = generate_cached(&model, &prompt, 200, &mut sampler).unwrap();
            (0..12)
                .map(|row| {
                    let ids = Vec::<i64>::try_from(ids.get(row)).unwrap();
                    tokenizer.decode(&ids.iter().map(|&i| i as u32).collect::<Vec<_>>()).unwrap()
                })
                .collect()
        };
        // Detection from the text, the tokenizer and the key alone.
        for marked in generate(true) {
            let marked = detect_text(&marked, &tokenizer, &key).unwrap();
            assert_eq!(marked.scored, 200);
            assert!(marked.flagged && marked.z > 4.0, "{marked:?}");
        }
        let plain_z: Vec<f64> =
            generate(false).iter().map(|text| detect_text(text, &tokenizer, &key).unwrap().z).collect();
        assert!(plain_z.iter().all(|z| z.abs() < 4.0), "{plain_z:?}");
        let mean = plain_z.iter().sum::<f64>() / plain_z.len() as f64;
        assert!(mean.abs() < 1.0, "unwatermarked z-scores average {mean}: {plain_z:?}");
        // A uniform distribution turns 25 % green into 71 % at delta 2.
        assert!((expected_green_share(0.25, 2.0) - 0.7112).abs() < 1e-3);
    }
}
