//! Exercise 21.25: learned positions vs rotary positions (RoPE) vs none (NoPE), trained at
//! the walk-through's context and evaluated at 1x, 2x and 4x that length. Learned positions
//! have one embedding per trained position and stop there; RoPE and NoPE models run at any
//! length with the same weights. The notes show the rotation on a 2-D query and measure
//! RoPE's relative-position property on the trained model.

use anyhow::Result;
use shared::app::cli::RunContext;
use shared::model::positions::{self, PosEncoding};
use shared::model::{GptConfig, GptModel};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::{write_lines, Findings, Line, Plan, Trained};
use crate::minigpt::{self, MiniGptOptions};

/// The evaluation lengths, as multiples of the training context.
const LENGTHS: [i64; 3] = [1, 2, 4];

#[derive(Default)]
pub struct Rope {
    /// Each variant's (length, validation loss) points.
    lines: Vec<Line>,
    notes: Vec<String>,
}

impl Plan for Rope {
    fn variants(&self, base: &MiniGptOptions) -> Vec<(String, MiniGptOptions)> {
        [("learned positions", PosEncoding::Learned), ("RoPE", PosEncoding::Rope), ("NoPE (none)", PosEncoding::None)]
            .into_iter()
            .map(|(name, pos_encoding)| (name.to_string(), MiniGptOptions { pos_encoding, ..base.clone() }))
            .collect()
    }

    fn columns(&self) -> Vec<String> {
        LENGTHS.iter().map(|m| format!("val loss at {m}x")).collect()
    }

    fn measure(&mut self, trained: &Trained) -> Result<Vec<Option<f64>>> {
        let block = trained.model.cfg.context_length;
        let batches = trained.options.final_eval_batches.min(50);
        let loss_of = |model: &GptModel| {
            let (text, ratio, seed) = (trained.text, trained.options.train_ratio, trained.context.seed);
            minigpt::split_loss(model, text, ratio, false, batches, seed)
        };
        let mut losses = Vec::new();
        for multiple in LENGTHS {
            let length = block * multiple;
            if length == block {
                losses.push(Some(loss_of(trained.model)?));
            } else if let Some((_vs, model)) = with_context(trained, length)? {
                losses.push(Some(loss_of(&model)?));
            } else {
                losses.push(None);
            }
        }
        let unreachable: Vec<i64> =
            LENGTHS.iter().zip(&losses).filter(|(_, loss)| loss.is_none()).map(|(m, _)| *m).collect();
        if let Some(&multiple) = unreachable.first() {
            let window = Tensor::zeros([1, block * multiple], (Kind::Int64, Device::Cpu));
            let refusal = trained.model.check_tokens(&window).expect_err("a window past the context");
            self.notes.push(format!(
                "{}: not measurable at {}: the position table has {block} rows, so positions {block} and later \
                 have no embedding; the model refuses such a window (\"{refusal}\") rather than guess.",
                trained.variant,
                unreachable.iter().map(|m| format!("{m}x")).collect::<Vec<_>>().join(" and ")
            ));
        }
        self.lines.push(Line {
            label: trained.variant.to_string(),
            points: LENGTHS.iter().zip(&losses).filter_map(|(m, l)| l.map(|l| ((m * block) as f64, l))).collect(),
        });
        if trained.options.pos_encoding == PosEncoding::Rope {
            self.notes.push(relative_positions(trained.model));
        }
        Ok(losses)
    }

    fn findings(&mut self, context: &RunContext, _: &MiniGptOptions) -> Result<Findings> {
        let chart = context.out_dir.join("compare-rope-lengths.png");
        write_lines(&chart, "evaluation length (tokens)", "validation loss", &self.lines)?;
        let mut notes = rotation_example();
        notes.append(&mut self.notes);
        Ok(Findings { notes, charts: vec![chart] })
    }
}

/// The trained model rebuilt for windows of `length` tokens with the same weights, or `None`
/// when its positions cannot reach that far (a learned or fixed table of the trained length).
fn with_context(trained: &Trained, length: i64) -> Result<Option<(VarStore, GptModel)>> {
    let cfg = &trained.model.cfg;
    if cfg.pos_encoding.uses_table() {
        return Ok(None);
    }
    let longer = GptConfig { context_length: length, ..cfg.clone() };
    let mut vs = VarStore::new(trained.context.device);
    let mut model = GptModel::new(&vs.root(), &longer)?;
    vs.copy(trained.vs)?;
    trained.options.choose_kernels(&mut model);
    Ok(Some((vs, model)))
}

/// The rotation itself: a 2-D query `(1, 0)` turned by RoPE at positions 0-3 (one feature
/// pair, frequency 1 radian per position).
pub fn rotation_example() -> Vec<String> {
    let rope = positions::Rope::new(2, 10_000.0, Device::Cpu);
    let query = Tensor::from_slice(&[1f32, 0.0]).view([1, 1, 1, 2]).expand([1, 1, 4, 2], false);
    let rotated = rope.rotate(&query, &Tensor::arange(4, (Kind::Int64, Device::Cpu)));
    let points: Vec<String> = (0..4)
        .map(|p| {
            format!("p={p}: ({:.3}, {:.3})", rotated.double_value(&[0, 0, p, 0]), rotated.double_value(&[0, 0, p, 1]))
        })
        .collect();
    vec![format!(
        "RoPE turns each pair of query and key features by position x frequency; the 2-D query (1, 0) at \
         frequency 1 rad/position: {} (length 1 throughout).",
        points.join(", ")
    )]
}

/// RoPE's relative-position property as numbers, on the trained model's first layer: the
/// attention scores of a window's token embeddings after moving every position by 1,000,
/// and after moving the queries alone by one position.
fn relative_positions(model: &GptModel) -> String {
    let _no_grad = tch::no_grad_guard();
    let attention = &model.trf_blocks[0].att;
    let rope = attention.rope.as_ref().expect("a RoPE model");
    let device = model.tok_emb.ws.device();
    let length = model.cfg.context_length;
    let idx = (Tensor::arange(length, (Kind::Int64, device)) * 7919).remainder(model.cfg.vocab_size).unsqueeze(0);
    let x = idx.apply(&model.tok_emb);
    let heads = |t: Tensor, n: i64| t.view([1, length, n, attention.head_dim]).transpose(1, 2);
    let queries = heads(x.apply(&attention.w_query), attention.num_heads);
    let keys = heads(x.apply(&attention.w_key), attention.num_kv_heads).repeat_interleave_self_int(
        attention.num_heads / attention.num_kv_heads,
        1,
        None,
    );
    let at = |offset: i64| Tensor::arange_start(offset, offset + length, (Kind::Int64, device));
    let scores = |q_offset: i64, k_offset: i64| {
        rope.rotate(&queries, &at(q_offset)).matmul(&rope.rotate(&keys, &at(k_offset)).transpose(2, 3))
    };
    let reference = scores(0, 0);
    let largest = reference.abs().max().double_value(&[]);
    let relative_change = |other: Tensor| (other - &reference).abs().max().double_value(&[]) / largest;
    format!(
        "RoPE's relative positions, on the trained model's first layer: moving every query and key by 1,000 \
         positions changes the attention scores by at most {:.1e} of the largest score (float rounding); moving \
         the queries alone by one position changes them by up to {:.0}% of it.",
        relative_change(scores(1000, 1000)),
        100.0 * relative_change(scores(1, 0)),
    )
}
