//! Exercise 21.2: the causal mask of 8 positions (from `shared`'s mask code), how many
//! weights a position has under either indexing, the row sums of a trained model's
//! attention weights, and (d) as an experiment: the mini-GPT trained once with a
//! bidirectional mask and once causally, both then evaluated and sampled causally.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::Report;
use shared::model::attention::AttentionMask;

use crate::exercises::Exercise;
use shared::generate::{generate_text, Sampling};
use shared::model::{GptConfig, GptModel};
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::minigpt::{self, MiniGptOptions};

pub const EXERCISE: Exercise = Exercise {
    id: "21.2",
    summary:
        "the 8x8 causal mask, weights per position, row sums of real attention, and a model trained bidirectionally",
    run: |context| Report::new(&run(context, 600)?),
};

/// One training of the experiment.
#[derive(Debug, Clone, Serialize)]
pub struct MaskRun {
    pub trained_with: String,
    /// The loss on training windows after training, under the mask it trained with.
    pub train_loss: f64,
    /// The validation loss with the causal mask, as generation sees the model.
    pub causal_val_loss: f64,
    /// A greedy continuation of "ROMEO:" with the causal mask.
    pub sample: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_2 {
    /// `true` where a query (row) may not see a key (column).
    pub mask: Vec<Vec<bool>>,
    /// Weights of position 5 counting from 0 (the sixth token), and counting from 1.
    pub weights_zero_based: usize,
    pub weights_one_based: usize,
    /// The largest |row sum - 1| over every layer, head and row of the causal model.
    pub max_row_sum_error: f64,
    pub rows_checked: i64,
    pub runs: Vec<MaskRun>,
    pub steps: usize,
}

pub fn mask(n: i64) -> Vec<Vec<bool>> {
    let positions = Tensor::arange(n, (Kind::Int64, Device::Cpu));
    let blocked = AttentionMask::Causal.blocked(&positions, &positions, 0);
    (0..n).map(|q| Vec::<bool>::try_from(blocked.get(q)).expect("a bool tensor")).collect()
}

/// The same weights as `model`, with a causal mask.
fn causal_copy(model: &GptModel, vs: &VarStore) -> Result<(VarStore, GptModel)> {
    let config = GptConfig { attention_mask: AttentionMask::Causal, ..model.cfg.clone() };
    let mut causal_vs = VarStore::new(vs.device());
    let causal = GptModel::new(&causal_vs.root(), &config)?;
    causal_vs.copy(vs)?;
    Ok((causal_vs, causal))
}

pub fn run(context: &RunContext, steps: usize) -> Result<Ex21_2> {
    let mask = mask(8);
    let visible = |row: usize| mask[row].iter().filter(|blocked| !**blocked).count();
    let text = minigpt::small_corpus(context)?;
    let mut runs = Vec::new();
    let mut max_row_sum_error = 0f64;
    let mut rows_checked = 0;
    for bidirectional in [false, true] {
        let base = MiniGptOptions::small(steps);
        // A prefix as long as the context: every position sees every other one.
        let attention_mask = if bidirectional { AttentionMask::Prefix(base.block_size) } else { AttentionMask::Causal };
        let options = MiniGptOptions { attention_mask, ..base };
        let name = if bidirectional { "ex21_2-bidirectional" } else { "ex21_2-causal" };
        let (_, loaded) = minigpt::train_and_load(context, name, &text, &options)?;
        let (_causal_vs, causal) = causal_copy(&loaded.model, &loaded.vs)?;
        if !bidirectional {
            let tail_start = text.char_indices().rev().nth(199).map_or(0, |(i, _)| i);
            let ids = causal.cfg.tokenizer.build()?.encode(&text[tail_start..])?;
            let ids: Vec<i64> = ids.iter().take(causal.cfg.context_length as usize).map(|&id| id as i64).collect();
            let idx = Tensor::from_slice(&ids).view([1, -1]).to_device(context.device);
            for weights in causal.attention_weights(&idx)? {
                let sums = weights.sum_dim_intlist(-1, false, Kind::Double);
                max_row_sum_error = max_row_sum_error.max((sums - 1.0).abs().max().double_value(&[]));
                rows_checked += weights.numel() as i64 / weights.size()[3];
            }
        }
        let train_loss = minigpt::split_loss(&loaded.model, &text, options.train_ratio, true, 50, context.seed)?;
        let causal_val_loss = minigpt::split_loss(&causal, &text, options.train_ratio, false, 50, context.seed)?;
        let sample = generate_text(&causal, "ROMEO:", 60, &Sampling::GREEDY)?.text;
        let trained_with = if bidirectional { "bidirectional mask" } else { "causal mask" }.to_string();
        runs.push(MaskRun { trained_with, train_loss, causal_val_loss, sample });
    }
    Ok(Ex21_2 {
        weights_zero_based: visible(5),
        weights_one_based: visible(4),
        mask,
        max_row_sum_error,
        rows_checked,
        runs,
        steps,
    })
}

impl fmt::Display for Ex21_2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "(a) causal mask, 8 positions (0 = attend, X = masked):")?;
        for row in &self.mask {
            let cells: Vec<&str> = row.iter().map(|&blocked| if blocked { "X" } else { "0" }).collect();
            writeln!(f, "    {}", cells.join(" "))?;
        }
        writeln!(
            f,
            "(b) position 5 counting from 0 (the sixth token) has {} non-zero weights (positions 0-5); counting from \
             1 it has {}.",
            self.weights_zero_based, self.weights_one_based
        )?;
        writeln!(
            f,
            "(c) each row sums to 1: softmax divides each exponentiated score by the row's total, and masked scores \
             are -inf, which contribute exp(-inf) = 0. Measured on the trained model's {} rows (every layer and \
             head): largest |sum - 1| = {:.1e}.",
            self.rows_checked, self.max_row_sum_error
        )?;
        writeln!(f, "(d) the same mini-GPT trained {} steps with each mask, then used causally:", self.steps)?;
        for r in &self.runs {
            writeln!(
                f,
                "    {:<18}: training loss {:.3}, causal validation loss {:.3}, sample {:?}",
                r.trained_with, r.train_loss, r.causal_val_loss, r.sample
            )?;
        }
        let (causal, bidirectional) = (&self.runs[0], &self.runs[1]);
        write!(
            f,
            "With the bidirectional mask every position could read the token it was asked to predict, so its \
             training loss ({:.3} vs {:.3}) measures copying, not prediction; at generation the future is not there, \
             and its causal loss ({:.3} vs {:.3}) shows it never learned to predict the next token.",
            bidirectional.train_loss, causal.train_loss, bidirectional.causal_val_loss, causal.causal_val_loss
        )
    }
}
