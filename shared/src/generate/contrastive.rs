//! Contrastive decoding (Li et al. 2022; chapter 21, exercise 21.31): the next token is the
//! one the large ("expert") model likes much more than a small ("amateur") model does,
//! `log p_large(x) - alpha * log p_small(x)`, chosen only among the tokens the large model
//! finds plausible, `{x : p_large(x) >= plausibility * max p_large}`. The plausibility
//! constraint keeps the difference from favouring tokens both models find absurd. The paper
//! takes the argmax (temperature 0, the default); above 0 the token is drawn from the softmax
//! of the scores divided by the temperature.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::{check_logits, check_prompt, draw, Decoder};
use crate::model::GptModel;

/// Contrastive-decoding settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Contrastive {
    /// Weight of the small model's log-probabilities (0: the large model alone).
    pub alpha: f64,
    /// The plausible set keeps tokens with at least this share of the large model's largest
    /// probability (the paper's 0.1).
    pub plausibility: f64,
    /// 0: the best-scoring token; above 0: a draw from `softmax(scores / temperature)`.
    pub temperature: f64,
}

impl Default for Contrastive {
    fn default() -> Self {
        Self { alpha: 1.0, plausibility: 0.1, temperature: 0.0 }
    }
}

impl Contrastive {
    pub fn validate(&self) -> Result<()> {
        ensure!(self.alpha >= 0.0 && self.alpha.is_finite(), "alpha must be 0 or positive, got {}", self.alpha);
        ensure!(
            self.plausibility > 0.0 && self.plausibility <= 1.0,
            "the plausibility threshold must be in (0, 1], got {}",
            self.plausibility
        );
        ensure!(
            self.temperature >= 0.0 && self.temperature.is_finite(),
            "the temperature must be 0 or positive, got {}",
            self.temperature
        );
        Ok(())
    }

    /// Whether each token is in the large model's plausible set, for its logits `(B, V)`.
    pub fn plausible(&self, large_logits: &Tensor) -> Tensor {
        let log_probs = large_logits.log_softmax(-1, Kind::Float);
        let (best, _) = log_probs.max_dim(-1, true);
        log_probs.ge_tensor(&(best + self.plausibility.ln()))
    }

    /// The contrastive scores `(B, V)`: `log p_large - alpha log p_small` on the plausible
    /// set, minus infinity elsewhere.
    pub fn scores(&self, large_logits: &Tensor, small_logits: &Tensor) -> Tensor {
        let large = large_logits.log_softmax(-1, Kind::Float);
        let small = small_logits.log_softmax(-1, Kind::Float);
        (large - small * self.alpha).masked_fill(&self.plausible(large_logits).logical_not(), f64::NEG_INFINITY)
    }

    /// The next tokens `(B, 1)`.
    pub fn next_token(&self, large_logits: &Tensor, small_logits: &Tensor) -> Result<Tensor> {
        check_logits(large_logits)?;
        check_logits(small_logits)?;
        let scores = self.scores(large_logits, small_logits);
        if self.temperature > 0.0 {
            draw(&(scores / self.temperature).softmax(-1, Kind::Float))
        } else {
            Ok(scores.argmax(-1, true))
        }
    }
}

/// Appends up to `max_new_tokens` contrastively chosen tokens to `prompt` `(B, T)`; stops
/// before a single sequence's `eos_id`. Both models step over their own KV caches; they must
/// share a tokenizer.
pub fn generate_contrastive(
    large: &GptModel,
    small: &GptModel,
    prompt: &Tensor,
    max_new_tokens: i64,
    settings: &Contrastive,
    eos_id: Option<i64>,
) -> Result<Tensor> {
    settings.validate()?;
    check_prompt(large, prompt, max_new_tokens)?;
    small.check_tokens(prompt)?;
    large.check_same_tokenizer(small, "the two models")?;
    let batch = prompt.size()[0];
    let (mut large_decoder, mut small_decoder) = (Decoder::new(large, batch), Decoder::new(small, batch));
    let (mut large_logits, mut small_logits) = (large_decoder.prefill(prompt)?, small_decoder.prefill(prompt)?);
    let mut tokens = vec![prompt.to_device(large.tok_emb.ws.device())];
    for step in 0..max_new_tokens {
        let token = settings.next_token(&large_logits, &small_logits)?;
        if eos_id.is_some_and(|eos| batch == 1 && token.int64_value(&[0, 0]) == eos) {
            break;
        }
        tokens.push(token.shallow_clone());
        if step + 1 < max_new_tokens {
            large_logits = large_decoder.step(&token)?;
            small_logits = small_decoder.step(&token)?;
        }
    }
    Ok(Tensor::cat(&tokens, 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::device::{global_rng_lock, seed_everything};
    use crate::generate::scaled_test_model;
    use crate::model::GptConfig;
    use tch::{nn, Device};

    #[test]
    fn only_plausible_tokens_are_chosen() {
        let _rng = global_rng_lock();
        seed_everything(7);
        let large = Tensor::randn([256, 20], (Kind::Float, Device::Cpu)) * 2.0;
        let small = Tensor::randn([256, 20], (Kind::Float, Device::Cpu)) * 4.0;
        let probs = large.softmax(-1, Kind::Float);
        let (best, _) = probs.max_dim(-1, true);
        let plausible = probs.ge_tensor(&(best * 0.1));
        for temperature in [0.0, 1.0, 5.0] {
            let settings = Contrastive { alpha: 3.0, temperature, ..Contrastive::default() };
            let chosen = settings.next_token(&large, &small).unwrap();
            assert!(bool::try_from(plausible.gather(1, &chosen, false).all()).unwrap(), "temperature {temperature}");
            // Without the constraint the small model's dislikes would pick implausible tokens.
            let unconstrained = Contrastive { plausibility: 1e-30, ..settings }.next_token(&large, &small).unwrap();
            assert!(!bool::try_from(plausible.gather(1, &unconstrained, false).all()).unwrap());
        }
        // Alpha 0 with temperature 0 is the large model's greedy choice.
        let greedy = Contrastive { alpha: 0.0, ..Contrastive::default() }.next_token(&large, &small).unwrap();
        assert!(greedy.equal(&large.argmax(-1, true)));
    }

    #[test]
    fn generation_stays_in_the_large_models_plausible_set() {
        let _rng = global_rng_lock();
        let cfg = GptConfig { vocab_size: 16, drop_rate: 0.0, ..GptConfig::tiny() };
        let model = |seed: u64| scaled_test_model(seed, &cfg, 5.0);
        let ((_l, large), (_s, small)) = (model(1), model(2));
        let prompt = Tensor::from_slice(&[1i64, 2]).view([1, 2]);
        let settings = Contrastive { alpha: 2.0, temperature: 1.0, ..Contrastive::default() };
        let out = generate_contrastive(&large, &small, &prompt, 12, &settings, None).unwrap();
        assert_eq!(out.size(), [1, 14]);
        let tokens = Vec::<i64>::try_from(out.view([-1])).unwrap();
        for (t, &token) in tokens.iter().enumerate().skip(2) {
            let logits = large.forward_t(&out.narrow(1, 0, t as i64), false).select(1, -1);
            let probs = logits.softmax(-1, Kind::Float);
            let ratio = probs.double_value(&[0, token]) / probs.max().double_value(&[]);
            assert!(ratio >= 0.1 - 1e-6, "token {t}: {ratio}");
        }
        let different = GptModel::new(&nn::VarStore::new(Device::Cpu).root(), &GptConfig::tiny()).unwrap();
        assert!(generate_contrastive(&large, &different, &prompt, 2, &settings, None).is_err());
        assert!(Contrastive { plausibility: 0.0, ..settings }.validate().is_err());
    }
}
