//! What a training run leaves behind besides its checkpoint: the loss plot of figures
//! 5.12, 6.16 and 7.17.

use std::path::Path;

use anyhow::Result;

use super::plot::{Chart, Series, TopAxis, PALETTE};
use crate::train::TrainHistory;

/// Figure 5.12 (and 7.17): a next-token run's losses against epochs with the tokens seen on a
/// second axis. Writes nothing when nothing was evaluated.
pub fn write_history_plot(path: &Path, epochs: usize, history: &TrainHistory) -> Result<()> {
    let (Some(first), Some(last)) = (history.evaluations.first(), history.evaluations.last()) else {
        return Ok(());
    };
    let train: Vec<f64> = history.evaluations.iter().map(|e| e.train_loss).collect();
    let val: Vec<f64> = history.evaluations.iter().map(|e| e.val_loss).collect();
    let seen = TopAxis { label: "Tokens seen", from: first.tokens_seen as f64, to: last.tokens_seen as f64 };
    write_loss_plot(path, epochs, &train, &val, seen)
}

/// Training and validation losses against epochs (the evaluations spread evenly over
/// `epochs`, as the book's `torch.linspace(0, num_epochs, len(train_losses))`), with what was
/// seen (tokens, examples) on the top axis: figures 5.12, 6.16 and 7.17.
pub fn write_loss_plot(path: &Path, epochs: usize, train: &[f64], val: &[f64], seen: TopAxis) -> Result<()> {
    let n = train.len();
    let xs: Vec<f64> = (0..n).map(|i| if n == 1 { 0.0 } else { epochs as f64 * i as f64 / (n - 1) as f64 }).collect();
    Chart {
        series: vec![
            Series { xs: &xs, ys: train, color: PALETTE[0], label: "Training loss" },
            Series { xs: &xs, ys: val, color: PALETTE[1], label: "Validation loss" },
        ],
        x_label: "Epochs",
        y_label: "Loss",
        top_axis: Some(seen),
        width: 800,
        height: 500,
    }
    .write_png(path)
}
