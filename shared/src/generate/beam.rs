//! Beam search (chapter 21, exercise 21.18), as Hugging Face's `BeamSearchScorer` with
//! `early_stopping=True`: `width` sequences advance together over the [`Decoder`]; each step
//! every beam's log-probabilities are added to its score, the best `2 * width` continuations
//! are ranked, those ending in the end-of-text token (only when among the best `width`) become
//! finished hypotheses, and the best `width` others continue. The search stops when `width`
//! hypotheses are finished or after `max_new_tokens`; the answer is the hypothesis with the
//! best score `sum of log-probabilities / length ^ length_penalty`.
//!
//! Width 1 is greedy decoding. Beam search is not exhaustive: it usually finds a sequence the
//! model likes more than greedy's, but it can drop the greedy path on the way.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::{check_prompt, Decoder};
use crate::model::GptModel;

/// Beam-search settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BeamSearch {
    /// Beams kept each step (1 is greedy decoding).
    pub width: i64,
    /// Scores are divided by `length ^ length_penalty`: above 0 favours longer sequences
    /// (their sums of log-probabilities are more negative), 0 compares plain sums.
    pub length_penalty: f64,
    /// A beam that chooses this token is finished (the token is not kept in the output).
    pub eos_id: Option<i64>,
}

impl BeamSearch {
    pub fn new(width: i64) -> Self {
        Self { width, length_penalty: 1.0, eos_id: None }
    }

    pub fn validate(&self) -> Result<()> {
        ensure!((1..=256).contains(&self.width), "the beam width must be between 1 and 256, got {}", self.width);
        ensure!(self.length_penalty.is_finite(), "the length penalty must be a finite number");
        Ok(())
    }

    /// The score beams are ranked by: `log_prob / length ^ length_penalty`.
    pub fn score(&self, log_prob: f64, length: usize) -> f64 {
        log_prob / (length.max(1) as f64).powf(self.length_penalty)
    }
}

/// The sequence beam search chose.
#[derive(Debug, Clone, Serialize)]
pub struct Beam {
    /// The new tokens (without the end-of-text token that finished it).
    pub new_tokens: Vec<i64>,
    /// The model's log-probability of the scored tokens: the new ones, plus the end-of-text
    /// token when the beam finished with it.
    pub log_prob: f64,
    /// Tokens scored (the new ones, plus the end-of-text token).
    pub length: usize,
    /// `log_prob / length ^ length_penalty`.
    pub score: f64,
    /// Whether the beam ended with the end-of-text token.
    pub finished: bool,
}

/// A running or finished hypothesis: its new tokens and their log-probability.
#[derive(Debug, Clone)]
struct Hypothesis {
    tokens: Vec<i64>,
    log_prob: f64,
    finished: bool,
}

/// The best continuation of `prompt` `(1, T)` of at most `max_new_tokens` tokens under
/// `settings`. Beyond the context the decoder crops as [`super::generate`] does.
pub fn beam_search(model: &GptModel, prompt: &Tensor, max_new_tokens: i64, settings: &BeamSearch) -> Result<Beam> {
    settings.validate()?;
    check_prompt(model, prompt, max_new_tokens)?;
    ensure!(prompt.size()[0] == 1, "beam search continues one prompt at a time, got {}", prompt.size()[0]);
    let width = settings.width as usize;
    let mut decoder = Decoder::new(model, 1);
    let mut logits = decoder.prefill(prompt)?;
    let mut running = vec![Hypothesis { tokens: Vec::new(), log_prob: 0.0, finished: false }];
    let mut finished: Vec<Hypothesis> = Vec::new();
    for step in 0..max_new_tokens {
        // (beams, V): each beam's score plus the log-probability of every next token.
        let log_probs = logits.log_softmax(-1, Kind::Float);
        let vocab = log_probs.size()[1];
        let base = Tensor::from_slice(&running.iter().map(|h| h.log_prob).collect::<Vec<_>>())
            .to_kind(Kind::Float)
            .to_device(log_probs.device())
            .unsqueeze(1);
        let candidates = (log_probs + base).view([-1]);
        let k = (2 * width as i64).min(candidates.size()[0]);
        let (values, indices) = candidates.topk(k, -1, true, true);
        let values = Vec::<f64>::try_from(values.to_kind(Kind::Double).to_device(tch::Device::Cpu))?;
        let indices = Vec::<i64>::try_from(indices.to_device(tch::Device::Cpu))?;
        let mut next: Vec<(i64, Hypothesis)> = Vec::with_capacity(width);
        for (rank, (&log_prob, &index)) in values.iter().zip(&indices).enumerate() {
            let (beam, token) = (index / vocab, index % vocab);
            let tokens = running[beam as usize].tokens.clone();
            if settings.eos_id == Some(token) {
                if rank < width {
                    finished.push(Hypothesis { tokens, log_prob, finished: true });
                }
                continue;
            }
            let mut tokens = tokens;
            tokens.push(token);
            next.push((beam, Hypothesis { tokens, log_prob, finished: false }));
            if next.len() == width {
                break;
            }
        }
        if finished.len() >= width || next.is_empty() {
            running.clear();
            break;
        }
        let beams = Tensor::from_slice(&next.iter().map(|(beam, _)| *beam).collect::<Vec<_>>());
        let new = Tensor::from_slice(&next.iter().map(|(_, h)| *h.tokens.last().unwrap()).collect::<Vec<_>>());
        running = next.into_iter().map(|(_, h)| h).collect();
        if step + 1 < max_new_tokens {
            decoder.select(&beams);
            logits = decoder.step(&new.view([-1, 1]))?;
        }
    }
    let best = finished
        .into_iter()
        .chain(running)
        .map(|h| {
            let length = h.tokens.len() + usize::from(h.finished);
            let score = settings.score(h.log_prob, length);
            Beam { new_tokens: h.tokens, log_prob: h.log_prob, length, score, finished: h.finished }
        })
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .expect("at least one hypothesis");
    Ok(best)
}

/// The model's log-probability of `continuation` after `prompt` (token ids), summed over
/// the continuation's tokens; the model sees at most its context, cropped as in decoding.
pub fn sequence_log_prob(model: &GptModel, prompt: &[i64], continuation: &[i64]) -> Result<f64> {
    let device = model.tok_emb.ws.device();
    let mut decoder = Decoder::new(model, 1);
    let mut logits = decoder.prefill(&Tensor::from_slice(prompt).view([1, -1]).to_device(device))?;
    let mut total = 0.0;
    for &token in continuation {
        total += logits.log_softmax(-1, Kind::Float).double_value(&[0, token]);
        logits = decoder.step(&Tensor::from_slice(&[token]).view([1, 1]).to_device(device))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::device::global_rng_lock;
    use crate::generate::{generate_greedy_cached, scaled_test_model};
    use crate::model::GptConfig;
    use tch::nn;

    fn model(seed: i64) -> (nn::VarStore, GptModel) {
        let _rng = global_rng_lock();
        let cfg = GptConfig { vocab_size: 12, context_length: 24, drop_rate: 0.0, ..GptConfig::tiny() };
        scaled_test_model(seed as u64, &cfg, 3.0)
    }

    fn greedy(model: &GptModel, prompt: &[i64], n: i64, eos: Option<i64>) -> Vec<i64> {
        let out = generate_greedy_cached(model, &Tensor::from_slice(prompt).view([1, -1]), n, eos).unwrap();
        Vec::<i64>::try_from(out.view([-1])).unwrap()[prompt.len()..].to_vec()
    }

    #[test]
    fn width_one_is_greedy_decoding() {
        for seed in [1, 2, 3] {
            let (_vs, model) = model(seed);
            let prompt = [seed, 4, 7];
            let beam = beam_search(&model, &Tensor::from_slice(&prompt).view([1, 3]), 10, &BeamSearch::new(1)).unwrap();
            assert_eq!(beam.new_tokens, greedy(&model, &prompt, 10, None));
            // With an end-of-text token: the greedy sequence's 4th token ends both early.
            let eos = greedy(&model, &prompt, 10, None)[3];
            let settings = BeamSearch { eos_id: Some(eos), ..BeamSearch::new(1) };
            let beam = beam_search(&model, &Tensor::from_slice(&prompt).view([1, 3]), 10, &settings).unwrap();
            assert_eq!(beam.new_tokens, greedy(&model, &prompt, 10, Some(eos)));
            assert!(beam.finished);
        }
    }

    #[test]
    fn wider_beams_score_at_least_as_well_as_greedy() {
        let mut better = 0;
        for seed in 1..=6 {
            let (_vs, model) = model(seed);
            let prompt = [seed % 12, 3];
            let greedy_tokens = greedy(&model, &prompt, 12, None);
            let greedy_log_prob = sequence_log_prob(&model, &prompt, &greedy_tokens).unwrap();
            for width in [2, 4, 8] {
                let settings = BeamSearch { length_penalty: 0.0, ..BeamSearch::new(width) };
                let beam = beam_search(&model, &Tensor::from_slice(&prompt).view([1, 2]), 12, &settings).unwrap();
                assert_eq!(beam.new_tokens.len(), 12);
                // The reported score is the model's, recomputed token by token.
                let recomputed = sequence_log_prob(&model, &prompt, &beam.new_tokens).unwrap();
                assert!((recomputed - beam.log_prob).abs() < 1e-4, "{recomputed} vs {}", beam.log_prob);
                assert!(beam.log_prob >= greedy_log_prob - 1e-4, "seed {seed}, width {width}");
                better += usize::from(beam.log_prob > greedy_log_prob + 1e-3);
            }
        }
        assert!(better > 0, "beam search never found anything better than greedy");
    }

    #[test]
    fn length_penalty_ranks_finished_beams() {
        let settings = BeamSearch::new(3);
        assert_eq!(settings.score(-6.0, 3), -2.0);
        assert_eq!(BeamSearch { length_penalty: 0.0, ..settings }.score(-6.0, 3), -6.0);
        assert!(BeamSearch::new(0).validate().is_err());
        let (_vs, model) = model(4);
        let prompt = Tensor::from_slice(&[1i64, 2]).view([1, 2]);
        let two = Tensor::from_slice(&[1i64, 2, 3, 4]).view([2, 2]);
        assert!(beam_search(&model, &two, 4, &settings).unwrap_err().to_string().contains("one prompt"));
        // Every token an end-of-text candidate at once is impossible, but a frequent one
        // finishes beams early: the answer is still a valid hypothesis with a finite score.
        let eos = greedy(&model, &[1, 2], 1, None)[0];
        let beam = beam_search(&model, &prompt, 8, &BeamSearch { eos_id: Some(eos), ..settings }).unwrap();
        assert!(beam.score.is_finite() && !beam.new_tokens.contains(&eos));
    }
}
