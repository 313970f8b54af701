//! Exercise 21.4: pre-norm vs post-norm. The two blocks' equations; per-layer gradient norms
//! of a 24-layer mini-GPT at initialisation in both placements; and both placements trained
//! at a high learning rate without warmup. The two measurements are drawn side by side.

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::Report;

use crate::exercises::Exercise;
use shared::app::plot::{write_grid, Chart, Figure, Series, PALETTE};
use shared::data::dataset::BatchSource;
use shared::model::{GptModel, NormPlacement};
use shared::train::calc_loss_batch;
use tch::nn::VarStore;

use crate::batches::RandomWindows;
use crate::minigpt::{self, MiniGptOptions};

pub const EXERCISE: Exercise = Exercise {
    id: "21.4",
    summary: "pre-norm vs post-norm: equations, per-layer gradient norms of a 24-layer model (PNG), training at a high learning rate",
    run: |context| Report::new(&run(context, 24, 400)?),
};

/// The high learning rate of the training comparison (10x the walk-through's).
pub const HIGH_LR: f64 = 1e-2;

#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    pub norm: NormPlacement,
    /// The gradient norm of each block's parameters, first block first.
    pub layer_grad_norms: Vec<f64>,
    /// Training and validation loss at each evaluation of the high-learning-rate run.
    pub steps: Vec<usize>,
    pub train_losses: Vec<f64>,
    pub final_val_loss: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_4 {
    pub layers: i64,
    pub training_steps: usize,
    pub placements: Vec<Placement>,
    pub figure: PathBuf,
}

/// The model for both measurements: the small mini-GPT with `layers` layers in `norm`.
fn options(norm: NormPlacement, layers: i64, steps: usize) -> MiniGptOptions {
    MiniGptOptions {
        n_layers: layers,
        norm_placement: norm,
        peak_lr: HIGH_LR,
        min_lr: HIGH_LR / 10.0,
        warmup_steps: 0,
        eval_interval: (steps / 10).max(1),
        ..MiniGptOptions::small(steps)
    }
}

/// One backward pass of a freshly initialised model on a batch of 12 training windows; the
/// L2 norm of each block's gradients.
pub fn layer_grad_norms(context: &RunContext, text: &str, options: &MiniGptOptions) -> Result<Vec<f64>> {
    let tokenizer = options.tokenizer.build(text);
    let config = options.config(tokenizer.as_ref());
    let ids = tokenizer.encode(text).context("tokenizing")?;
    shared::core::device::seed_everything(context.seed);
    let vs = VarStore::new(context.device);
    let model = GptModel::new(&vs.root(), &config)?;
    shared::core::init::gpt2_init(&vs, config.n_layers);
    let batch = RandomWindows::new(&ids, config.context_length, 12, 1)?.batches().next().context("a batch")?;
    calc_loss_batch(&model, &batch, context.device, true).backward();
    let variables = vs.variables();
    Ok((0..config.n_layers)
        .map(|layer| {
            let prefix = format!("trf_blocks.{layer}.");
            variables
                .iter()
                .filter(|(name, _)| name.starts_with(&prefix))
                .map(|(_, t)| t.grad().square().sum(tch::Kind::Double).double_value(&[]))
                .sum::<f64>()
                .sqrt()
        })
        .collect())
}

pub fn run(context: &RunContext, layers: i64, steps: usize) -> Result<Ex21_4> {
    let text = minigpt::small_corpus(context)?;
    let mut placements = Vec::new();
    for norm in [NormPlacement::Pre, NormPlacement::Post] {
        let layer_grad_norms = layer_grad_norms(context, &text, &options(norm, layers, steps))?;
        let name = format!("ex21_4-{}", if norm == NormPlacement::Pre { "pre" } else { "post" });
        let train_options = options(norm, layers, steps);
        let run_context = RunContext { out_dir: context.out_dir.join(name), ..context.clone() };
        let report = minigpt::run(&run_context, &text, &train_options)?;
        let evaluations = &report.history.evaluations;
        placements.push(Placement {
            norm,
            layer_grad_norms,
            steps: evaluations.iter().map(|e| (e.step + 1) as usize).collect(),
            train_losses: evaluations.iter().map(|e| e.train_loss).collect(),
            final_val_loss: report.final_val_loss,
        });
    }
    let figure = context.out_dir.join("ex21_4-pre-vs-post-norm.png");
    let layer_xs: Vec<f64> = (1..=layers).map(|l| l as f64).collect();
    let log_norms: Vec<Vec<f64>> =
        placements.iter().map(|p| p.layer_grad_norms.iter().map(|g| g.max(1e-30).log10()).collect()).collect();
    let step_xs: Vec<Vec<f64>> = placements.iter().map(|p| p.steps.iter().map(|&s| s as f64).collect()).collect();
    let label = |p: &Placement| if p.norm == NormPlacement::Pre { "pre-norm" } else { "post-norm" };
    let gradients = Chart {
        series: placements
            .iter()
            .zip(&log_norms)
            .enumerate()
            .map(|(i, (p, ys))| Series { xs: &layer_xs, ys, color: PALETTE[i], label: label(p) })
            .collect(),
        x_label: "layer",
        y_label: "log10 gradient norm",
        top_axis: None,
        width: 0,
        height: 0,
    };
    let training = Chart {
        series: placements
            .iter()
            .zip(&step_xs)
            .enumerate()
            .map(|(i, (p, xs))| Series { xs, ys: &p.train_losses, color: PALETTE[i], label: label(p) })
            .collect(),
        x_label: "step",
        y_label: "training loss",
        top_axis: None,
        width: 0,
        height: 0,
    };
    let title_gradients = format!("gradient norms at initialisation, {layers} layers");
    let title_training = format!("{layers} layers trained at lr {HIGH_LR}, no warmup");
    let panels: [(&str, &dyn Figure); 2] = [(&title_gradients, &gradients), (&title_training, &training)];
    write_grid(&figure, &panels, 2, (560, 400))?;
    Ok(Ex21_4 { layers, training_steps: steps, placements, figure })
}

impl fmt::Display for Ex21_4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "(a) post-norm (GPT-1):  h = LN(x + Attn(x));      y = LN(h + FFN(h))")?;
        writeln!(
            f,
            "    pre-norm (GPT-2):   h = x + Attn(LN(x));      y = h + FFN(LN(h)); a final LN before the head"
        )?;
        writeln!(
            f,
            "(b) gradient norm of each block at initialisation, {} layers (first, middle, last):",
            self.layers
        )?;
        for p in &self.placements {
            let g = &p.layer_grad_norms;
            let spread = g.iter().cloned().fold(f64::MIN, f64::max) / g.iter().cloned().fold(f64::MAX, f64::min);
            writeln!(
                f,
                "    {:?}: {:.2e}, {:.2e}, {:.2e} (largest / smallest = {:.1})",
                p.norm,
                g[0],
                g[g.len() / 2],
                g[g.len() - 1],
                spread
            )?;
        }
        writeln!(
            f,
            "    In pre-norm the shortcut path x -> x + F(LN(x)) passes gradients through an identity to every \
             layer, so the layers receive gradients of a similar size; in post-norm every gradient crosses a \
             layer norm per block on the way down, which rescales it each time and leaves the blocks with \
             gradients of very different sizes (the spread above): a learning rate that suits one part of the \
             stack is wrong for the rest, which is why post-norm needs a warmup (see the run below)."
        )?;
        writeln!(f, "    {} layers at lr {HIGH_LR} without warmup, {} steps:", self.layers, self.training_steps)?;
        for p in &self.placements {
            let losses: Vec<String> = p.train_losses.iter().map(|l| format!("{l:.2}")).collect();
            writeln!(
                f,
                "    {:?}: training losses [{}], final validation loss {:.3}",
                p.norm,
                losses.join(", "),
                p.final_val_loss
            )?;
        }
        writeln!(
            f,
            "(c) Pre-norm's cost: the residual stream only grows, each layer adds a normalised update to it, so \
             later layers change the sum less and less; a deep pre-norm stack behaves like a shallower, wider one \
             (lower effective depth), and post-norm, when it trains at all, can reach a better loss."
        )?;
        write!(f, "Charts: {}", self.figure.display())
    }
}
