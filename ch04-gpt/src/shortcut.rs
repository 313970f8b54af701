//! Section 4.4, listing 4.5: a deep stack of small layers, with and without shortcut
//! connections, to see how shortcuts keep gradients from vanishing.

use shared::core::init;
use shared::nn::gelu;
use tch::{nn, Kind, Tensor};

#[derive(Debug)]
pub struct ExampleDeepNeuralNetwork {
    pub layers: Vec<nn::Linear>,
    pub use_shortcut: bool,
}

impl ExampleDeepNeuralNetwork {
    /// One `Linear + GELU` layer per consecutive pair of `layer_sizes` (`layers.{i}.0`).
    pub fn new(path: &nn::Path, layer_sizes: &[i64], use_shortcut: bool) -> Self {
        let layers = layer_sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| init::linear(&(path / "layers" / i as i64) / 0, w[0], w[1], true))
            .collect();
        Self { layers, use_shortcut }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut x = x.shallow_clone();
        for layer in &self.layers {
            let output = gelu(&x.apply(layer));
            // shortcut connection where the shapes allow it
            x = if self.use_shortcut && output.size() == x.size() { x + output } else { output };
        }
        x
    }

    /// Mean absolute gradient of each layer's weight for an MSE loss against 0 on `x`.
    pub fn weight_gradients(&self, x: &Tensor) -> Vec<f64> {
        let output = self.forward(x);
        output.mse_loss(&output.zeros_like(), tch::Reduction::Mean).backward();
        self.layers.iter().map(|l| l.ws.grad().abs().mean(Kind::Float).double_value(&[])).collect()
    }
}
