//! Exercise 4.3: separate dropout rates for the embeddings, the attention weights and the
//! shortcut connections (`drop_rate_emb`, `drop_rate_attn`, `drop_rate_shortcut` in
//! `GptConfig`; the single `drop_rate` still fills in whatever is not set).

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::{Exercise, Report};
use shared::core::device::seed_everything;
use shared::model::{GptConfig, GptModel};
use tch::{nn, Device, Kind, Tensor};

pub const EXERCISE: Exercise = Exercise {
    id: "4.3",
    summary: "separate dropout rates for embeddings, attention weights and shortcuts, each acting only in its place",
    run: |context| Report::new(&run(context.seed)?),
};

/// What one configuration puts where, and how much training-mode dropout changes the output.
#[derive(Debug, Clone, Serialize)]
pub struct DropoutPlacement {
    pub setting: String,
    pub embedding_rate: f64,
    /// The rate each block's attention uses on its weights.
    pub attention_rates: Vec<f64>,
    /// The rate each block uses before its shortcut additions.
    pub shortcut_rates: Vec<f64>,
    /// Largest |train - eval| difference of the first block's attention module alone.
    pub attention_effect: f64,
    /// Largest |train - eval| difference of the first block (attention, feed-forward and
    /// both shortcuts) on the same input.
    pub block_effect: f64,
    /// Largest |train - eval| logit difference of the whole model on one batch.
    pub train_eval_difference: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex4_3 {
    pub placements: Vec<DropoutPlacement>,
}

/// A small model per setting: only one rate set, all three set, and none.
pub fn run(seed: u64) -> Result<Ex4_3> {
    let base = GptConfig { drop_rate: 0.0, ..GptConfig::tiny() };
    let settings = [
        ("drop_rate_emb = 0.1", GptConfig { drop_rate_emb: Some(0.1), ..base.clone() }),
        ("drop_rate_attn = 0.2", GptConfig { drop_rate_attn: Some(0.2), ..base.clone() }),
        ("drop_rate_shortcut = 0.3", GptConfig { drop_rate_shortcut: Some(0.3), ..base.clone() }),
        (
            "all three (0.1 / 0.2 / 0.3)",
            GptConfig {
                drop_rate_emb: Some(0.1),
                drop_rate_attn: Some(0.2),
                drop_rate_shortcut: Some(0.3),
                ..base.clone()
            },
        ),
        ("none (drop_rate = 0)", base.clone()),
    ];
    let idx = Tensor::from_slice(&[6109i64, 3626, 6100, 345]).view([1, 4]);
    let largest_change =
        |run: &dyn Fn(bool) -> Tensor| tch::no_grad(|| (run(true) - run(false)).abs().max()).double_value(&[]);
    let placements = settings
        .into_iter()
        .map(|(setting, cfg)| -> Result<DropoutPlacement> {
            seed_everything(seed);
            let vs = nn::VarStore::new(Device::Cpu);
            let model = GptModel::new(&vs.root(), &cfg)?;
            // Where a rate acts shows in which parts train and eval mode differ: attention
            // dropout changes the attention module, shortcut dropout only the block around
            // it, embedding dropout neither (only the whole model).
            let x = Tensor::randn([1, 4, cfg.emb_dim], (Kind::Float, Device::Cpu)); // (B, T, E)
            let block = &model.trf_blocks[0];
            Ok(DropoutPlacement {
                setting: setting.to_string(),
                embedding_rate: cfg.emb_dropout(),
                attention_rates: model.trf_blocks.iter().map(|b| b.att.dropout).collect(),
                shortcut_rates: model.trf_blocks.iter().map(|b| b.drop_shortcut).collect(),
                attention_effect: largest_change(&|train| block.att.forward_t(&x, train)),
                block_effect: largest_change(&|train| block.forward_t(&x, train)),
                train_eval_difference: largest_change(&|train| model.forward_t(&idx, train)),
            })
        })
        .collect::<Result<_>>()?;
    Ok(Ex4_3 { placements })
}

impl fmt::Display for Ex4_3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<28} {:>9} {:>10} {:>10} {:>12} {:>12} {:>12}",
            "setting", "embedding", "attention", "shortcut", "attn change", "block change", "model change"
        )?;
        for (i, p) in self.placements.iter().enumerate() {
            write!(
                f,
                "{:<28} {:>9} {:>10} {:>10} {:>12.6} {:>12.6} {:>12.6}",
                p.setting,
                p.embedding_rate,
                format!("{:?}", p.attention_rates[0]),
                format!("{:?}", p.shortcut_rates[0]),
                p.attention_effect,
                p.block_effect,
                p.train_eval_difference
            )?;
            if i + 1 < self.placements.len() {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}
